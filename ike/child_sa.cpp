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

Millis ChildSas::next_retirement() const {
  Millis t = Millis::max();
  for (const auto& r : retiring_) t = std::min(t, r.at);
  return t;
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

// ---- IkeSa: slots (connections sharing the ISAKMP SA) ----

IkeSa::Slot* IkeSa::slot(std::uint32_t trap) {
  for (auto& s : slots_)
    if (s.trap == trap) return &s;
  return nullptr;
}

const IkeSa::Slot* IkeSa::slot(std::uint32_t trap) const {
  for (const auto& s : slots_)
    if (s.trap == trap) return &s;
  return nullptr;
}

const std::optional<ChildSaInfo>& IkeSa::child() const {
  static const std::optional<ChildSaInfo> kNone;
  return slots_.empty() ? kNone : slots_.front().sas.current();
}

Millis IkeSa::child_installed_at() const {
  if (slots_.empty() || !slots_.front().sas.current()) return Millis{0};
  return slots_.front().sas.installed_at();
}

bool IkeSa::any_child() const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [](const Slot& s) { return s.sas.current().has_value(); });
}

bool IkeSa::rekeying() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.rekey_mid != 0; });
}

bool IkeSa::qm_busy() const {
  return std::any_of(qms_.begin(), qms_.end(), [](const auto& q) {
    return q.second->stage == Quick::Stage::kQm1Sent || q.second->stage == Quick::Stage::kQm2Sent;
  });
}

void IkeSa::add_connection(const ConnectionConfig& cfg) {
  if (has_connection(cfg.id)) return;
  const auto sel = selectors(cfg);
  for (std::size_t i = 0; i < sel.size(); ++i) {
    Slot s;
    s.cfg = &cfg;
    s.sel = sel[i];
    s.trap = trap_id(cfg.id, i);
    // As responder the peer starts its Quick Modes right after phase 1 (see handle_main_mode);
    // a connection added later to an established ISAKMP SA starts its own at once.
    s.start_at = role_ == Role::kResponder && !p1_established_
                     ? ctx_.clock->now() + kRetransmitBase * 2
                     : Millis{0};
    slots_.push_back(std::move(s));
  }
}

bool IkeSa::has_connection(std::uint32_t conn_id) const {
  return std::any_of(slots_.begin(), slots_.end(),
                     [&](const Slot& s) { return s.cfg->id == conn_id; });
}

std::size_t IkeSa::connection_count() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i)
    n += i == 0 || slots_[i].cfg->id != slots_[i - 1].cfg->id;
  return n;
}

// A Quick Mode of slot `trap` in flight goes: its reserved SPI back, its inbound SA (added
// before QM3) deleted, and our retransmissions of it stop.
void IkeSa::abandon_quicks_of(std::uint32_t trap) {
  for (auto& [mid, q] : qms_) {
    if (q->trap != trap || q->stage == Quick::Stage::kDone) continue;
    if (q->spi_reserved) ctx_.installer->release_spi(q->spi_in);
    q->spi_reserved = false;
    if (q->in_installed) (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
    q->in_installed = false;
    if (last_out_ == q->last_sent || q->stage == Quick::Stage::kQm2Sent) waiting_ = false;
    q->stage = Quick::Stage::kDone;
  }
}

void IkeSa::remove_connection(std::uint32_t conn_id, bool notify_peer) {
  for (auto& s : slots_) {
    if (s.cfg->id != conn_id) continue;
    abandon_quicks_of(s.trap);
    for (const auto& r : s.sas.take_all_retiring())
      delete_child(r.spi_in, r.spi_out, notify_peer && p1_established_, false);
    if (const auto& child = s.sas.current()) {
      log(LogLevel::kInfo, tag() + ": " + s.cfg->name + ": deleting CHILD SA, SPI in " +
                               hex(be32(child->spi_in)));
      delete_child(child->spi_in, child->spi_out, notify_peer && p1_established_, true);
      s.sas.clear_current();
    }
  }
  std::erase_if(slots_, [&](const Slot& s) { return s.cfg->id == conn_id; });
  if (cfg_->id == conn_id && !slots_.empty()) cfg_ = slots_.front().cfg;
  if (!any_child() && state_ == State::kActive) state_ = State::kPhase1Done;
}

std::optional<ChildSaInfo> IkeSa::child_of(std::uint32_t trap) const {
  const Slot* s = slot(trap);
  if (s == nullptr) return std::nullopt;
  return s->sas.current();
}

bool IkeSa::connection_active(std::uint32_t conn_id) const {
  bool any = false;
  for (const auto& s : slots_) {
    if (s.cfg->id != conn_id) continue;
    if (!s.sas.current()) return false;
    any = true;
  }
  return any;
}

std::string IkeSa::connection_failure(std::uint32_t conn_id) const {
  for (const auto& s : slots_) {
    if (s.cfg->id != conn_id || s.sas.current() || s.failure.empty()) continue;
    const bool in_flight = std::any_of(qms_.begin(), qms_.end(), [&](const auto& q) {
      return q.second->trap == s.trap && q.second->stage != Quick::Stage::kDone;
    });
    if (!in_flight) return s.failure;
  }
  return "";
}

std::string IkeSa::connection_phase2(std::uint32_t conn_id) const {
  std::string best = "NONE";
  for (const auto& s : slots_) {
    if (s.cfg->id != conn_id) continue;
    if (s.sas.current()) {
      if (s.rekey_mid != 0) return "REKEYING";
      best = "INSTALLED";
      continue;
    }
    for (const auto& [mid, q] : qms_) {
      if (q->trap != s.trap) continue;
      if (q->stage == Quick::Stage::kQm1Sent) return "QM1_SENT";
      if (q->stage == Quick::Stage::kQm2Sent) return "QM2_SENT";
    }
  }
  return best;
}

void IkeSa::request_child(std::uint32_t trap) {
  // Not before a failed Quick Mode's retry time (acquires repeat about once a second).
  if (Slot* s = slot(trap); s != nullptr && !s->sas.current() &&
                            (s->failure.empty() || s->start_at == Millis::max()))
    s->start_at = Millis{0};
}

std::vector<std::uint32_t> IkeSa::connection_outbound_spis(std::uint32_t conn_id) const {
  std::vector<std::uint32_t> v;
  for (const auto& s : slots_)
    if (s.cfg->id == conn_id && s.sas.current()) v.push_back(s.sas.current()->spi_out);
  return v;
}

// Initiator side: one Quick Mode at a time (retransmission keeps one message), for the
// slots of bi-directional connections that have no CHILD SA, after their failure's retry
// time; never on an ISAKMP SA that a newer one replaces.
void IkeSa::start_wanted_quick_modes(Millis now) {
  if (!p1_established_ || state_ == State::kFailed || done_ || replaced_ ||
      retire_at_ != Millis::max() || qm_busy())
    return;
  for (auto& s : slots_) {
    if (s.sas.current() || now < s.start_at || !s.cfg->admin_state_up) continue;
    // A response-only connection waits for the peer, unless it started this ISAKMP SA (an
    // explicit initiate): then its first Quick Mode is ours too.
    if (s.cfg->initiator != InitiatorMode::kBidirectional &&
        (role_ != Role::kInitiator || !s.failure.empty()))
      continue;
    const bool in_flight = std::any_of(qms_.begin(), qms_.end(), [&](const auto& q) {
      return q.second->trap == s.trap && q.second->stage != Quick::Stage::kDone;
    });
    if (in_flight) continue;
    qm_start(s);
    return;
  }
}

std::vector<std::uint32_t> IkeSa::retiring_inbound_spis() const {
  std::vector<std::uint32_t> v;
  for (const auto& s : slots_)
    for (auto spi : s.sas.retiring_inbound_spis()) v.push_back(spi);
  return v;
}

std::vector<std::uint32_t> IkeSa::inbound_spis() const {
  std::vector<std::uint32_t> v;
  for (const auto& s : slots_)
    for (auto spi : s.sas.inbound_spis()) v.push_back(spi);
  return v;
}

// The CHILD SA negotiated by `q` is now fully installed: it becomes the current one of its
// slot; a replaced one keeps its inbound SA for kRekeyGrace (the outbound one was re-pointed).
void IkeSa::child_activate(Quick& q) {
  const Millis now = ctx_.clock->now();
  const bool encap = encap_mode() != ipa::kTunnel;
  Slot* s = slot(q.trap);
  q.stage = Quick::Stage::kDone;
  q.dh.reset();
  q.gxy = crypto::SecureBytes();
  if (s == nullptr) return;  // its connection went meanwhile
  const auto old = s->sas.replace(
      ChildSaInfo{q.spi_in, q.spi_out, encap, remote_.port, q.lifetime_s}, now,
      soft_expiry(now, q.lifetime_s, q.initiator),
      now + Millis(std::uint64_t{q.lifetime_s} * 1000), now + kRekeyGrace);
  if (old) {
    log(LogLevel::kInfo, tag() + ": CHILD SA rekeyed, old SPI in " + hex(be32(old->spi_in)) +
                             " out " + hex(be32(old->spi_out)) + " retired in " +
                             std::to_string(kRekeyGrace.count()) + "ms");
  }
  if (s->rekey_mid == q.mid) s->rekey_mid = 0;
  s->failure.clear();
  state_ = State::kActive;
  last_alive_ = now;
  last_in_packets_ = 0;
  log(LogLevel::kInfo, tag() + ": " + s->cfg->name + ": CHILD SA installed, SPI in " +
                           hex(be32(q.spi_in)) + " out " + hex(be32(q.spi_out)) +
                           (encap ? " (UDP-encapsulated)" : "") + ", lifetime " +
                           std::to_string(q.lifetime_s) + "s");
}

void IkeSa::rekey_child() {
  for (auto& s : slots_) rekey_child(s.trap);
}

void IkeSa::rekey_child(std::uint32_t trap) {
  Slot* s = slot(trap);
  if (s == nullptr || !p1_established_ || state_ == State::kFailed || done_ ||
      s->rekey_mid != 0 || !s->sas.current() || retire_at_ != Millis::max())
    return;
  qm_start(*s);
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
  expire_responder_quicks(now);
  for (auto& s : slots_) {
    for (const auto& r : s.sas.take_retired(now)) {
      log(LogLevel::kInfo, tag() + ": deleting replaced CHILD SA, SPI in " + hex(be32(r.spi_in)));
      delete_child(r.spi_in, r.spi_out, true, false);
    }
    const auto& child = s.sas.current();
    if (!child || replaced_ || retire_at_ != Millis::max()) continue;
    if (now >= s.sas.hard_expiry()) {
      log(LogLevel::kWarn, tag() + ": CHILD SA hard lifetime expired, SPI in " +
                               hex(be32(child->spi_in)));
      delete_child(child->spi_in, child->spi_out, true, true);
      s.sas.clear_current();
      if (!any_child()) state_ = State::kPhase1Done;
      continue;
    }
    abandon_stale_rekey(s, now);
    if (now >= s.sas.soft_expiry() && s.rekey_mid == 0) {
      log(LogLevel::kInfo, tag() + ": CHILD SA soft lifetime reached: rekeying");
      rekey_child(s.trap);
    }
  }
  if (state_ != State::kFailed) start_wanted_quick_modes(now);
}

// Our rekey got no answer in time (its retransmissions may also have been displaced by a
// peer's exchange on the same SA): abandon it; the next soft-expiry check starts another.
void IkeSa::abandon_stale_rekey(Slot& s, Millis now) {
  if (s.rekey_mid == 0) return;
  auto it = qms_.find(s.rekey_mid);
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
  s.rekey_mid = 0;
}

bool IkeSa::peer_deleted_esp(std::uint32_t spi_out) {
  for (auto& s : slots_) {
    if (auto r = s.sas.take_retiring(spi_out)) {
      log(LogLevel::kInfo, tag() + ": peer deleted replaced CHILD SA, SPI out " + hex(be32(spi_out)));
      delete_child(r->spi_in, r->spi_out, false, false);
      return true;
    }
  }
  for (auto& s : slots_) {
    const auto& child = s.sas.current();
    if (!child || child->spi_out != spi_out) continue;
    log(LogLevel::kInfo, tag() + ": peer deleted the CHILD SA, SPI out " + hex(be32(spi_out)));
    const bool others = std::any_of(slots_.begin(), slots_.end(), [&](const Slot& o) {
      return &o != &s && o.sas.current().has_value();
    });
    if (others) {
      // Other connections (or pairs) still use the ISAKMP SA: only this CHILD SA ends; its
      // connection waits for the peer (or its traffic) as after a DPD hold.
      abandon_quicks_of(s.trap);
      for (const auto& r : s.sas.take_all_retiring()) delete_child(r.spi_in, r.spi_out, false, false);
      delete_child(child->spi_in, child->spi_out, false, true);
      s.sas.clear_current();
      s.failure = "deleted by peer";
      s.start_at = Millis::max();
      return true;
    }
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
  for (auto& s : slots_)
    for (const auto& r : s.sas.take_all_retiring())
      delete_child(r.spi_in, r.spi_out, notify_peer, false);
  for (auto& [mid, q] : qms_) {  // a Quick Mode in flight may have added its inbound SA
    if (q->in_installed && q->stage != Quick::Stage::kDone)
      (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
    q->in_installed = false;
    if (q->stage == Quick::Stage::kOutPending) q->stage = Quick::Stage::kDone;
  }
  for (auto& s : slots_) {
    if (const auto& child = s.sas.current()) {
      delete_child(child->spi_in, child->spi_out, notify_peer, true);
      s.sas.clear_current();
    }
  }
  if (notify_peer && p1_->keys && !p1_->last_p1_iv.empty())
    send_informational(PayloadType::kDelete, build_delete({1, kProtoIsakmp, 16, {cookie_spi()}}));
}

}  // namespace ipsecgw::ike
