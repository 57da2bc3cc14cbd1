# Shared by scripts/test, scripts/demo and scripts/bench: install every Debian package the
# project needs, once. Source it, then call ipsecgw_install_deps.
IPSECGW_PACKAGES=(
  # build
  meson ninja-build pkg-config g++ clang-14 libclang-rt-14-dev
  libdpdk-dev dpdk libipsec-mb-dev libssl-dev
  libboost-program-options-dev libyaml-cpp-dev nlohmann-json3-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # test peers, references and network tools
  python3 python3-scapy python3-cryptography tshark tcpdump nftables ethtool tcpreplay
  iproute2 iputils-ping socat procps kmod
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  # the REST API's acceptance client (tests/app/test_openstack_cli.sh)
  python3-openstackclient python3-neutronclient
)

ipsecgw_install_deps() {
  local missing=()
  local p
  for p in "${IPSECGW_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "ipsecgw: installing ${#missing[@]} missing package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# strongSwan's packages start a system charon; the tests run their own per namespace.
ipsecgw_stop_system_strongswan() {
  if command -v systemctl >/dev/null 2>&1; then
    systemctl stop strongswan-starter.service strongswan.service >/dev/null 2>&1 || true
  fi
}
