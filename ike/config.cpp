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
  return {};
}

}  // namespace ipsecgw::ike
