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

crypto::DhGroup group_of(const std::string& pfs) {
  return to_dh_group(pfs == "group2" ? PfsGroup::kGroup2
                     : pfs == "group14" ? PfsGroup::kGroup14 : PfsGroup::kGroup5);
}
EncryptionAlgorithm enc_of(const std::string& e) {
  return e == "aes-256" ? EncryptionAlgorithm::kAes256
         : e == "aes-192" ? EncryptionAlgorithm::kAes192 : EncryptionAlgorithm::kAes128;
}
AuthAlgorithm auth_of(const std::string& a) {
  return a == "sha256" ? AuthAlgorithm::kSha256 : AuthAlgorithm::kSha1;
}
Dpd dpd_of(const model::Dpd& d) {
  Dpd out;
  out.interval = d.interval;
  out.timeout = d.timeout;
  out.action = d.action == "restart"           ? DpdAction::kRestart
               : d.action == "clear"           ? DpdAction::kClear
               : d.action == "restart-by-peer" ? DpdAction::kRestartByPeer
               : d.action == "disabled"        ? DpdAction::kDisabled
                                               : DpdAction::kHold;
  return out;
}

}  // namespace

Result<ike::ConnectionConfig> ike_connection_config(const model::State& s,
                                                    const model::Environment& env,
                                                    const model::SiteConnection& c,
                                                    const IkeGatewayParams& gw) {
  return ike_connection_config(model::StateLookup(s), env, c, gw);
}

Result<ike::ConnectionConfig> ike_connection_config(const model::StateLookup& s,
                                                    const model::Environment& env,
                                                    const model::SiteConnection& c,
                                                    const IkeGatewayParams& gw) {
  const model::IkePolicy* ikp = s.ikepolicy(c.ikepolicy_id);
  const model::IpsecPolicy* esp = s.ipsecpolicy(c.ipsecpolicy_id);
  if (ikp == nullptr || esp == nullptr) return make_error("ikepolicy/ipsecpolicy: not found");
  const auto locals = model::local_cidrs(s, env, c);
  const auto peers = model::peer_cidrs(s, c);
  if (locals.empty() || peers.empty()) return make_error("local/peer CIDRs: none");
  // The first of each, then the others: a CHILD SA per (local, peer) pair.
  auto prefixes = [](const std::vector<std::string>& v) {
    std::vector<dp::Ipv4Prefix> out;
    for (const auto& s : v)
      if (auto p = dp::parse_prefix(s)) out.push_back(*p);
    return out;
  };
  auto local = prefixes(locals), peer = prefixes(peers);
  const auto peer_addr = dp::parse_ipv4(c.peer_address);
  if (local.size() != locals.size() || peer.size() != peers.size() || !peer_addr)
    return make_error("peer_address/CIDRs: not IPv4");
  ike::ConnectionConfig k;
  k.local_addr = gw.local_addr;
  k.peer_addr = *peer_addr;
  k.peer_id = c.peer_id;
  k.local_id = c.local_id;
  k.local_subnet = local.front();
  k.peer_subnet = peer.front();
  k.extra_local_subnets.assign(local.begin() + 1, local.end());
  k.extra_peer_subnets.assign(peer.begin() + 1, peer.end());
  k.psk = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(c.psk.data()), c.psk.size());
  k.ike.cipher = to_cipher(enc_of(ikp->encryption_algorithm));
  k.ike.hash = auth_of(ikp->auth_algorithm) == AuthAlgorithm::kSha256 ? crypto::HashAlg::kSha256
                                                                       : crypto::HashAlg::kSha1;
  k.ike.group = group_of(ikp->pfs);
  k.ike.lifetime_s = ikp->lifetime.value;
  k.ipsec.cipher = to_cipher(enc_of(esp->encryption_algorithm));
  k.ipsec.integ = to_integ(auth_of(esp->auth_algorithm));
  k.ipsec.pfs = group_of(esp->pfs);
  k.ipsec.lifetime_s = esp->lifetime.value;
  k.dpd = to_dpd(dpd_of(c.dpd));
  k.initiator = c.initiator == "response-only" ? ike::InitiatorMode::kResponseOnly
                                               : ike::InitiatorMode::kBidirectional;
  k.admin_state_up = true;
  k.mtu = static_cast<std::uint16_t>(std::min<std::uint32_t>(c.mtu, gw.port_mtu));
  return k;
}

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
    // A CHILD SA per (local, peer) pair: the first of each, then the others.
    k.local_subnet = c.local_cidrs.front();
    k.peer_subnet = c.peer_cidrs.front();
    k.extra_local_subnets.assign(c.local_cidrs.begin() + 1, c.local_cidrs.end());
    k.extra_peer_subnets.assign(c.peer_cidrs.begin() + 1, c.peer_cidrs.end());
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
