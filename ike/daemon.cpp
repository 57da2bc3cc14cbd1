#include "ike/daemon.hpp"

#include <openssl/crypto.h>

#include <algorithm>

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

Result<void> Daemon::add_connection(ConnectionConfig cfg) {
  if (auto r = validate(cfg); !r) return r;
  if (find_conn(cfg.name) != nullptr) return make_error(cfg.name + ": duplicate connection name");
  for (const auto& c : conns_)
    if (c->cfg.peer_addr == cfg.peer_addr)
      return make_error(cfg.name + ": peer_addr already used by " + c->cfg.name +
                        " (the PSK is chosen by peer address)");
  auto c = std::make_unique<Conn>();
  c->cfg = std::move(cfg);
  if (c->cfg.admin_state_up) {
    // Trap policy (strongSwan's "trap"): traffic for the tunnel is held back and acquires an
    // SA instead of meeting the unmatched-traffic rule, before the first negotiation and after
    // DPD hold, expiry or a peer Delete alike. The data plane keeps it when SAs go.
    if (auto r = ctx_.installer->install_trap(c->cfg.id, c->cfg.local_subnet,
                                              c->cfg.peer_subnet)) {
      c->trapped = true;
    } else {
      log(LogLevel::kWarn, c->cfg.name + ": no trap policy: " + r.error());
    }
  }
  conns_.push_back(std::move(c));
  return {};
}

Result<void> Daemon::remove_connection(const std::string& name) {
  auto it = std::find_if(conns_.begin(), conns_.end(),
                         [&](const auto& c) { return c->cfg.name == name; });
  if (it == conns_.end()) return make_error("no connection named " + name);
  Conn& c = **it;
  for (auto& sa : c.sas)
    if (!sa->failed() && !sa->done()) sa->teardown(true);
  if (c.trapped)
    if (auto r = ctx_.installer->remove_trap(c.cfg.id); !r)
      log(LogLevel::kWarn, c.cfg.name + ": removing the trap policy: " + r.error());
  std::erase_if(half_open_, [&](const HalfOpen& h) { return h.conn == &c; });
  log(LogLevel::kInfo, c.cfg.name + ": connection removed");
  conns_.erase(it);
  return {};
}

Daemon::Conn* Daemon::find_conn(const std::string& name) const {
  for (const auto& c : conns_)
    if (c->cfg.name == name) return c.get();
  return nullptr;
}

std::vector<std::string> Daemon::connection_names() const {
  std::vector<std::string> v;
  for (const auto& c : conns_) v.push_back(c->cfg.name);
  return v;
}

void Daemon::start(Conn& c) {
  auto sa = std::make_unique<IkeSa>(Role::kInitiator, c.cfg, ctx_,
                                    dp::UdpEndpoint{c.cfg.local_addr, 500},
                                    dp::UdpEndpoint{c.cfg.peer_addr, 500});
  IkeSa* p = sa.get();
  // RFC 2407 §4.6.3.3: INITIAL-CONTACT on the first negotiation with this peer, so that it
  // drops whatever it kept from an earlier run of ours.
  p->set_initial_contact(!c.contacted);
  c.sas.push_back(std::move(sa));
  p->start();
}

// Lifetimes across IKE SAs of one connection, INITIAL-CONTACT, bookkeeping.
void Daemon::housekeeping(Conn& c, Millis now) {
  for (std::size_t i = 0; i < c.sas.size(); ++i) {
    IkeSa& sa = *c.sas[i];
    if (sa.established()) c.contacted = true;
    if (sa.initial_contact_received()) {
      sa.clear_initial_contact_received();
      // The peer started afresh: everything else we hold with it is stale. Drop it without
      // telling the peer (it has no state for it).
      log(LogLevel::kInfo, sa.tag() + ": INITIAL-CONTACT: removing other SAs with this peer");
      for (auto& other : c.sas)
        if (other.get() != &sa) {
          other->teardown(false);
          other->retire_at(Millis{0});  // done on its next tick; no failure recorded
          other->mark_replaced();
        }
      std::unique_ptr<IkeSa> keep = std::move(c.sas[i]);
      c.sas.clear();
      c.sas.push_back(std::move(keep));
      return housekeeping(c, now);
    }
  }
  // Phase 1 re-established before it expires (a new Main Mode, then a new Quick Mode under it).
  // A response-only connection never initiates: its peer re-establishes.
  if (c.cfg.admin_state_up && c.cfg.initiator == InitiatorMode::kBidirectional) {
    for (std::size_t i = 0; i < c.sas.size(); ++i) {
      if (!c.sas[i]->wants_reauth(now)) continue;
      log(LogLevel::kInfo, c.sas[i]->tag() + ": ISAKMP SA soft lifetime reached: re-establishing");
      c.sas[i]->mark_replaced();
      start(c);
      break;
    }
  }
  // The newest IKE SA with an installed CHILD SA carries the connection; older ones (replaced
  // by our re-establishment or the peer's, or whose CHILD SA the peer re-created under a new
  // ISAKMP SA) are deleted after the grace period, with Delete notifications.
  // A re-establishment that failed (reaped) leaves the replaced SA alone: it carries on.
  for (std::size_t i = 0; i < c.sas.size(); ++i) {
    IkeSa& old = *c.sas[i];
    if (!old.replaced() || old.failed() || old.done() || old.retiring()) continue;
    const bool successor = std::any_of(c.sas.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                       c.sas.end(), [](const auto& s) {
                                         return !s->failed() && !s->done();
                                       });
    if (!successor) old.unmark_replaced();
  }
  std::size_t last = c.sas.size();
  for (std::size_t i = 0; i < c.sas.size(); ++i)
    if (c.sas[i]->child() && !c.sas[i]->failed() && !c.sas[i]->done()) last = i;
  if (last == c.sas.size()) return;
  for (std::size_t i = 0; i < last; ++i) {
    IkeSa& old = *c.sas[i];
    if (old.failed() || old.done() || (!old.child() && !old.replaced())) continue;
    old.mark_replaced();
    old.retire_at(now + kRekeyGrace);
  }
}

void Daemon::on_event(const dp::SaEvent& e) {
  if (e.kind == dp::SaEventKind::kAcquire) {
    for (auto& c : conns_)
      if (c->cfg.id == e.conn_id) on_acquire(*c);
    return;
  }
  for (auto& c : conns_) {
    if (c->cfg.id != e.conn_id) continue;
    for (auto& sa : c->sas) {
      const auto& ch = sa->child();
      if (!ch || (e.dir == dp::Direction::kInbound ? ch->spi_in : ch->spi_out) != e.spi) continue;
      log(LogLevel::kInfo, sa->tag() + ": data plane reports " +
                               (e.kind == dp::SaEventKind::kSeqExhausted ? "sequence number exhaustion"
                                : e.kind == dp::SaEventKind::kSoftLimit  ? "soft volume limit"
                                                                         : "hard volume limit") +
                               ": rekeying");
      sa->rekey_child();
      return;
    }
  }
}

// A packet hit the connection's trap: it has no outbound SA. Negotiate one unless that is not
// ours to do (response-only, admin down), one is already under way (the data plane repeats
// acquires about once a second while packets keep coming), or a failure's retry timer runs
// (it initiates when it fires). A DPD hold ends here: traffic asks for the tunnel again.
void Daemon::on_acquire(Conn& c) {
  if (!c.cfg.admin_state_up || c.cfg.initiator != InitiatorMode::kBidirectional) return;
  const bool busy = std::any_of(c.sas.begin(), c.sas.end(),
                                [](const auto& s) { return !s->failed() && !s->done(); });
  if (busy) return;
  const Millis now = ctx_.clock->now();
  if (c.retry_at != Millis::max() && now < c.retry_at) return;
  log(LogLevel::kInfo, c.cfg.name + ": acquire: traffic for the tunnel, initiating");
  c.retry_at = Millis{0};
  start(c);
}

Result<void> Daemon::initiate(const std::string& name) {
  Conn* c = find_conn(name);
  if (c == nullptr) return make_error("no connection named " + name);
  if (!c->cfg.admin_state_up) return make_error(name + ": admin state down");
  start(*c);
  return {};
}

void Daemon::reap(Conn& c) {
  for (auto it = c.sas.begin(); it != c.sas.end();) {
    if ((*it)->done()) {
      it = c.sas.erase(it);
      continue;
    }
    if ((*it)->failed()) {
      c.last_error = (*it)->failure();
      c.retry_at = ctx_.clock->now() + kRetryAfterFailure;
      if ((*it)->dead_peer()) {
        if (c.cfg.dpd.action == DpdAction::kRestart &&
            c.cfg.initiator == InitiatorMode::kBidirectional) {
          log(LogLevel::kInfo, c.cfg.name + ": DPD action restart: initiating again");
          c.restart_now = true;
        } else {
          c.retry_at = Millis::max();  // hold: no automatic re-initiation
        }
      }
      (*it)->teardown(false);
      it = c.sas.erase(it);
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
  for (auto& c : conns_) {
    for (auto& sa : c->sas) {
      if (sa->icookie() != h->icookie) continue;
      if (sa->rcookie() != kZero && h->rcookie != kZero && sa->rcookie() != h->rcookie) continue;
      if (sa->role() == Role::kInitiator && sa->rcookie() == kZero && h->rcookie == kZero &&
          h->exchange == static_cast<std::uint8_t>(ExchangeType::kIdentityProtection))
        continue;  // our own MM1 reflected back: not for us
      sa->handle(d, *h);
      // strongSwan moves the CHILD SAs of a re-established IKEv1 SA onto the new one and may
      // delete them there: a Delete under any ISAKMP SA of the connection counts.
      for (std::uint32_t spi : sa->take_foreign_esp_deletes())
        for (auto& other : c->sas)
          if (other.get() != sa.get() && !other->failed() && !other->done() &&
              other->peer_deleted_esp(spi))
            break;
      housekeeping(*c, ctx_.clock->now());
      reap(*c);
      return;
    }
  }
  if (to_half_open(d, *h)) return;
  // A new Main Mode from a configured peer (RFC 2409 §5: MM1 has a zero responder cookie).
  if (h->exchange != static_cast<std::uint8_t>(ExchangeType::kIdentityProtection) ||
      h->rcookie != kZero || (h->flags & kFlagEncryption) || h->message_id != 0) {
    log(LogLevel::kDebug, "no IKE SA for " + hex(h->icookie) + "_" + hex(h->rcookie));
    ++counters_.bad_cookie_drops;
    return;
  }
  for (auto& c : conns_) {
    if (c->cfg.peer_addr != d.remote.addr || !c->cfg.admin_state_up) continue;
    new_half_open(*c, d, *h);
    return;
  }
  ++counters_.unknown_peer_drops;
  log(LogLevel::kInfo, "main mode from unknown peer " + dp::format_ipv4(d.remote.addr) +
                           " ignored");
}

Cookie Daemon::responder_cookie(const dp::UdpEndpoint& peer, const Cookie& icookie) const {
  const Bytes addr{static_cast<std::uint8_t>(peer.addr >> 24),
                   static_cast<std::uint8_t>(peer.addr >> 16),
                   static_cast<std::uint8_t>(peer.addr >> 8), static_cast<std::uint8_t>(peer.addr),
                   static_cast<std::uint8_t>(peer.port >> 8), static_cast<std::uint8_t>(peer.port)};
  const auto mac = crypto::prf(crypto::HashAlg::kSha256, cookie_secret_.span(), {addr, icookie});
  Cookie c{};
  std::copy_n(mac.data(), c.size(), c.begin());
  return c;
}

// A message for a half-open responder negotiation: the exact cookie pair, or (an MM1
// retransmission) our initiator cookie with a zero responder cookie from the same endpoint.
bool Daemon::to_half_open(const dp::DatagramView& d, const Header& h) {
  static const Cookie kZero{};
  for (std::size_t i = 0; i < half_open_.size(); ++i) {
    IkeSa& sa = *half_open_[i].sa;
    if (sa.icookie() != h.icookie) continue;
    const bool mm1_again = h.rcookie == kZero && sa.remote().addr == d.remote.addr &&
                           sa.remote().port == d.remote.port;
    if (h.rcookie != sa.rcookie() && !mm1_again) continue;
    sa.handle(d, h);
    settle_half_open(i);
    return true;
  }
  return false;
}

// MM1 from a configured peer: a new half-open entry, evicting the oldest over a cap.
void Daemon::new_half_open(Conn& c, const dp::DatagramView& d, const Header& h) {
  evict_half_open(d.remote.addr);
  auto sa = std::make_unique<IkeSa>(Role::kResponder, c.cfg, ctx_, d.local, d.remote);
  sa->set_responder_cookie(responder_cookie(d.remote, h.icookie));
  ++counters_.half_open_created;
  half_open_.push_back({&c, std::move(sa)});
  half_open_.back().sa->handle(d, h);
  settle_half_open(half_open_.size() - 1);
}

void Daemon::evict_half_open(dp::Ipv4 peer) {
  std::size_t of_peer = 0;
  for (const auto& ho : half_open_) of_peer += ho.sa->remote().addr == peer;
  if (of_peer >= kMaxHalfOpenPerPeer) {
    auto it = std::find_if(half_open_.begin(), half_open_.end(),
                           [&](const HalfOpen& ho) { return ho.sa->remote().addr == peer; });
    log(LogLevel::kDebug, it->sa->tag() + ": half-open limit per peer: evicted");
    half_open_.erase(it);
    ++counters_.half_open_peer_cap;
  }
  if (half_open_.size() >= kMaxHalfOpen) {
    log(LogLevel::kDebug, half_open_.front().sa->tag() + ": half-open limit: evicted");
    half_open_.erase(half_open_.begin());
    ++counters_.half_open_global_cap;
  }
}

void Daemon::settle_half_open(std::size_t i) {
  IkeSa& sa = *half_open_[i].sa;
  Conn& c = *half_open_[i].conn;
  if (sa.failed()) {
    // What the peer's own attempt ran into is the connection's news (wrong PSK, no proposal
    // chosen), but it never delays our own initiation; a silent half-open entry is not news.
    if (sa.failure() != "negotiation timed out") c.last_error = sa.failure();
    half_open_.erase(half_open_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
  if (!sa.established()) return;
  std::unique_ptr<IkeSa> p = std::move(half_open_[i].sa);
  half_open_.erase(half_open_.begin() + static_cast<std::ptrdiff_t>(i));
  promote(c, std::move(p));
}

// The peer authenticated (MM5) a negotiation it started. If we started one too (simultaneous
// initiation), one of the two goes, decided on authenticated evidence only: rather than two
// ISAKMP SAs each with a CHILD SA pair, the side with the higher address abandons its own
// negotiation while it has produced no CHILD SA; the lower side keeps its own when the peer
// has answered it (the peer abandons its negotiation) and deletes the peer's.
void Daemon::promote(Conn& c, std::unique_ptr<IkeSa> sa) {
  auto own_pending = [](const std::unique_ptr<IkeSa>& s) {
    return s->role() == Role::kInitiator && !s->child() && !s->failed() && !s->done() &&
           !s->replaced();
  };
  const bool pending = std::any_of(c.sas.begin(), c.sas.end(), own_pending);
  const bool answered = std::any_of(c.sas.begin(), c.sas.end(), [&](const auto& s) {
    return own_pending(s) && s->state() != IkeSa::State::kMm1Sent;
  });
  if (pending && c.cfg.local_addr < c.cfg.peer_addr && answered) {
    log(LogLevel::kInfo,
        sa->tag() + ": simultaneous initiation: keeping ours, deleting the peer's");
    sa->teardown(true);
    return;
  }
  if (pending) {
    log(LogLevel::kInfo, c.cfg.name + ": simultaneous initiation: yielding to the peer's");
    for (auto& s : c.sas)
      if (own_pending(s)) s->teardown(true);
    std::erase_if(c.sas, own_pending);
  }
  c.sas.push_back(std::move(sa));
  housekeeping(c, ctx_.clock->now());
  reap(c);
}

void Daemon::tick() {
  const Millis now = ctx_.clock->now();
  // Sequence-number exhaustion and volume limits come from the data plane (RFC 4303 §3.3.3:
  // a new SA before the counter cycles).
  for (const auto& e : ctx_.installer->poll_events()) on_event(e);
  for (std::size_t i = half_open_.size(); i-- > 0;) {
    half_open_[i].sa->tick(now);
    settle_half_open(i);
  }
  for (auto& c : conns_) {
    // A replaced ISAKMP SA about to be retired: its CHILD SAs' Deletes also go out under the
    // newest ISAKMP SA, since the peer may have moved them there (strongSwan adopts IKEv1
    // CHILD SAs into a re-established ISAKMP SA and ignores Deletes under the old one).
    IkeSa* newest = nullptr;
    for (auto& sa : c->sas)
      if (sa->child() && !sa->retiring() && !sa->failed() && !sa->done()) newest = sa.get();
    if (newest != nullptr)
      for (auto& sa : c->sas)
        if (sa.get() != newest && sa->retiring() && now >= sa->retire_time() && !sa->done() &&
            !sa->failed())
          for (std::uint32_t spi : sa->inbound_spis()) newest->send_esp_delete(spi);
    for (std::size_t i = 0; i < c->sas.size(); ++i) c->sas[i]->tick(now);
    housekeeping(*c, now);
    reap(*c);
    if (c->restart_now) {
      c->restart_now = false;
      if (c->cfg.admin_state_up && c->sas.empty()) start(*c);
      continue;
    }
    if (c->cfg.admin_state_up && c->cfg.initiator == InitiatorMode::kBidirectional &&
        c->sas.empty() && now >= c->retry_at)
      start(*c);
  }
}

std::size_t Daemon::sas_holding_spent_secrets() const {
  std::size_t n = 0;
  for (const auto& c : conns_)
    for (const auto& sa : c->sas)
      n += (sa->established() || sa->failed()) && sa->holds_phase1_secrets();
  return n;
}

ConnectionStatus Daemon::status(const std::string& name) const {
  ConnectionStatus st;
  const Conn* c = find_conn(name);
  if (c == nullptr) return st;
  for (auto it = c->sas.rbegin(); it != c->sas.rend(); ++it) {  // newest first
    const auto& sa = *it;
    if (sa->state() == IkeSa::State::kActive && sa->child()) {
      st.state = ConnState::kActive;
      st.child = sa->child();
      return st;
    }
  }
  for (const auto& sa : c->sas)
    if (!sa->failed() && !sa->done()) st.state = ConnState::kPending;
  for (const auto& ho : half_open_)
    if (ho.conn == c) st.state = ConnState::kPending;
  if (st.state == ConnState::kDown && !c->last_error.empty()) {
    st.state = ConnState::kError;
    st.reason = c->last_error;
  }
  return st;
}

}  // namespace ipsecgw::ike
