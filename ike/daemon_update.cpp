// Live changes of a running connection: in-place updates, make-before-break renegotiation and
// admin state (see Daemon::update_in_place, renegotiate, set_admin_state).
#include <algorithm>

#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike {

namespace {

bool same_ipsec(const IpsecPolicy& a, const IpsecPolicy& b) {
  return a.cipher == b.cipher && a.integ == b.integ && a.pfs == b.pfs &&
         a.lifetime_s == b.lifetime_s;
}

bool live(const IkeSa& sa) { return !sa.failed() && !sa.done(); }

}  // namespace

bool same_negotiation(const ConnectionConfig& a, const ConnectionConfig& b) {
  return phase1_difference(a, b).empty() && selectors(a) == selectors(b) &&
         same_ipsec(a.ipsec, b.ipsec);
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
  // Assigned in place: the IKE SAs read their settings through a pointer to it, so DPD
  // timers and action apply from their next tick (for a peer with several connections,
  // the first one's DPD settings count), the MTU to Quick Modes from now on.
  c->cfg = std::move(cfg);
  if (mtu_changed) push_mtu(*c);
  touch(*c->peer);  // DPD timers: its deadlines move
  log(LogLevel::kInfo, c->cfg.name + ": settings updated in place (no renegotiation)");
  return {};
}

// The installed outbound SAs take the connection's MTU (same SPI, keys and sequence numbers).
void Daemon::push_mtu(Conn& c) {
  for (const auto& sa : c.peer->sas) {
    if (!live(*sa)) continue;
    for (std::uint32_t spi : sa->connection_outbound_spis(c.cfg.id))
      if (auto r = ctx_.installer->set_outbound_mtu(spi, c.cfg.mtu); !r)
        log(LogLevel::kWarn, sa->tag() + ": mtu not updated: " + r.error());
  }
}

Result<void> Daemon::renegotiate(ConnectionConfig cfg) {
  Conn* c = find_conn(cfg.name);
  if (c == nullptr) return make_error("no connection named " + cfg.name);
  if (auto r = validate(cfg); !r) return r;
  if (cfg.id != c->cfg.id) return make_error(cfg.name + ": the connection id cannot change");
  cfg.admin_state_up = c->cfg.admin_state_up;
  Peer* p = c->peer;
  const bool moves = cfg.local_addr != p->local_addr || cfg.peer_addr != p->addr;
  Peer* target = moves ? find_peer(cfg.local_addr, cfg.peer_addr) : p;
  // Joining another peer: its phase-1 settings must agree. Staying: the peer's other
  // connections follow a phase-1 change (the model changes them together).
  if (target != nullptr)
    if (auto e = check_join(*target, cfg, c, moves); !e.empty()) return make_error(e);
  const bool selectors_moved = selectors(cfg) != selectors(c->cfg);
  const bool phase1_changed = !phase1_difference(cfg, c->cfg).empty();
  const bool alone = p->conns.size() == 1;
  if (moves && !alone) {
    // It leaves a peer other connections keep: its CHILD SAs there go (Delete), then it joins
    // its new peer like a new connection.
    detach(*c);
    std::erase(p->conns, c);
    c->cfg = std::move(cfg);
    if (c->cfg.admin_state_up) install_traps(*c);
    join(*c);
    log(LogLevel::kInfo, c->cfg.name + ": peer changed: negotiating with the new peer");
    return {};
  }
  if (moves) {
    // Its own peer: the peer (and its ISAKMP SAs, which retire below) moves along, unless the
    // new address has a peer already: then it joins that one.
    if (target != nullptr) {
      detach(*c);
      erase_peer(p);
      c->cfg = std::move(cfg);
      if (c->cfg.admin_state_up) install_traps(*c);
      join(*c);
      return {};
    }
    unlink_peer(*p);
    p->local_addr = cfg.local_addr;
    p->addr = cfg.peer_addr;
    link_peer(*p);
  }
  const ConnectionConfig* cp = &c->cfg;
  c->cfg = std::move(cfg);
  // The traps move to the new selectors; the old ones keep their SA until it is deleted.
  if (c->traps > 0 && selectors_moved) install_traps(*c);
  p->last_error.clear();
  p->retry_at = Millis{0};
  touch(*p);
  const bool holds_sas =
      std::any_of(p->sas.begin(), p->sas.end(), [](const auto& s) { return live(*s); });
  if (!c->cfg.admin_state_up || !holds_sas) {
    // A half-open negotiation the peer started under the old settings is abandoned.
    if (alone) drop_half_open(*p);
    log(LogLevel::kInfo, c->cfg.name + ": settings changed; next negotiation uses them");
    return {};
  }
  if (alone || phase1_changed) {
    // Make-before-break: the current SAs are marked replaced and carry the traffic until the
    // new ISAKMP SA has installed its CHILD SA pairs; housekeeping then retires them (Delete
    // after kRekeyGrace), as for a phase-1 re-establishment. Also for a response-only
    // connection: an operator change is ours to apply. A peer's other connections follow
    // onto the new ISAKMP SA (phase-1 settings are the peer's).
    drop_half_open(*p);
    // The slots whose CHILD SAs the old ISAKMP SAs hold switch outbound on the new one only
    // once the peer can receive (it may install its inbound SA only on our QM3), as rekeys do.
    std::vector<std::uint32_t> carried;
    for (auto& sa : p->sas) {
      if (!live(*sa)) continue;
      sa->mark_replaced();
      for (const Conn* pc : p->conns)
        for (std::size_t i = 0; i < selectors(pc->cfg).size(); ++i)
          if (sa->child_of(trap_id(pc->cfg.id, i))) carried.push_back(trap_id(pc->cfg.id, i));
    }
    log(LogLevel::kInfo, c->cfg.name + ": negotiated settings changed: renegotiating "
                                       "(make-before-break)");
    start(*p, c);
    if (!p->sas.empty()) p->sas.back()->defer_first_switch_of(std::move(carried));
    return {};
  }
  // One of several connections of the peer, phase 1 unchanged: only its CHILD SAs are
  // renegotiated under the current ISAKMP SA; the others are untouched.
  for (auto& sa : p->sas) {
    if (!live(*sa) || !sa->has_connection(cp->id)) continue;
    if (selectors_moved) {
      // New pairs: the old CHILD SAs go (Delete), new Quick Modes follow.
      sa->remove_connection(cp->id, true);
      sa->add_connection(*cp);
      for (std::size_t i = 0; i < selectors(*cp).size(); ++i) sa->request_child(trap_id(cp->id, i));
    } else {
      // Same pairs, new ipsec policy: a rekey Quick Mode each, make-before-break.
      for (std::size_t i = 0; i < selectors(*cp).size(); ++i) sa->rekey_child(trap_id(cp->id, i));
    }
  }
  touch(*p);
  log(LogLevel::kInfo, c->cfg.name + ": CHILD SA settings changed: new Quick Modes");
  return {};
}

Result<void> Daemon::set_admin_state(const std::string& name, bool up) {
  Conn* c = find_conn(name);
  if (c == nullptr) return make_error("no connection named " + name);
  // First the policy, so that no packet of the tunnel meets the unmatched-traffic rule.
  if (c->traps == 0) install_traps(*c);
  if (c->cfg.admin_state_up == up) return {};
  Peer& p = *c->peer;
  const bool peer_was_up = p.up();
  if (up) {
    c->cfg.admin_state_up = true;
    if (!peer_was_up) {
      p.last_error.clear();
      p.retry_at = Millis{0};
      p.restart_now = false;
    }
    for (auto& sa : p.sas)
      if (live(*sa)) sa->add_connection(c->cfg);
    for (auto& sa : p.half_open)
      if (!sa->failed()) sa->add_connection(c->cfg);
    touch(p);
    log(LogLevel::kInfo, name + ": admin state up");
    return {};
  }
  detach(*c);
  c->cfg.admin_state_up = false;
  if (!p.up()) {
    drop_half_open(p);
    for (auto& sa : p.sas)
      if (live(*sa)) sa->teardown(true);
    p.sas.clear();
    p.last_error.clear();
    p.retry_at = Millis{0};
    p.restart_now = false;
  }
  touch(p);
  log(LogLevel::kInfo, name + ": admin state down: SAs deleted, traffic dropped");
  return {};
}

}  // namespace ipsecgw::ike
