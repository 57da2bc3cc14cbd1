// Live changes of a running connection: in-place updates, make-before-break renegotiation and
// admin state (see Daemon::update_in_place, renegotiate, set_admin_state).
#include <algorithm>

#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike {

namespace {

bool same_ike(const IkePolicy& a, const IkePolicy& b) {
  return a.cipher == b.cipher && a.hash == b.hash && a.group == b.group &&
         a.lifetime_s == b.lifetime_s;
}

bool same_ipsec(const IpsecPolicy& a, const IpsecPolicy& b) {
  return a.cipher == b.cipher && a.integ == b.integ && a.pfs == b.pfs &&
         a.lifetime_s == b.lifetime_s;
}

bool live(const IkeSa& sa) { return !sa.failed() && !sa.done(); }

}  // namespace

bool same_negotiation(const ConnectionConfig& a, const ConnectionConfig& b) {
  return a.local_addr == b.local_addr && a.peer_addr == b.peer_addr && a.peer_id == b.peer_id &&
         a.local_subnet == b.local_subnet && a.peer_subnet == b.peer_subnet && a.psk == b.psk &&
         same_ike(a.ike, b.ike) && same_ipsec(a.ipsec, b.ipsec);
}

Result<void> Daemon::update_in_place(ConnectionConfig cfg) {
  Conn* c = find_conn(cfg.name);
  if (c == nullptr) return make_error("no connection named " + cfg.name);
  if (auto r = validate(cfg); !r) return r;
  if (cfg.id != c->cfg.id) return make_error(cfg.name + ": the connection id cannot change");
  if (!same_negotiation(c->cfg, cfg))
    return make_error(cfg.name + ": the change needs a renegotiation");
  cfg.admin_state_up = c->cfg.admin_state_up;  // set_admin_state's
  const bool mtu_changed = cfg.mtu != c->cfg.mtu;
  // Assigned in place: the connection's IKE SAs read their settings through a pointer to it,
  // so DPD timers and action apply from their next tick, the MTU to Quick Modes from now on.
  c->cfg = std::move(cfg);
  if (mtu_changed) push_mtu(*c);
  log(LogLevel::kInfo, c->cfg.name + ": settings updated in place (no renegotiation)");
  return {};
}

// The installed outbound SAs take the connection's MTU (same SPI, keys and sequence numbers).
void Daemon::push_mtu(Conn& c) {
  for (const auto& sa : c.sas) {
    if (!live(*sa) || !sa->child()) continue;
    if (auto r = ctx_.installer->set_outbound_mtu(sa->child()->spi_out, c.cfg.mtu); !r)
      log(LogLevel::kWarn, sa->tag() + ": mtu not updated: " + r.error());
  }
}

Result<void> Daemon::renegotiate(ConnectionConfig cfg) {
  Conn* c = find_conn(cfg.name);
  if (c == nullptr) return make_error("no connection named " + cfg.name);
  if (auto r = validate(cfg); !r) return r;
  if (cfg.id != c->cfg.id) return make_error(cfg.name + ": the connection id cannot change");
  cfg.admin_state_up = c->cfg.admin_state_up;
  const bool selectors_moved =
      cfg.local_subnet != c->cfg.local_subnet || cfg.peer_subnet != c->cfg.peer_subnet;
  if (c->trapped && selectors_moved) {
    // The trap moves to the new selectors; the old ones keep their SA until it is deleted.
    if (auto r = ctx_.installer->install_trap(cfg.id, cfg.local_subnet, cfg.peer_subnet); !r)
      log(LogLevel::kWarn, cfg.name + ": trap policy not moved: " + r.error());
  }
  c->cfg = std::move(cfg);
  c->last_error.clear();
  c->retry_at = Millis{0};
  // A half-open negotiation the peer started under the old settings is abandoned.
  std::erase_if(half_open_, [&](const HalfOpen& h) { return h.conn == c; });
  const bool holds_sas =
      std::any_of(c->sas.begin(), c->sas.end(), [](const auto& s) { return live(*s); });
  if (!c->cfg.admin_state_up || !holds_sas) {
    log(LogLevel::kInfo, c->cfg.name + ": settings changed; next negotiation uses them");
    return {};
  }
  // Make-before-break: the current SAs are marked replaced and carry the traffic until the new
  // ISAKMP SA has installed its CHILD SA pair; housekeeping then retires them (Delete after
  // kRekeyGrace), as for a phase-1 re-establishment. Also for a response-only connection:
  // an operator change is ours to apply.
  for (auto& sa : c->sas)
    if (live(*sa)) sa->mark_replaced();
  log(LogLevel::kInfo, c->cfg.name + ": negotiated settings changed: renegotiating "
                                     "(make-before-break)");
  start(*c);
  return {};
}

Result<void> Daemon::set_admin_state(const std::string& name, bool up) {
  Conn* c = find_conn(name);
  if (c == nullptr) return make_error("no connection named " + name);
  if (!c->trapped) {
    // First the policy, so that no packet of the tunnel meets the unmatched-traffic rule.
    if (auto r = ctx_.installer->install_trap(c->cfg.id, c->cfg.local_subnet,
                                              c->cfg.peer_subnet)) {
      c->trapped = true;
    } else {
      log(LogLevel::kWarn, name + ": no trap policy: " + r.error());
    }
  }
  if (c->cfg.admin_state_up == up) return {};
  c->cfg.admin_state_up = up;
  c->last_error.clear();
  c->retry_at = Millis{0};
  c->restart_now = false;
  if (up) {
    log(LogLevel::kInfo, name + ": admin state up");
    return {};
  }
  std::erase_if(half_open_, [&](const HalfOpen& h) { return h.conn == c; });
  for (auto& sa : c->sas)
    if (live(*sa)) sa->teardown(true);
  c->sas.clear();
  log(LogLevel::kInfo, name + ": admin state down: SAs deleted, traffic dropped");
  return {};
}

}  // namespace ipsecgw::ike
