#include "ike/daemon.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "ike/log.hpp"

namespace ipsecgw::ike {

const char* to_string(ConnState s) {
  switch (s) {
    case ConnState::kDown: return "DOWN";
    case ConnState::kPending: return "PENDING";
    case ConnState::kActive: return "ACTIVE";
    case ConnState::kError: return "ERROR";
  }
  return "?";
}

namespace {
// The local secret responder cookies are derived from, from the key source (fixed when fuzzing).
std::uint64_t cookie_key(const Cookie& c) {
  std::uint64_t k = 0;
  std::memcpy(&k, c.data(), sizeof k);
  return k;
}

std::uint64_t pair_key(dp::Ipv4 local, dp::Ipv4 peer) {
  return std::uint64_t{local} << 32 | peer;
}

crypto::SecureBytes cookie_secret(KeySource& keys) {
  Bytes raw = keys.nonce(32);
  crypto::SecureBytes s(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return s;
}
}  // namespace

Daemon::Daemon(dp::DatagramSender& sender, dp::SaInstaller& installer, const Clock& clock,
               KeySource* keys)
    : ctx_{&sender, &installer, &clock, &counters_, keys != nullptr ? keys : &default_keys_},
      cookie_secret_(cookie_secret(*ctx_.keys)) {}

Daemon::~Daemon() = default;

// ---- peers ----

Daemon::Conn* Daemon::Peer::lead() const {
  for (Conn* c : conns)
    if (c->cfg.admin_state_up) return c;
  return conns.empty() ? nullptr : conns.front();
}

bool Daemon::Peer::up() const {
  return std::any_of(conns.begin(), conns.end(), [](const Conn* c) { return c->cfg.admin_state_up; });
}

bool Daemon::Peer::initiates() const {
  return std::any_of(conns.begin(), conns.end(), [](const Conn* c) {
    return c->cfg.admin_state_up && c->cfg.initiator == InitiatorMode::kBidirectional;
  });
}

bool Daemon::Peer::busy() const {
  return std::any_of(sas.begin(), sas.end(),
                     [](const auto& s) { return !s->failed() && !s->done(); });
}

IkeSa* Daemon::Peer::carrier() const {
  IkeSa* newest = nullptr;
  for (const auto& sa : sas)
    if (sa->any_child_installed() && !sa->retiring() && !sa->failed() && !sa->done())
      newest = sa.get();
  return newest;
}

Daemon::Peer* Daemon::find_peer(dp::Ipv4 local_addr, dp::Ipv4 addr) const {
  auto it = peers_by_pair_.find(pair_key(local_addr, addr));
  return it == peers_by_pair_.end() ? nullptr : it->second;
}

// ---- indexes and timers ----

void Daemon::link_peer(Peer& p) {
  if (p.serial == 0) p.serial = next_serial_++;
  peers_by_serial_[p.serial] = &p;
  peers_by_pair_[pair_key(p.local_addr, p.addr)] = &p;
  peers_by_addr_.emplace(p.addr, &p);
}

void Daemon::unlink_peer(Peer& p) {
  if (auto it = peers_by_pair_.find(pair_key(p.local_addr, p.addr));
      it != peers_by_pair_.end() && it->second == &p)
    peers_by_pair_.erase(it);
  for (auto [it, end] = peers_by_addr_.equal_range(p.addr); it != end; ++it)
    if (it->second == &p) {
      peers_by_addr_.erase(it);
      break;
    }
  peers_by_serial_.erase(p.serial);  // its timer entries go stale
  p.due = Millis::max();
  for (std::uint64_t k : p.indexed)
    for (auto [it, end] = by_icookie_.equal_range(k); it != end; ++it)
      if (it->second == &p) {
        by_icookie_.erase(it);
        break;
      }
  p.indexed.clear();
}

void Daemon::erase_peer(Peer* p) {
  drop_half_open(*p);
  unlink_peer(*p);
  std::erase_if(peers_, [&](const auto& q) { return q.get() == p; });
}

// The initiator cookies of the peer's IKE SAs and half-open negotiations, each once, in
// by_icookie_ (an SA erased since leaves no entry behind). Its responder SAs carry the peer's
// cookie: a datagram's cookie may thus lead to more than one peer; each one's SAs are matched
// as before.
void Daemon::index_cookies(Peer& p) {
  std::vector<std::uint64_t> now;
  now.reserve(p.sas.size() + p.half_open.size());
  for (const auto* v : {&p.sas, &p.half_open})
    for (const auto& sa : *v) {
      const std::uint64_t k = cookie_key(sa->icookie());
      if (std::find(now.begin(), now.end(), k) == now.end()) now.push_back(k);
    }
  if (now == p.indexed) return;
  for (std::uint64_t k : p.indexed)
    for (auto [it, end] = by_icookie_.equal_range(k); it != end; ++it)
      if (it->second == &p) {
        by_icookie_.erase(it);
        break;
      }
  for (std::uint64_t k : now) by_icookie_.emplace(k, &p);
  p.indexed = std::move(now);
}

void Daemon::schedule(Peer& p, Millis at) {
  if (at >= p.due || peers_by_serial_.count(p.serial) == 0) return;
  p.due = at;
  timers_.push({at, p.serial});
  // Stale entries (a peer rescheduled earlier) are skipped when they come up; rebuild the
  // heap from the live ones when they outnumber the peers, so that it stays O(peers).
  if (timers_.size() > 4 * peers_.size() + 64) {
    std::vector<Timer> live;
    live.reserve(peers_.size());
    for (const auto& q : peers_)
      if (q->due != Millis::max()) live.push_back({q->due, q->serial});
    timers_ = decltype(timers_)(std::greater<>(), std::move(live));
  }
}

void Daemon::touch(Peer& p) {
  mark_status(p);
  index_cookies(p);
  schedule(p, Millis{0});
}

Millis Daemon::next_due(const Peer& p, Millis now) const {
  Millis t = Millis::max();
  for (const auto& sa : p.sas) t = std::min(t, sa->next_deadline(now));
  for (const auto& sa : p.half_open) t = std::min(t, sa->next_deadline(now));
  if (p.restart_now) t = std::min(t, now);
  if (p.up() && p.initiates()) {
    if (p.sas.empty()) t = std::min(t, p.retry_at);
    for (const auto& sa : p.sas) t = std::min(t, sa->reauth_time());
  }
  return t;
}

std::unique_ptr<IkeSa> Daemon::new_sa(Peer& p, Role role, dp::UdpEndpoint local,
                                      dp::UdpEndpoint remote, const Conn* lead) {
  if (lead == nullptr) lead = p.lead();
  auto sa = std::make_unique<IkeSa>(role, lead->cfg, ctx_, local, remote);
  for (const Conn* c : p.conns)
    if (c != lead && c->cfg.admin_state_up) sa->add_connection(c->cfg);
  return sa;
}

std::string Daemon::check_join(const Peer& p, const ConnectionConfig& cfg, const Conn* self,
                               bool phase1) const {
  const auto mine = selectors(cfg);
  for (const Conn* o : p.conns) {
    if (o == self) continue;
    if (auto diff = phase1 ? phase1_difference(o->cfg, cfg) : ""; !diff.empty())
      return cfg.name + ": " + diff + " differs from connection " + o->cfg.name +
             ", which has the same peer " + dp::format_ipv4(cfg.peer_addr) +
             " (connections to one peer share its ISAKMP SA)";
    for (const auto& sel : selectors(o->cfg))
      if (std::find(mine.begin(), mine.end(), sel) != mine.end())
        return cfg.name + ": the subnet pair " + dp::format_prefix(sel.local) + " - " +
               dp::format_prefix(sel.peer) + " is also connection " + o->cfg.name + "'s";
  }
  return "";
}

void Daemon::join(Conn& c) {
  Peer* p = find_peer(c.cfg.local_addr, c.cfg.peer_addr);
  if (p == nullptr) {
    peers_.push_back(std::make_unique<Peer>());
    p = peers_.back().get();
    p->local_addr = c.cfg.local_addr;
    p->addr = c.cfg.peer_addr;
    link_peer(*p);
  }
  c.peer = p;
  p->conns.push_back(&c);
  touch(*p);  // a bi-directional connection initiates on the next tick
  if (!c.cfg.admin_state_up) return;
  // Slots in the peer's live ISAKMP SAs and in its half-open ones.
  for (auto& sa : p->sas)
    if (!sa->failed() && !sa->done()) sa->add_connection(c.cfg);
  for (auto& sa : p->half_open)
    if (!sa->failed()) sa->add_connection(c.cfg);
}

void Daemon::detach(Conn& c) {
  Peer& p = *c.peer;
  const std::uint32_t id = c.cfg.id;
  for (auto it = p.half_open.begin(); it != p.half_open.end();) {
    if ((*it)->has_connection(id)) {
      (*it)->remove_connection(id, false);
      if ((*it)->connection_count() == 0) {
        it = p.half_open.erase(it);
        continue;
      }
    }
    ++it;
  }
  recount_half_open(p);
  for (auto it = p.sas.begin(); it != p.sas.end();) {
    IkeSa& sa = **it;
    if (!sa.has_connection(id)) {
      ++it;
      continue;
    }
    if (sa.connection_count() > 1) {
      // Only this connection's CHILD SAs go (Delete to the peer); the ISAKMP SA carries on.
      if (!sa.failed() && !sa.done()) sa.remove_connection(id, true);
      else sa.remove_connection(id, false);
      ++it;
      continue;
    }
    // Its last connection: the ISAKMP SA goes too.
    if (!sa.failed() && !sa.done()) sa.teardown(true);
    it = p.sas.erase(it);
  }
  touch(p);
}

void Daemon::install_traps(Conn& c) {
  // Trap policy (strongSwan's "trap"): traffic for the tunnel is held back and acquires an
  // SA instead of meeting the unmatched-traffic rule, before the first negotiation and after
  // DPD hold, expiry or a peer Delete alike. The data plane keeps it when SAs go. One per
  // subnet pair.
  const auto sel = selectors(c.cfg);
  std::size_t n = 0;
  for (std::size_t i = 0; i < sel.size(); ++i) {
    if (auto r = ctx_.installer->install_trap(trap_id(c.cfg.id, i), sel[i].local, sel[i].peer)) {
      n = i + 1;
    } else {
      log(LogLevel::kWarn, c.cfg.name + ": no trap policy: " + r.error());
    }
  }
  if (n < c.traps) remove_traps(c, n);
  c.traps = std::max(c.traps, n);
}

void Daemon::remove_traps(Conn& c, std::size_t from) {
  for (std::size_t i = from; i < c.traps; ++i)
    if (auto r = ctx_.installer->remove_trap(trap_id(c.cfg.id, i)); !r)
      log(LogLevel::kWarn, c.cfg.name + ": removing the trap policy: " + r.error());
  c.traps = std::min(c.traps, from);
}

// ---- connections ----

Result<void> Daemon::add_connection(ConnectionConfig cfg) {
  if (auto r = validate(cfg); !r) return r;
  if (find_conn(cfg.name) != nullptr) return make_error(cfg.name + ": duplicate connection name");
  if (const Peer* p = find_peer(cfg.local_addr, cfg.peer_addr))
    if (auto e = check_join(*p, cfg, nullptr); !e.empty()) return make_error(e);
  auto c = std::make_unique<Conn>();
  c->cfg = std::move(cfg);
  if (c->cfg.admin_state_up) install_traps(*c);
  conns_by_name_[c->cfg.name] = c.get();
  conns_by_id_.emplace(c->cfg.id, c.get());
  join(*c);
  conns_.push_back(std::move(c));
  return {};
}

Result<void> Daemon::remove_connection(const std::string& name) {
  auto it = std::find_if(conns_.begin(), conns_.end(),
                         [&](const auto& c) { return c->cfg.name == name; });
  if (it == conns_.end()) return make_error("no connection named " + name);
  Conn& c = **it;
  detach(c);
  remove_traps(c);
  Peer* p = c.peer;
  std::erase(p->conns, &c);
  if (p->conns.empty()) erase_peer(p);
  log(LogLevel::kInfo, c.cfg.name + ": connection removed");
  conns_by_name_.erase(c.cfg.name);
  for (auto [i, end] = conns_by_id_.equal_range(c.cfg.id); i != end; ++i)
    if (i->second == &c) {
      conns_by_id_.erase(i);
      break;
    }
  conns_.erase(it);
  return {};
}

Daemon::Conn* Daemon::find_conn(const std::string& name) const {
  auto it = conns_by_name_.find(name);
  return it == conns_by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> Daemon::connection_names() const {
  std::vector<std::string> v;
  for (const auto& c : conns_) v.push_back(c->cfg.name);
  return v;
}

void Daemon::start(Peer& p, const Conn* lead) {
  if (p.conns.empty()) return;
  auto sa = new_sa(p, Role::kInitiator, dp::UdpEndpoint{p.local_addr, 500},
                   dp::UdpEndpoint{p.addr, 500}, lead);
  IkeSa* s = sa.get();
  // RFC 2407 §4.6.3.3: INITIAL-CONTACT on the first negotiation with this peer, so that it
  // drops whatever it kept from an earlier run of ours.
  s->set_initial_contact(!p.contacted);
  p.sas.push_back(std::move(sa));
  s->start();
  touch(p);
}

// Lifetimes across IKE SAs of one peer, INITIAL-CONTACT, bookkeeping.
void Daemon::housekeeping(Peer& p, Millis now) {
  for (std::size_t i = 0; i < p.sas.size(); ++i) {
    IkeSa& sa = *p.sas[i];
    if (sa.established()) p.contacted = true;
    if (sa.initial_contact_received()) {
      sa.clear_initial_contact_received();
      // The peer started afresh: everything else we hold with it is stale. Drop it without
      // telling the peer (it has no state for it).
      log(LogLevel::kInfo, sa.tag() + ": INITIAL-CONTACT: removing other SAs with this peer");
      for (auto& other : p.sas)
        if (other.get() != &sa) {
          other->teardown(false);
          other->retire_at(Millis{0});  // done on its next tick; no failure recorded
          other->mark_replaced();
        }
      std::unique_ptr<IkeSa> keep = std::move(p.sas[i]);
      p.sas.clear();
      p.sas.push_back(std::move(keep));
      return housekeeping(p, now);
    }
  }
  // Phase 1 re-established before it expires (a new Main Mode, then new Quick Modes under
  // it). Only a peer with a bi-directional connection initiates; else the peer re-establishes.
  if (p.up() && p.initiates()) {
    for (std::size_t i = 0; i < p.sas.size(); ++i) {
      if (!p.sas[i]->wants_reauth(now)) continue;
      log(LogLevel::kInfo, p.sas[i]->tag() + ": ISAKMP SA soft lifetime reached: re-establishing");
      p.sas[i]->mark_replaced();
      start(p);
      break;
    }
  }
  // The newest IKE SA with an installed CHILD SA carries the peer's connections; older ones
  // (replaced by our re-establishment or the peer's, or whose CHILD SAs the peer re-created
  // under a new ISAKMP SA) are deleted after the grace period, with Delete notifications.
  // A re-establishment that failed (reaped) leaves the replaced SA alone: it carries on.
  for (std::size_t i = 0; i < p.sas.size(); ++i) {
    IkeSa& old = *p.sas[i];
    if (!old.replaced() || old.failed() || old.done() || old.retiring()) continue;
    const bool successor = std::any_of(p.sas.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                       p.sas.end(), [](const auto& s) {
                                         return !s->failed() && !s->done();
                                       });
    if (!successor) old.unmark_replaced();
  }
  std::size_t last = p.sas.size();
  for (std::size_t i = 0; i < p.sas.size(); ++i)
    if (p.sas[i]->any_child_installed() && !p.sas[i]->failed() && !p.sas[i]->done()) last = i;
  if (last == p.sas.size()) return;
  for (std::size_t i = 0; i < last; ++i) {
    IkeSa& old = *p.sas[i];
    if (old.failed() || old.done() || (!old.any_child_installed() && !old.replaced())) continue;
    old.mark_replaced();
    old.retire_at(now + kRekeyGrace);
  }
}

void Daemon::on_event(const dp::SaEvent& e) {
  const auto [first, end] = conns_by_id_.equal_range(conn_of_trap(e.conn_id));
  std::vector<Conn*> conns;
  for (auto it = first; it != end; ++it) conns.push_back(it->second);
  if (e.kind == dp::SaEventKind::kAcquire) {
    for (Conn* c : conns) on_acquire(*c, e.conn_id);
    return;
  }
  // The connection's CHILD SAs are in its peer's IKE SAs.
  for (Conn* c : conns) {
    Peer* p = c->peer;
    for (auto& sa : p->sas) {
      ++sa_visits_;
      const auto ch = sa->child_of(e.conn_id);
      if (!ch || (e.dir == dp::Direction::kInbound ? ch->spi_in : ch->spi_out) != e.spi) continue;
      log(LogLevel::kInfo, sa->tag() + ": data plane reports " +
                               (e.kind == dp::SaEventKind::kSeqExhausted ? "sequence number exhaustion"
                                : e.kind == dp::SaEventKind::kSoftLimit  ? "soft volume limit"
                                                                         : "hard volume limit") +
                               ": rekeying");
      sa->rekey_child(e.conn_id);
      touch(*p);
      return;
    }
  }
}

// A packet hit a trap of the connection: that pair has no outbound SA. Negotiate one unless
// that is not ours to do (response-only, admin down), one is already under way (the data
// plane repeats acquires about once a second while packets keep coming), or a failure's
// retry timer runs (it initiates when it fires). Under an established ISAKMP SA of the peer
// only the pair's Quick Mode runs. A DPD hold ends here: traffic asks for the tunnel again.
void Daemon::on_acquire(Conn& c, std::uint32_t trap) {
  if (!c.cfg.admin_state_up || c.cfg.initiator != InitiatorMode::kBidirectional) return;
  Peer& p = *c.peer;
  for (auto& sa : p.sas)
    if (sa->established() && !sa->failed() && !sa->done() && !sa->replaced() &&
        !sa->retiring() && sa->has_connection(c.cfg.id)) {
      sa->request_child(trap);
      touch(p);
      return;
    }
  if (p.busy()) return;
  const Millis now = ctx_.clock->now();
  if (p.retry_at != Millis::max() && now < p.retry_at) return;
  log(LogLevel::kInfo, c.cfg.name + ": acquire: traffic for the tunnel, initiating");
  p.retry_at = Millis{0};
  start(p);
}

Result<void> Daemon::initiate(const std::string& name) {
  Conn* c = find_conn(name);
  if (c == nullptr) return make_error("no connection named " + name);
  if (!c->cfg.admin_state_up) return make_error(name + ": admin state down");
  start(*c->peer);
  return {};
}

void Daemon::reap(Peer& p) {
  const Conn* lead = p.lead();
  for (auto it = p.sas.begin(); it != p.sas.end();) {
    if ((*it)->done()) {
      it = p.sas.erase(it);
      continue;
    }
    if ((*it)->failed()) {
      p.last_error = (*it)->failure();
      p.retry_at = ctx_.clock->now() + kRetryAfterFailure;
      if ((*it)->dead_peer()) {
        if (lead != nullptr && lead->cfg.dpd.action == DpdAction::kRestart && p.initiates()) {
          log(LogLevel::kInfo, lead->cfg.name + ": DPD action restart: initiating again");
          p.restart_now = true;
        } else {
          p.retry_at = Millis::max();  // hold: no automatic re-initiation
        }
      }
      (*it)->teardown(false);
      it = p.sas.erase(it);
    } else {
      ++it;
    }
  }
}

void Daemon::on_datagram(const dp::DatagramView& d) {
  auto h = parse_header(d.payload);
  if (!h) {
    log(LogLevel::kDebug, "dropping datagram from " + dp::format_ipv4(d.remote.addr) + ": " +
                              h.error());
    return;
  }
  static const Cookie kZero{};
  // Only the peers holding an IKE SA with this initiator cookie (by_icookie_), not all.
  Peer* found = nullptr;
  IkeSa* match = nullptr;
  for (auto [it, end] = by_icookie_.equal_range(cookie_key(h->icookie));
       it != end && match == nullptr; ++it) {
    for (auto& sa : it->second->sas) {
      ++sa_visits_;
      if (sa->icookie() != h->icookie) continue;
      if (sa->rcookie() != kZero && h->rcookie != kZero && sa->rcookie() != h->rcookie) continue;
      if (sa->role() == Role::kInitiator && sa->rcookie() == kZero && h->rcookie == kZero &&
          h->exchange == static_cast<std::uint8_t>(ExchangeType::kIdentityProtection))
        continue;  // our own MM1 reflected back: not for us
      found = it->second;
      match = sa.get();
      break;
    }
  }
  if (match != nullptr) {
    Peer* p = found;
    IkeSa* sa = match;
    {
      sa->handle(d, *h);
      // strongSwan moves the CHILD SAs of a re-established IKEv1 SA onto the new one and may
      // delete them there: a Delete under any ISAKMP SA of the peer counts.
      for (std::uint32_t spi : sa->take_foreign_esp_deletes())
        for (auto& other : p->sas)
          if (other.get() != sa && !other->failed() && !other->done() &&
              other->peer_deleted_esp(spi))
            break;
      housekeeping(*p, ctx_.clock->now());
      reap(*p);
      touch(*p);
      return;
    }
  }
  // A half-open negotiation of one of those peers (each holds at most kMaxHalfOpenPerPeer).
  for (auto [it, end] = by_icookie_.equal_range(cookie_key(h->icookie)); it != end; ++it) {
    Peer& p = *it->second;
    if (to_half_open(p, d, *h)) {
      touch(p);
      return;
    }
  }
  // A new Main Mode from a configured peer (RFC 2409 §5: MM1 has a zero responder cookie).
  if (h->exchange != static_cast<std::uint8_t>(ExchangeType::kIdentityProtection) ||
      h->rcookie != kZero || (h->flags & kFlagEncryption) || h->message_id != 0) {
    log(LogLevel::kDebug, "no IKE SA for " + hex(h->icookie) + "_" + hex(h->rcookie));
    ++counters_.bad_cookie_drops;
    return;
  }
  // The peer with this address (from the local address it came to, when there are several).
  Peer* to = nullptr;
  for (auto [it, end] = peers_by_addr_.equal_range(d.remote.addr); it != end; ++it) {
    if (!it->second->up()) continue;
    if (to == nullptr || it->second->local_addr == d.local.addr) to = it->second;
  }
  if (to != nullptr) {
    new_half_open(*to, d, *h);
    touch(*to);
    return;
  }
  ++counters_.unknown_peer_drops;
  log(LogLevel::kInfo, "main mode from unknown peer " + dp::format_ipv4(d.remote.addr) +
                           " ignored");
}

void Daemon::tick() {
  const Millis now = ctx_.clock->now();
  // Sequence-number exhaustion and volume limits come from the data plane (RFC 4303 §3.3.3:
  // a new SA before the counter cycles).
  for (const auto& e : ctx_.installer->poll_events()) on_event(e);
  // Only the peers whose next deadline came, or that were touched since the last tick.
  std::vector<Peer*> due;
  while (!timers_.empty() && timers_.top().at <= now) {
    const Timer t = timers_.top();
    timers_.pop();
    auto it = peers_by_serial_.find(t.serial);
    if (it == peers_by_serial_.end() || it->second->due != t.at) continue;  // stale
    it->second->due = Millis::max();
    due.push_back(it->second);
  }
  for (Peer* p : due) tick_peer(*p, now);
}

void Daemon::tick_peer(Peer& p, Millis now) {
  mark_status(p);  // its SAs' timers may fail, retire or rekey them
  // A replaced ISAKMP SA about to be retired: its CHILD SAs' Deletes also go out under the
  // newest ISAKMP SA, since the peer may have moved them there (strongSwan adopts IKEv1
  // CHILD SAs into a re-established ISAKMP SA and ignores Deletes under the old one).
  if (IkeSa* newest = p.carrier())
    for (auto& sa : p.sas)
      if (sa.get() != newest && sa->retiring() && now >= sa->retire_time() && !sa->done() &&
          !sa->failed())
        for (std::uint32_t spi : sa->inbound_spis()) newest->send_esp_delete(spi);
  sa_visits_ += p.sas.size() + p.half_open.size();
  for (std::size_t i = p.half_open.size(); i-- > 0;) {
    p.half_open[i]->tick(now);
    settle_half_open(p, i);
  }
  for (std::size_t i = 0; i < p.sas.size(); ++i) p.sas[i]->tick(now);
  housekeeping(p, now);
  reap(p);
  if (p.restart_now) {
    p.restart_now = false;
    if (p.up() && p.sas.empty()) start(p);
  } else if (p.up() && p.initiates() && p.sas.empty() && now >= p.retry_at) {
    start(p);
  }
  index_cookies(p);
  schedule(p, next_due(p, now));
}

std::size_t Daemon::sas_holding_spent_secrets() const {
  std::size_t n = 0;
  for (const auto& p : peers_)
    for (const auto& sa : p->sas)
      n += (sa->established() || sa->failed()) && sa->holds_phase1_secrets();
  return n;
}

}  // namespace ipsecgw::ike
