#include "ike/config.hpp"

namespace ipsecgw::ike {

Result<void> validate(const ConnectionConfig& c) {
  auto lifetime_ok = [](std::uint32_t s) { return s >= 60 && s <= 86400; };
  if (c.name.empty()) return make_error("name: empty");
  if (c.local_addr == 0) return make_error(c.name + ": local_addr: unset");
  if (c.peer_addr == 0) return make_error(c.name + ": peer_addr: unset");
  if (c.psk.empty()) return make_error(c.name + ": psk: empty");
  if (!lifetime_ok(c.ike.lifetime_s)) return make_error(c.name + ": ike lifetime: not in 60..86400");
  if (!lifetime_ok(c.ipsec.lifetime_s))
    return make_error(c.name + ": ipsec lifetime: not in 60..86400");
  if (c.dpd.interval_s < 1) return make_error(c.name + ": dpd interval: must be >= 1");
  if (c.dpd.timeout_s <= c.dpd.interval_s)
    return make_error(c.name + ": dpd timeout: must be greater than interval");
  if (c.mtu < 68) return make_error(c.name + ": mtu: below 68");
  const std::size_t pairs = (1 + c.extra_local_subnets.size()) * (1 + c.extra_peer_subnets.size());
  if (pairs > kMaxPairs)
    return make_error(c.name + ": " + std::to_string(pairs) + " subnet pairs: at most " +
                      std::to_string(kMaxPairs));
  if (pairs > 1 && c.id >= (1U << 24))
    return make_error(c.name + ": id: below 2^24 with several subnet pairs");
  const auto sel = selectors(c);
  for (std::size_t i = 0; i < sel.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (sel[i] == sel[j]) return make_error(c.name + ": subnets: a pair is listed twice");
  return {};
}

std::vector<Selector> selectors(const ConnectionConfig& c) {
  std::vector<dp::Ipv4Prefix> locals{c.local_subnet}, peers{c.peer_subnet};
  locals.insert(locals.end(), c.extra_local_subnets.begin(), c.extra_local_subnets.end());
  peers.insert(peers.end(), c.extra_peer_subnets.begin(), c.extra_peer_subnets.end());
  std::vector<Selector> out;
  for (const auto& l : locals)
    for (const auto& p : peers) out.push_back({l, p});
  return out;
}

std::string phase1_difference(const ConnectionConfig& a, const ConnectionConfig& b) {
  if (a.local_addr != b.local_addr || a.peer_addr != b.peer_addr) return "address";
  if (!(a.psk == b.psk)) return "psk";
  if (a.ike.cipher != b.ike.cipher || a.ike.hash != b.ike.hash || a.ike.group != b.ike.group ||
      a.ike.lifetime_s != b.ike.lifetime_s)
    return "ike policy";
  if (a.peer_id != b.peer_id) return "peer_id";
  if (a.local_id != b.local_id) return "local_id";
  return "";
}

}  // namespace ipsecgw::ike
