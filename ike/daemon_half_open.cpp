// Daemon: responder negotiations before they are ISAKMP SAs of a peer. An MM1 from a
// configured peer opens a half-open entry in that peer (stateless responder cookie; one per
// peer outside any global cap, more capped per peer and in all, issue #10/#12); once the peer
// authenticates it is promoted to the peer's SAs, where simultaneous initiation is settled.
#include <algorithm>

#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike {

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

// A message for a half-open responder negotiation of `p`: the exact cookie pair, or (an MM1
// retransmission) our initiator cookie with a zero responder cookie from the same endpoint.
bool Daemon::to_half_open(Peer& p, const dp::DatagramView& d, const Header& h) {
  static const Cookie kZero{};
  for (std::size_t i = 0; i < p.half_open.size(); ++i) {
    IkeSa& sa = *p.half_open[i];
    ++sa_visits_;
    if (sa.icookie() != h.icookie) continue;
    const bool mm1_again = h.rcookie == kZero && sa.remote().addr == d.remote.addr &&
                           sa.remote().port == d.remote.port;
    if (h.rcookie != sa.rcookie() && !mm1_again) continue;
    sa.handle(d, h);
    settle_half_open(p, i);
    return true;
  }
  return false;
}

// MM1 from a configured peer: a new half-open entry of that peer, if there is room.
void Daemon::new_half_open(Peer& p, const dp::DatagramView& d, const Header& h) {
  if (!make_half_open_room(p)) return;
  auto sa = new_sa(p, Role::kResponder, d.local, d.remote);
  sa->set_responder_cookie(responder_cookie(d.remote, h.icookie));
  ++counters_.half_open_created;
  p.half_open.push_back(std::move(sa));
  recount_half_open(p);
  p.half_open.back()->handle(d, h);
  settle_half_open(p, p.half_open.size() - 1);
}

// The peer's first half-open negotiation always has room; more need room under the per-peer
// cap and the cap on extra ones over all peers. Over a cap, the peer's own oldest negotiation
// still waiting for MM3 goes (never another peer's); without one the new MM1 is refused.
bool Daemon::make_half_open_room(Peer& p) {
  std::uint64_t IkeCounters::*cap = nullptr;
  if (p.half_open.size() >= kMaxHalfOpenPerPeer) cap = &IkeCounters::half_open_peer_cap;
  else if (!p.half_open.empty() && half_open_extra_ >= kMaxHalfOpen)
    cap = &IkeCounters::half_open_global_cap;
  if (cap == nullptr) return true;
  ++(counters_.*cap);
  auto it = std::find_if(p.half_open.begin(), p.half_open.end(), [](const auto& sa) {
    return sa->state() == IkeSa::State::kMm2Sent;
  });
  if (it == p.half_open.end()) {
    log(LogLevel::kDebug, dp::format_ipv4(p.addr) +
                              ": half-open limit, none waiting for MM3: new main mode refused");
    return false;
  }
  log(LogLevel::kDebug, (*it)->tag() + ": half-open limit: evicted (waiting for MM3)");
  p.half_open.erase(it);
  recount_half_open(p);
  return true;
}

void Daemon::recount_half_open(Peer& p) {
  auto extra = [](std::size_t n) { return n > 0 ? n - 1 : 0; };
  const std::size_t n = p.half_open.size();
  half_open_total_ = half_open_total_ + n - p.half_open_counted;
  half_open_extra_ = half_open_extra_ + extra(n) - extra(p.half_open_counted);
  p.half_open_counted = n;
  counters_.half_open = half_open_total_;
  mark_status(p);  // also when one goes outside a datagram (config update, eviction)
}

void Daemon::drop_half_open(Peer& p) {
  p.half_open.clear();
  recount_half_open(p);
}

// Callers re-index the peer's cookies (touch on a datagram; tick_peer on a tick).
void Daemon::settle_half_open(Peer& p, std::size_t i) {
  IkeSa& sa = *p.half_open[i];
  if (sa.failed()) {
    // What the peer's own attempt ran into is the connections' news (wrong PSK, no proposal
    // chosen), but it never delays our own initiation; a silent half-open entry is not news.
    if (sa.failure() != "negotiation timed out") p.last_error = sa.failure();
    p.half_open.erase(p.half_open.begin() + static_cast<std::ptrdiff_t>(i));
    recount_half_open(p);
    return;
  }
  if (!sa.established()) return;
  std::unique_ptr<IkeSa> established = std::move(p.half_open[i]);
  p.half_open.erase(p.half_open.begin() + static_cast<std::ptrdiff_t>(i));
  recount_half_open(p);
  promote(p, std::move(established));
}

// The peer authenticated (MM5) a negotiation it started. If we started one too (simultaneous
// initiation), one of the two goes, decided on authenticated evidence only: rather than two
// ISAKMP SAs each with a CHILD SA pair, the side with the higher address abandons its own
// negotiation while it has produced no CHILD SA; the lower side keeps its own when the peer
// has answered it (the peer abandons its negotiation) and deletes the peer's.
void Daemon::promote(Peer& p, std::unique_ptr<IkeSa> sa) {
  auto own_pending = [](const std::unique_ptr<IkeSa>& s) {
    return s->role() == Role::kInitiator && !s->any_child_installed() && !s->failed() && !s->done() &&
           !s->replaced();
  };
  const bool pending = std::any_of(p.sas.begin(), p.sas.end(), own_pending);
  const bool answered = std::any_of(p.sas.begin(), p.sas.end(), [&](const auto& s) {
    return own_pending(s) && s->state() != IkeSa::State::kMm1Sent;
  });
  if (pending && p.local_addr < p.addr && answered) {
    log(LogLevel::kInfo,
        sa->tag() + ": simultaneous initiation: keeping ours, deleting the peer's");
    sa->teardown(true);
    return;
  }
  if (pending) {
    log(LogLevel::kInfo, sa->tag() + ": simultaneous initiation: yielding to the peer's");
    for (auto& s : p.sas)
      if (own_pending(s)) s->teardown(true);
    std::erase_if(p.sas, own_pending);
  }
  p.sas.push_back(std::move(sa));
  housekeeping(p, ctx_.clock->now());
  reap(p);
  touch(p);
}

}  // namespace ipsecgw::ike
