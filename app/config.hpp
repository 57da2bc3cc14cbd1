// The gateway's YAML configuration: OpenStack Neutron VPNaaS resources and field names
// (vpnservice, ikepolicies, ipsecpolicies, endpoint_groups, ipsec_site_connections), plus the
// gateway-specific parts (DPDK ports, static neighbours, routes) and an ipsecgw extension for
// manual keying (static SAs). docs/config.md describes every field, its default and range.
//
// The parsed model is plain data with no DPDK types, so the IKE daemon can map a connection and
// its policies onto its own configuration (ike/config.hpp) without depending on YAML.
// Secrets (psk, manual keys) are SecureBytes: wiped on destruction and never printed, not even
// in validation errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/model/rules.hpp"
#include "common/result.hpp"
#include "crypto/esp_crypto.hpp"
#include "crypto/secure_bytes.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/gateway.hpp"

namespace ipsecgw::app {

// Neutron: auth_algorithm sha1|sha256 (HMAC-SHA1-96, HMAC-SHA-256-128 for ESP, RFC 4868).
enum class AuthAlgorithm : std::uint8_t { kSha1, kSha256 };
// Neutron: encryption_algorithm aes-128|aes-192|aes-256 (AES-CBC, RFC 3602).
enum class EncryptionAlgorithm : std::uint8_t { kAes128, kAes192, kAes256 };
// Neutron: pfs group2|group5|group14 (MODP 1024/1536/2048, RFC 2409 §6.2, RFC 3526).
enum class PfsGroup : std::uint8_t { kGroup2, kGroup5, kGroup14 };
// Neutron's dpd actions. hold: keep the SAs' policies and re-negotiate on traffic; restart:
// re-negotiate at once; clear: delete the SAs; restart-by-peer: delete and wait for the peer;
// disabled: no DPD at all.
enum class DpdAction : std::uint8_t { kHold, kClear, kRestart, kRestartByPeer, kDisabled };
enum class Initiator : std::uint8_t { kBiDirectional, kResponseOnly };
enum class UnmatchedTraffic : std::uint8_t { kDrop, kForward };

std::string_view to_string(AuthAlgorithm a) noexcept;
std::string_view to_string(EncryptionAlgorithm a) noexcept;
std::string_view to_string(PfsGroup g) noexcept;
std::string_view to_string(DpdAction a) noexcept;
std::string_view to_string(Initiator i) noexcept;

crypto::CipherAlg to_cipher(EncryptionAlgorithm a) noexcept;
crypto::IntegAlg to_integ(AuthAlgorithm a) noexcept;

// Limits: app/model/rules.hpp (shared with the REST API's model).

struct Lifetime {
  std::string units = "seconds";  // Neutron also knows "kilobytes"; only seconds is supported
  std::uint32_t value = kLifetimeDefault;
  bool operator==(const Lifetime&) const = default;
};

struct IkePolicy {
  std::string name;
  AuthAlgorithm auth_algorithm = AuthAlgorithm::kSha1;
  EncryptionAlgorithm encryption_algorithm = EncryptionAlgorithm::kAes128;
  std::string ike_version = "v1";               // only v1
  std::string phase1_negotiation_mode = "main";  // only main
  PfsGroup pfs = PfsGroup::kGroup5;              // the Main Mode DH group
  Lifetime lifetime;
  bool operator==(const IkePolicy&) const = default;
};

struct IpsecPolicy {
  std::string name;
  std::string transform_protocol = "esp";    // only esp
  std::string encapsulation_mode = "tunnel";  // only tunnel
  AuthAlgorithm auth_algorithm = AuthAlgorithm::kSha1;
  EncryptionAlgorithm encryption_algorithm = EncryptionAlgorithm::kAes128;
  PfsGroup pfs = PfsGroup::kGroup5;  // Quick Mode PFS group
  Lifetime lifetime;
};

struct EndpointGroup {
  std::string name;
  std::string type = "cidr";  // only cidr
  std::vector<dp::Ipv4Prefix> endpoints;
};

struct PortSettings {
  std::uint16_t port = 0;    // DPDK port id (order of -a / --vdev on the EAL command line)
  dp::Ipv4Prefix subnet;     // from address "192.0.2.1/24": 192.0.2.0/24
  dp::Ipv4 address = 0;      // from address "192.0.2.1/24": 192.0.2.1
  dp::Ipv4 gateway = 0;      // 0 = none (on-link only)
  std::uint16_t mtu = 1500;
};

struct Neighbor {
  dp::Ipv4 ip = 0;
  dp::MacAddr mac{};
};

struct RouteSpec {  // Neutron host_routes naming
  dp::Ipv4Prefix destination;
  dp::Ipv4 nexthop = 0;
};

struct VpnService {
  std::string name;
  bool admin_state_up = true;
  dp::Ipv4 external_v4_ip = 0;        // default: ports.unprotected address
  dp::Ipv4Prefix subnet;              // default local subnet; default: ports.protected subnet
  PortSettings unprotected;
  PortSettings protected_port;
  std::vector<Neighbor> neighbors;
  std::vector<RouteSpec> routes;
  UnmatchedTraffic unmatched_traffic = UnmatchedTraffic::kDrop;
};

// ipsecgw extension: one static SA (like DPDK ipsec-secgw's "sa" lines).
struct ManualSa {
  std::uint32_t spi = 0;
  crypto::SecureBytes encryption_key;
  crypto::SecureBytes auth_key;
};

struct ManualKeys {
  ManualSa inbound;   // the peer sends with this SPI and these keys; we verify and decrypt
  ManualSa outbound;  // we send with this SPI and these keys
  bool udp_encap = false;  // ESP in UDP 4500 (RFC 3948)
  std::uint32_t replay_window = kReplayWindowDefault;
};

struct Dpd {
  DpdAction action = DpdAction::kHold;
  std::uint32_t interval = kDpdIntervalDefault;  // seconds
  std::uint32_t timeout = kDpdTimeoutDefault;    // seconds, > interval
};

struct SiteConnection {
  std::string name;
  bool admin_state_up = true;
  dp::Ipv4 peer_address = 0;
  std::string peer_id;                     // default: peer_address as text
  std::vector<dp::Ipv4Prefix> peer_cidrs;  // resolved: peer_cidrs or peer_ep_group
  std::vector<dp::Ipv4Prefix> local_cidrs; // resolved: local_ep_group or vpnservice.subnet
  std::string peer_ep_group;               // name, empty when peer_cidrs was given
  std::string local_ep_group;              // name, empty when vpnservice.subnet is used
  crypto::SecureBytes psk;                 // empty only with manual_keys
  std::uint16_t mtu = kConnMtuDefault;
  Initiator initiator = Initiator::kBiDirectional;
  Dpd dpd;
  std::string ikepolicy;    // name
  std::string ipsecpolicy;  // name
  std::size_t ikepolicy_index = 0;    // into Config::ikepolicies
  std::size_t ipsecpolicy_index = 0;  // into Config::ipsecpolicies
  std::optional<ManualKeys> manual_keys;
};

// ipsecgw extension (top-level `dataplane:`): data-plane sizing and polling; all optional.
struct DataplaneSettings {
  unsigned sa_capacity = 4096;   // SAs per direction
  unsigned mbufs = 0;            // 0 = sized from ports/queues/workers
  unsigned rx_desc = 1024, tx_desc = 1024;
  unsigned idle_sleep_us = 0;    // > 0: idle workers sleep (shared/few-core machines)
  bool telemetry = true;         // /ipsecgw/* rte_telemetry commands
};

struct Config {
  VpnService vpnservice;
  DataplaneSettings dataplane;
  std::vector<IkePolicy> ikepolicies;
  std::vector<IpsecPolicy> ipsecpolicies;
  std::vector<EndpointGroup> endpoint_groups;
  std::vector<SiteConnection> ipsec_site_connections;
  // What is valid but unwise ("<field path>: <why>", e.g. a short PSK); printed at start.
  std::vector<std::string> warnings;

  const IkePolicy& ikepolicy_of(const SiteConnection& c) const {
    return ikepolicies.at(c.ikepolicy_index);
  }
  const IpsecPolicy& ipsecpolicy_of(const SiteConnection& c) const {
    return ipsecpolicies.at(c.ipsecpolicy_index);
  }
};

// Parses and validates. On failure the error lists every problem found, one per line, each
// starting with the field path (e.g. "ikepolicies[1].lifetime.value: 30 out of range
// 60..86400"). Secret values never appear in errors.
Result<Config> parse_config(std::string_view yaml_text);
// parse_config of `text`, which is overwritten with zeros once parsed (it may hold PSKs), on
// success and failure alike; the parsed YAML tree is wiped too.
Result<Config> parse_config_and_wipe(std::string& text);
// Reads the file (refused, with why and how to fix it, when group or others may read or write
// it: it holds PSKs), parses it, and wipes the raw text and the parsed YAML tree.
Result<Config> load_config(const std::string& path);
// The file's text, read without intermediate copies, after the mode check below; the caller
// wipes it (OPENSSL_cleanse) when done.
Result<std::string> read_secret_file(const std::string& path);
// The mode check of load_config: st_mode of a file holding secrets; an error naming the mode,
// the reason and `chmod 600`, unless no group/other permission bit is set.
Result<void> check_secret_file_mode(const std::string& path, unsigned mode);

// The data plane's configuration (ports, neighbours, routes, unmatched-traffic policy).
dp::GatewayConfig to_gateway_config(const Config& cfg);

// The static SAs of every enabled connection with manual_keys, inbound before outbound for each
// connection (sa_installer.hpp order). conn_id = index in ipsec_site_connections + 1.
std::vector<dp::SaSpec> manual_sa_specs(const Config& cfg);

// Human-readable summary for --check-config and logs; shows "psk: (set)" and never secrets.
std::string describe(const Config& cfg);

}  // namespace ipsecgw::app
