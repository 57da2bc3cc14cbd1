#include "app/ike_config.hpp"

#include <algorithm>

namespace ipsecgw::app {
namespace {

crypto::DhGroup to_dh_group(PfsGroup g) noexcept {
  switch (g) {
    case PfsGroup::kGroup2: return crypto::DhGroup::kModp1024;
    case PfsGroup::kGroup5: return crypto::DhGroup::kModp1536;
    case PfsGroup::kGroup14: return crypto::DhGroup::kModp2048;
  }
  return crypto::DhGroup::kModp2048;
}

crypto::HashAlg to_hash(AuthAlgorithm a) noexcept {
  return a == AuthAlgorithm::kSha256 ? crypto::HashAlg::kSha256 : crypto::HashAlg::kSha1;
}

ike::DpdConfig to_dpd(const Dpd& d) noexcept {
  ike::DpdConfig out;
  out.interval_s = d.interval;
  out.timeout_s = d.timeout;
  switch (d.action) {
    case DpdAction::kRestart: out.action = ike::DpdAction::kRestart; break;
    case DpdAction::kHold:
    case DpdAction::kClear:
    case DpdAction::kRestartByPeer: out.action = ike::DpdAction::kHold; break;
    case DpdAction::kDisabled:
      out.action = ike::DpdAction::kHold;
      out.interval_s = kDpdDisabledIntervalS;
      out.timeout_s = kDpdDisabledIntervalS + 1;
      break;
  }
  return out;
}

}  // namespace

std::vector<ike::ConnectionConfig> ike_connection_configs(const Config& cfg) {
  std::vector<ike::ConnectionConfig> out;
  for (std::size_t i = 0; i < cfg.ipsec_site_connections.size(); ++i) {
    const SiteConnection& c = cfg.ipsec_site_connections[i];
    if (c.manual_keys || !c.admin_state_up) continue;
    if (c.local_cidrs.empty() || c.peer_cidrs.empty()) continue;  // rejected by parse_config
    const IkePolicy& ikp = cfg.ikepolicy_of(c);
    const IpsecPolicy& esp = cfg.ipsecpolicy_of(c);
    ike::ConnectionConfig k;
    k.name = c.name;
    k.id = static_cast<std::uint32_t>(i + 1);
    k.local_addr = cfg.vpnservice.external_v4_ip;
    k.peer_addr = c.peer_address;
    k.peer_id = c.peer_id;
    k.local_subnet = c.local_cidrs.front();  // the parser allows exactly one of each
    k.peer_subnet = c.peer_cidrs.front();
    k.psk = c.psk.clone();
    k.ike.cipher = to_cipher(ikp.encryption_algorithm);
    k.ike.hash = to_hash(ikp.auth_algorithm);
    k.ike.group = to_dh_group(ikp.pfs);
    k.ike.lifetime_s = ikp.lifetime.value;
    k.ipsec.cipher = to_cipher(esp.encryption_algorithm);
    k.ipsec.integ = to_integ(esp.auth_algorithm);
    k.ipsec.pfs = to_dh_group(esp.pfs);
    k.ipsec.lifetime_s = esp.lifetime.value;
    k.dpd = to_dpd(c.dpd);
    k.initiator = c.initiator == Initiator::kResponseOnly ? ike::InitiatorMode::kResponseOnly
                                                          : ike::InitiatorMode::kBidirectional;
    k.admin_state_up = true;
    k.mtu = std::min<std::uint16_t>(c.mtu, cfg.vpnservice.unprotected.mtu);
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace ipsecgw::app
