// The CHILD SA collection, and the IkeSa's CHILD SA lifetimes: activation after Quick Mode,
// soft expiry (rekey) and hard expiry, the grace period of replaced pairs, deletes, teardown.
// Phase-1 lifetimes (soft: re-establish Main Mode; hard: delete) are kept here too.
#include "ike/child_sa.hpp"

#include <algorithm>
#include <utility>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

// ---- ChildSas ----

std::optional<ChildSaInfo> ChildSas::replace(const ChildSaInfo& c, Millis installed, Millis soft,
                                             Millis hard, Millis retire_at) {
  std::optional<ChildSaInfo> old = std::exchange(current_, c);
  if (old) retiring_.push_back({old->spi_in, old->spi_out, retire_at});
  installed_ = installed;
  soft_ = soft;
  hard_ = hard;
  return old;
}

std::vector<std::uint32_t> ChildSas::retiring_inbound_spis() const {
  std::vector<std::uint32_t> v;
  for (const auto& r : retiring_) v.push_back(r.spi_in);
  return v;
}

std::vector<std::uint32_t> ChildSas::inbound_spis() const {
  std::vector<std::uint32_t> v = retiring_inbound_spis();
  if (current_) v.push_back(current_->spi_in);
  return v;
}

std::vector<ChildSas::Retiring> ChildSas::take_retired(Millis now) {
  std::vector<Retiring> out;
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if (now >= it->at) {
      out.push_back(*it);
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::optional<ChildSas::Retiring> ChildSas::take_retiring(std::uint32_t spi_out) {
  auto r = std::find_if(retiring_.begin(), retiring_.end(),
                        [&](const Retiring& x) { return x.spi_out == spi_out; });
  if (r == retiring_.end()) return std::nullopt;
  Retiring out = *r;
  retiring_.erase(r);
  return out;
}

std::vector<ChildSas::Retiring> ChildSas::take_all_retiring() {
  return std::exchange(retiring_, {});
}

// ---- IkeSa: lifetimes ----

Millis IkeSa::soft_expiry(Millis start, std::uint32_t lifetime_s, bool creator) const {
  const std::uint64_t life_ms = std::uint64_t{lifetime_s} * 1000;
  std::uint64_t margin = life_ms * kPassiveMarginPct / 100;
  if (creator) {
    const std::uint64_t jitter_range = life_ms * kRekeyJitterPct / 100;
    const std::uint64_t r = get32(crypto::random_bytes(4).data());
    margin = life_ms * kRekeyMarginPct / 100 + (jitter_range == 0 ? 0 : r % (jitter_range + 1));
  }
  return start + Millis(static_cast<Millis::rep>(life_ms - margin));
}

void IkeSa::p1_started_lifetime() {
  const Millis now = ctx_.clock->now();
  p1_established_ = true;
  p1_soft_ = soft_expiry(now, p1_->lifetime_s, role_ == Role::kInitiator);
  p1_hard_ = now + Millis(std::uint64_t{p1_->lifetime_s} * 1000);
}

bool IkeSa::wants_reauth(Millis now) const {
  return p1_established_ && !replaced_ && !done_ && state_ != State::kFailed &&
         retire_at_ == Millis::max() &&
         (now >= p1_soft_ || peer_mids_.size() >= kPeerMidRekeyAt);
}

void IkeSa::retire_at(Millis at) {
  if (at < retire_at_) retire_at_ = at;
}

std::vector<std::uint32_t> IkeSa::retiring_inbound_spis() const {
  return children_.retiring_inbound_spis();
}

std::vector<std::uint32_t> IkeSa::inbound_spis() const { return children_.inbound_spis(); }

// The CHILD SA negotiated by `q` is now fully installed: it becomes the current one; a
// replaced one keeps its inbound SA for kRekeyGrace (the outbound one was re-pointed).
void IkeSa::child_activate(Quick& q) {
  const Millis now = ctx_.clock->now();
  const bool encap = encap_mode() != ipa::kTunnel;
  const auto old = children_.replace(
      ChildSaInfo{q.spi_in, q.spi_out, encap, remote_.port, q.lifetime_s}, now,
      soft_expiry(now, q.lifetime_s, q.initiator),
      now + Millis(std::uint64_t{q.lifetime_s} * 1000), now + kRekeyGrace);
  if (old) {
    log(LogLevel::kInfo, tag() + ": CHILD SA rekeyed, old SPI in " + hex(be32(old->spi_in)) +
                             " out " + hex(be32(old->spi_out)) + " retired in " +
                             std::to_string(kRekeyGrace.count()) + "ms");
  }
  if (rekey_mid_ == q.mid) rekey_mid_ = 0;
  q.stage = Quick::Stage::kDone;
  q.dh.reset();
  q.gxy = crypto::SecureBytes();
  state_ = State::kActive;
  last_alive_ = now;
  last_in_packets_ = 0;
  log(LogLevel::kInfo, tag() + ": CHILD SA installed, SPI in " + hex(be32(q.spi_in)) + " out " +
                           hex(be32(q.spi_out)) + (encap ? " (UDP-encapsulated)" : "") +
                           ", lifetime " + std::to_string(q.lifetime_s) + "s");
}

void IkeSa::rekey_child() {
  if (!p1_established_ || state_ == State::kFailed || done_ || rekey_mid_ != 0 ||
      !children_.current() || retire_at_ != Millis::max())
    return;
  qm_start();
}

// Deletes one CHILD SA pair; the outbound one only while it still holds the policy (after a
// rekey the data plane already replaced it).
void IkeSa::delete_child(std::uint32_t spi_in, std::uint32_t spi_out, bool notify_peer,
                         bool del_outbound) {
  if (notify_peer) send_esp_delete(spi_in);
  if (del_outbound) (void)ctx_.installer->del_sa(dp::Direction::kOutbound, spi_out);
  (void)ctx_.installer->del_sa(dp::Direction::kInbound, spi_in);
}

void IkeSa::send_esp_delete(std::uint32_t spi_in) {
  // RFC 2408 §3.15: the SPI we receive with, which the peer sends to.
  send_informational(PayloadType::kDelete, build_delete({1, kProtoEsp, 4, {be32(spi_in)}}));
}

void IkeSa::child_tick(Millis now) {
  outbound_switch_tick(now);
  if (state_ == State::kFailed) return;
  for (const auto& r : children_.take_retired(now)) {
    log(LogLevel::kInfo, tag() + ": deleting replaced CHILD SA, SPI in " + hex(be32(r.spi_in)));
    delete_child(r.spi_in, r.spi_out, true, false);
  }
  const auto& child = children_.current();
  if (!child || replaced_ || retire_at_ != Millis::max()) return;
  if (now >= children_.hard_expiry()) {
    log(LogLevel::kWarn, tag() + ": CHILD SA hard lifetime expired, SPI in " +
                             hex(be32(child->spi_in)));
    delete_child(child->spi_in, child->spi_out, true, true);
    children_.clear_current();
    state_ = State::kPhase1Done;
    return;
  }
  abandon_stale_rekey(now);
  if (now >= children_.soft_expiry() && rekey_mid_ == 0) {
    log(LogLevel::kInfo, tag() + ": CHILD SA soft lifetime reached: rekeying");
    rekey_child();
  }
}

// Our rekey got no answer in time (its retransmissions may also have been displaced by a
// peer's exchange on the same SA): abandon it; the next soft-expiry check starts another.
void IkeSa::abandon_stale_rekey(Millis now) {
  if (rekey_mid_ == 0) return;
  auto it = qms_.find(rekey_mid_);
  if (it != qms_.end() && (now - it->second->started < kRekeyAbandonAfter ||
                           it->second->stage == Quick::Stage::kOutPending))
    return;
  log(LogLevel::kWarn, tag() + ": rekey quick mode unanswered: abandoned");
  if (it != qms_.end()) {
    Quick& q = *it->second;
    if (q.spi_reserved) ctx_.installer->release_spi(q.spi_in);
    q.spi_reserved = false;
    q.stage = Quick::Stage::kDone;
    if (last_out_ == q.last_sent) waiting_ = false;
  }
  rekey_mid_ = 0;
}

bool IkeSa::peer_deleted_esp(std::uint32_t spi_out) {
  if (auto r = children_.take_retiring(spi_out)) {
    log(LogLevel::kInfo, tag() + ": peer deleted replaced CHILD SA, SPI out " + hex(be32(spi_out)));
    delete_child(r->spi_in, r->spi_out, false, false);
    return true;
  }
  const auto& child = children_.current();
  if (child && child->spi_out == spi_out) {
    log(LogLevel::kInfo, tag() + ": peer deleted the CHILD SA, SPI out " + hex(be32(spi_out)));
    teardown(false);
    if (retire_at_ != Millis::max()) {
      done_ = true;  // a newer ISAKMP SA carries the connection: nothing failed
    } else {
      fail("deleted by peer");
    }
    return true;
  }
  return false;
}

void IkeSa::teardown(bool notify_peer) {
  for (const auto& r : children_.take_all_retiring())
    delete_child(r.spi_in, r.spi_out, notify_peer, false);
  for (auto& [mid, q] : qms_) {  // a Quick Mode in flight may have added its inbound SA
    if (q->in_installed && q->stage != Quick::Stage::kDone)
      (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
    q->in_installed = false;
    if (q->stage == Quick::Stage::kOutPending) q->stage = Quick::Stage::kDone;
  }
  if (const auto& child = children_.current()) {
    delete_child(child->spi_in, child->spi_out, notify_peer, true);
    children_.clear_current();
  }
  if (notify_peer && p1_->keys && !p1_->last_p1_iv.empty())
    send_informational(PayloadType::kDelete, build_delete({1, kProtoIsakmp, 16, {cookie_spi()}}));
}

}  // namespace ipsecgw::ike
