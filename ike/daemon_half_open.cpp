// Daemon: responder negotiations before they are ISAKMP SAs of a peer. An MM1 from a
// configured peer opens a half-open entry (stateless responder cookie, capped per peer and in
// all, issue #10); once the peer authenticates it is promoted to its peer, where simultaneous
// initiation is settled.
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
void Daemon::new_half_open(Peer& p, const dp::DatagramView& d, const Header& h) {
  evict_half_open(d.remote.addr);
  auto sa = new_sa(p, Role::kResponder, d.local, d.remote);
  sa->set_responder_cookie(responder_cookie(d.remote, h.icookie));
  ++counters_.half_open_created;
  half_open_.push_back({&p, std::move(sa)});
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
  Peer& p = *half_open_[i].peer;
  if (sa.failed()) {
    // What the peer's own attempt ran into is the connections' news (wrong PSK, no proposal
    // chosen), but it never delays our own initiation; a silent half-open entry is not news.
    if (sa.failure() != "negotiation timed out") p.last_error = sa.failure();
    half_open_.erase(half_open_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
  if (!sa.established()) return;
  std::unique_ptr<IkeSa> established = std::move(half_open_[i].sa);
  half_open_.erase(half_open_.begin() + static_cast<std::ptrdiff_t>(i));
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
