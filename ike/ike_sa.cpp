// IkeSa: construction, framing (encryption, IV chaining), dispatch of received messages to
// the exchange tasks, retransmission and the timers; plus the helpers the tasks share.
#include "ike/ike_sa.hpp"

#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

const Bytes kVidNatTRfc3947 = {0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45,
                               0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f};
const Bytes kVidNatTDraft02 = {0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e,
                               0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f};
const Bytes kVidDpd = {0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9,
                       0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00};

// ---- helpers shared by the tasks (ike_sa_internal.hpp) ----

std::uint32_t random_nonzero32() {
  std::uint32_t v = 0;
  while (v == 0) v = get32(crypto::random_bytes(4).data());
  return v;
}

std::uint64_t attr_int(const Transform& t, std::uint16_t type, std::uint64_t dflt) {
  const Attribute* a = t.find(type);
  if (a == nullptr) return dflt;
  return a->as_int().value_or(~0ULL);
}

std::optional<std::uint32_t> offered_lifetime(const Transform& t, std::uint16_t type_attr,
                                              std::uint16_t duration_attr, std::uint32_t dflt) {
  // Life Type seconds is 1 in both DOIs (RFC 2409 Appendix A, RFC 2407 §4.5).
  constexpr std::uint16_t kSeconds = 1;
  std::uint64_t life = dflt;
  if (attr_int(t, type_attr, kSeconds) == kSeconds) life = attr_int(t, duration_attr, dflt);
  if (life == 0 || life > 0xffffffffULL) return std::nullopt;
  return static_cast<std::uint32_t>(life);
}

std::optional<ProposalChoice> select_proposal(
    const SaPayload& sa, const std::function<bool(const Proposal&)>& usable,
    const std::function<std::optional<std::uint32_t>(const Transform&)>& match) {
  for (const auto& prop : sa.proposals) {
    if (!usable(prop)) continue;
    for (const auto& t : prop.transforms)
      if (auto life = match(t)) return ProposalChoice{&prop, &t, *life};
  }
  return std::nullopt;
}

Bytes build_one_transform_sa(std::uint8_t proposal_number, std::uint8_t protocol, Bytes spi,
                             const Transform& t) {
  SaPayload sa;
  Proposal prop;
  prop.number = proposal_number;
  prop.protocol = protocol;
  prop.spi = std::move(spi);
  prop.transforms.push_back(t);
  sa.proposals.push_back(std::move(prop));
  return build_sa(sa);
}

Bytes id_addr(dp::Ipv4 a) { return be32(a); }
Bytes id_subnet(const dp::Ipv4Prefix& p) {
  Bytes b = be32(p.addr);
  Bytes m = be32(p.mask());
  b.insert(b.end(), m.begin(), m.end());
  return b;
}

Bytes concat_wire(const Message& m, std::size_t from) {
  Bytes out;
  for (std::size_t i = from; i < m.payloads.size(); ++i)
    out.insert(out.end(), m.payloads[i].wire.begin(), m.payloads[i].wire.end());
  return out;
}

bool hash_payload_matches(const RawPayload* p, ByteView expect) {
  return p != nullptr && p->type == PayloadType::kHash && p->body.size() == expect.size() &&
         CRYPTO_memcmp(p->body.data(), expect.data(), expect.size()) == 0;
}

PayloadChain hash_then(ByteView hash, const PayloadChain& rest, const Bytes& rest_wire) {
  PayloadChain c;
  c.add(PayloadType::kHash, hash);
  auto parsed = parse_payloads(rest.first(), rest_wire, false);
  for (const auto& pl : parsed.value()) c.add(pl.type, pl.body);
  return c;
}

// ---- IkeSa ----

const char* to_string(IkeSa::State s) {
  switch (s) {
    case IkeSa::State::kInit: return "INIT";
    case IkeSa::State::kMm1Sent: return "MM1_SENT";
    case IkeSa::State::kMm2Sent: return "MM2_SENT";
    case IkeSa::State::kMm3Sent: return "MM3_SENT";
    case IkeSa::State::kMm4Sent: return "MM4_SENT";
    case IkeSa::State::kMm5Sent: return "MM5_SENT";
    case IkeSa::State::kPhase1Done: return "PHASE1_DONE";
    case IkeSa::State::kQm1Sent: return "QM1_SENT";
    case IkeSa::State::kQm2Sent: return "QM2_SENT";
    case IkeSa::State::kActive: return "ACTIVE";
    case IkeSa::State::kFailed: return "FAILED";
  }
  return "?";
}

IkeSa::IkeSa(Role role, const ConnectionConfig& cfg, IkeContext ctx, dp::UdpEndpoint local,
             dp::UdpEndpoint remote)
    : role_(role), cfg_(&cfg), ctx_(ctx), local_(local), remote_(remote),
      state_(role == Role::kInitiator ? State::kMm1Sent : State::kInit),
      p1_(std::make_unique<Phase1>()) {
  created_ = ctx.clock->now();
  p1_->hash = cfg.ike.hash;
  p1_->enc_key_len = crypto::cipher_key_len(cfg.ike.cipher);
  p1_->lifetime_s = cfg.ike.lifetime_s;
  crypto::random_bytes(role == Role::kInitiator ? std::span<std::uint8_t>(icookie_)
                                                : std::span<std::uint8_t>(rcookie_));
  add_connection(cfg);
}

IkeSa::~IkeSa() {
  for (auto& [mid, q] : qms_)
    if (q->spi_reserved && ctx_.installer != nullptr) ctx_.installer->release_spi(q->spi_in);
}

std::string IkeSa::tag() const { return cfg_->name + " " + hex(icookie_) + "_" + hex(rcookie_); }

// ---- framing ----

// The ISAKMP header (RFC 2408 §3.1) of a message of this SA; seal()/build_message() fill in
// next payload, flags and length.
Header IkeSa::header(ExchangeType ex, std::uint32_t mid) const {
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ex);
  h.message_id = mid;
  return h;
}

void IkeSa::send(Bytes msg, bool expect_reply) {
  auto r = ctx_.sender->send({local_, remote_, msg});
  if (!r) log(LogLevel::kWarn, tag() + ": send failed: " + r.error());
  last_out_ = std::move(msg);
  waiting_ = expect_reply;
  retransmits_ = 0;
  if (expect_reply) retransmit_at_ = ctx_.clock->now() + kRetransmitBase;
}

// Sends our last message again (retransmission, or the answer to a duplicate request).
void IkeSa::resend_last() {
  auto r = ctx_.sender->send({local_, remote_, last_out_});
  (void)r;
}

// RFC 2409 Appendix B: payloads padded to the block size and encrypted with Ka; the last
// ciphertext block is the IV of the next message in the same exchange.
Bytes IkeSa::seal(Header h, const PayloadChain& c, Bytes& iv) {
  Bytes body = c.serialize();
  body.resize((body.size() + kBlock - 1) / kBlock * kBlock, 0);
  auto ct = crypto::aes_cbc_encrypt(bv(p1_->ka), iv, body);
  if (!ct) std::abort();  // lengths are ours: cannot fail
  iv.assign(ct->end() - kBlock, ct->end());
  h.flags |= kFlagEncryption;
  h.next_payload = c.first();
  h.length = static_cast<std::uint32_t>(kHeaderLen + ct->size());
  Bytes out;
  write_header(h, out);
  out.insert(out.end(), ct->begin(), ct->end());
  return out;
}

Result<Message> IkeSa::open(const dp::DatagramView& d, const Header& h, Bytes& iv) {
  if (!p1_->keys) return make_error("encrypted message before keys exist");
  ByteView ct = d.payload.subspan(kHeaderLen);
  if (ct.empty() || ct.size() % kBlock != 0) return make_error("ciphertext not block aligned");
  auto pt = crypto::aes_cbc_decrypt(bv(p1_->ka), iv, ct);
  if (!pt) return make_error(pt.error());
  auto pl = parse_payloads(h.next_payload, *pt, true);
  if (!pl) return make_error("decrypted payloads malformed: " + pl.error());
  iv.assign(ct.end() - kBlock, ct.end());
  return Message{h, std::move(*pl)};
}

void IkeSa::diagnose(const std::string& what, bool responder_deadline) {
  log(LogLevel::kDebug, tag() + ": unauthenticated: " + what + " (ignored until a timeout)");
  count(&IkeCounters::unauthenticated_drops);
  diagnosis_ = what;
  if (responder_deadline && diagnosis_deadline_ == Millis::max())
    diagnosis_deadline_ = ctx_.clock->now() + kBadAuthGrace;
}

void IkeSa::fail(const std::string& reason, std::uint16_t notify_type) {
  if (state_ == State::kFailed) return;
  log(LogLevel::kWarn, tag() + ": failed in " + to_string(state_) + ": " + reason);
  if (notify_type != 0) send_plain_notify(notify_type);
  failure_ = reason;
  state_ = State::kFailed;
  wipe_phase1_secrets();
  waiting_ = false;
  for (auto& [mid, q] : qms_) {
    if (q->spi_reserved) {
      ctx_.installer->release_spi(q->spi_in);
      q->spi_reserved = false;
    }
    if (q->in_installed && q->stage != Quick::Stage::kDone) {
      (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
      q->in_installed = false;
    }
  }
}

// The message is processed with `from` as the peer (an answer goes where the request came
// from); unless its HASH verified, the previous endpoint is restored afterwards, so only an
// authenticated message moves the peer (RFC 3947 §4). After such a move (NAT rebinding) the
// CHILD SAs must follow: the installer has no in-place endpoint update, so the pair is
// replaced by a Quick Mode (make-before-break) whose SAs carry the new port.
template <typename F>
void IkeSa::with_tentative_peer(const dp::UdpEndpoint& from, F&& process) {
  const dp::UdpEndpoint prev = remote_;
  remote_ = from;
  authenticated_in_ = false;
  process();
  if (!authenticated_in_) {
    remote_ = prev;
    return;
  }
  if (from.addr == prev.addr && from.port == prev.port) return;
  log(LogLevel::kInfo, tag() + ": peer moved from " + dp::format_ipv4(prev.addr) + ":" +
                           std::to_string(prev.port) + " to " + dp::format_ipv4(from.addr) +
                           ":" + std::to_string(from.port) + " (authenticated message)");
  // A Quick Mode in flight (this message's, perhaps) installs its pair with the new port.
  const bool qm_in_flight = std::any_of(qms_.begin(), qms_.end(), [](const auto& q) {
    return q.second->stage != Quick::Stage::kDone;
  });
  if (state_ != State::kActive || qm_in_flight) return;
  for (const auto& s : slots_) {
    const auto& child = s.sas.current();
    if (child && child->udp_encap && child->peer_port != from.port) rekey_child(s.trap);
  }
}

// ---- dispatch ----

void IkeSa::handle(const dp::DatagramView& d, const Header& h) {
  if (state_ == State::kFailed || done_) return;
  const Bytes in(d.payload.begin(), d.payload.end());
  // A retransmitted request: answer from the last response, do not process it again.
  // A copy of the message that ended an exchange (QM3, MM6) gets no answer: only a request's
  // copy (a retransmitted QM1 gets our stored QM2 again).
  if (in == last_in_ && last_in_final_) {
    log(LogLevel::kDebug, tag() + ": duplicate of an exchange's last message ignored");
    return;
  }
  if (in == last_in_ && !last_out_.empty()) {
    log(LogLevel::kInfo, tag() + ": duplicate message, resending last response");
    resend_last();
    return;
  }
  // Every message after MM1 carries the exact responder cookie (RFC 2408 §2.5.3): ours as
  // responder, the one MM2 gave us as initiator. Anything else is not this SA's: no work.
  static const Cookie kZero{};
  const bool rcookie_known = role_ == Role::kResponder ? state_ != State::kInit : rcookie_ != kZero;
  if (rcookie_known && h.rcookie != rcookie_) {
    log(LogLevel::kDebug, tag() + ": message with another responder cookie dropped");
    count(&IkeCounters::bad_cookie_drops);
    return;
  }
  switch (static_cast<ExchangeType>(h.exchange)) {
    case ExchangeType::kInformational: handle_informational(d, h); return;
    case ExchangeType::kIdentityProtection: handle_main_mode(d, h, in); return;
    case ExchangeType::kQuickMode: handle_quick_mode(d, h, in); return;
    default: break;
  }
  log(LogLevel::kWarn, tag() + ": unsupported exchange type " + std::to_string(h.exchange));
}

void IkeSa::handle_informational(const dp::DatagramView& d, const Header& h) {
  Result<Message> msg = make_error("unset");
  if (h.flags & kFlagEncryption) {
    if (p1_->last_p1_iv.empty()) {
      if (state_ == State::kMm5Sent) mm5_answered_with_informational(d, h);
      else count(&IkeCounters::unauthenticated_drops);
      return;
    }
    Bytes iv = qm_iv(h.message_id);
    msg = open(d, h, iv);
  } else {
    msg = parse_message(d.payload);
  }
  if (!msg) {
    log(LogLevel::kDebug, tag() + ": dropping informational: " + msg.error());
    count(&IkeCounters::unauthenticated_drops);
    return;
  }
  with_tentative_peer(d.remote, [&] { informational(*msg); });
}

void IkeSa::handle_main_mode(const dp::DatagramView& d, const Header& h, const Bytes& in) {
  Result<Message> msg = make_error("unset");
  Bytes prev_iv;
  if (h.flags & kFlagEncryption) {
    Bytes iv = p1_->iv;
    prev_iv = p1_->iv;
    msg = open(d, h, iv);
    if (!msg) {
      // With a wrong PSK, SKEYID_e differs and the peer's MM5/MM6 decrypts to garbage; so
      // does anyone's garbage: a diagnosis for the timeout, no failure.
      if (state_ == State::kMm4Sent || state_ == State::kMm5Sent)
        diagnose("authentication failed", state_ == State::kMm4Sent);
      return;
    }
    p1_->iv = std::move(iv);
  } else {
    msg = parse_message(d.payload);
    if (!msg) {
      log(LogLevel::kWarn, tag() + ": dropping malformed message: " + msg.error());
      return;
    }
  }
  // Once phase 1 is up a Main Mode message is a stale copy (an exact retransmission was
  // answered above) or forged: it must not move the peer's port (RFC 3947 §4 floats only on
  // authenticated messages) nor be processed.
  if (p1_established_) {
    log(LogLevel::kInfo, tag() + ": ignoring main mode message after phase 1");
    return;
  }
  // NAT-T (RFC 3947 §4): during Main Mode the peer floats to 4500 (MM5/MM6) and its NAT
  // mapping may change. Follow it only with a message that moves the exchange on; one that
  // does not (a stray or forged copy) leaves the endpoints as they were.
  const dp::UdpEndpoint prev_remote = remote_, prev_local = local_;
  const State prev_state = state_;
  remote_ = d.remote;
  local_ = d.local;
  const TaskStatus st = mm_process(*msg);
  if (state_ == prev_state) {  // not the message we wait for: as if it never arrived
    remote_ = prev_remote;
    local_ = prev_local;
    if (!prev_iv.empty()) p1_->iv = std::move(prev_iv);
    return;
  }
  last_in_ = in;
  last_in_final_ = role_ == Role::kInitiator && st == TaskStatus::kSuccess;  // MM6
  if (st == TaskStatus::kSuccess) {
    const Millis now = ctx_.clock->now();
    // As responder, the peer starts its Quick Modes right after phase 1: give it the time
    // before we start one of ours for the same pair (a CHILD SA each would be one too many).
    if (role_ == Role::kResponder)
      for (auto& s : slots_) s.start_at = std::max(s.start_at, now + kRetransmitBase * 2);
    start_wanted_quick_modes(now);
  }
}

void IkeSa::handle_quick_mode(const dp::DatagramView& d, const Header& h, const Bytes& in) {
  if (!(h.flags & kFlagEncryption) || p1_->last_p1_iv.empty()) return;
  // Either side may start a Quick Mode under an established ISAKMP SA (a new CHILD SA or a
  // rekey, RFC 2409 §5.5); each exchange is told apart by its message id.
  Bytes iv;
  auto it = qms_.find(h.message_id);
  if (it != qms_.end()) {
    if (it->second->stage == Quick::Stage::kDone) return;  // late copy of a finished one
    iv = it->second->iv;
  } else if (h.message_id != 0 && p1_established_) {
    if (peer_mid_seen(h.message_id)) {
      log(LogLevel::kWarn, tag() + ": replayed quick mode message dropped");
      return;
    }
    iv = qm_iv(h.message_id);
  } else {
    log(LogLevel::kWarn, tag() + ": quick mode message for unknown exchange");
    return;
  }
  Result<Message> msg = open(d, h, iv);
  if (!msg) {
    log(LogLevel::kWarn, tag() + ": dropping quick mode message: " + msg.error());
    return;
  }
  const bool new_exchange = it == qms_.end();
  if (new_exchange) {
    auto q = std::make_unique<Quick>();
    q->mid = h.message_id;
    q->started = ctx_.clock->now();
    it = qms_.emplace(h.message_id, std::move(q)).first;
  }
  Bytes prev_iv = std::exchange(it->second->iv, std::move(iv));
  const bool qm3 = !it->second->initiator && it->second->stage == Quick::Stage::kQm2Sent;
  with_tentative_peer(d.remote, [&] { qm_process(*it->second, *msg); });
  if (!authenticated_in_) {  // bad HASH: as if it never arrived
    if (new_exchange) qms_.erase(it);
    else it->second->iv = std::move(prev_iv);
    return;
  }
  last_in_ = in;
  last_in_final_ = qm3;
  if (new_exchange) note_peer_mid(h.message_id);
  prune_quicks();
}

// ---- timers ----

void IkeSa::tick(Millis now) {
  if (state_ == State::kFailed || done_) return;
  if (now >= retire_at_) {
    log(LogLevel::kInfo, tag() + ": replaced ISAKMP SA retired");
    teardown(true);
    done_ = true;
    return;
  }
  if (role_ == Role::kResponder && !p1_established_ &&
      (now - created_ >= kHalfOpenTimeout || now >= diagnosis_deadline_)) {
    if (diagnosis_ == "authentication failed") send_plain_notify(notify::kAuthenticationFailed);
    fail(diagnosis_.empty() ? "negotiation timed out" : diagnosis_);
    return;
  }
  if (p1_established_ && now >= p1_hard_) {
    // Hard phase-1 expiry: RFC 2408 §4.5 leaves this to policy; we delete everything.
    log(LogLevel::kInfo, tag() + ": ISAKMP SA expired");
    teardown(true);
    fail("ISAKMP SA expired");
    return;
  }
  child_tick(now);
  if (state_ == State::kFailed) return;
  keepalive_tick(now);
  dpd_tick(now);
  retransmit_tick(now);
}

// Mirrors tick() and the *_tick functions it calls: each term is a time at which one of
// them acts (and, once acted, moves the time on), so that a past deadline is consumed.
Millis IkeSa::next_deadline(Millis now) const {
  if (state_ == State::kFailed || done_) return Millis::max();
  Millis t = retire_at_;
  auto at = [&t](Millis m) { t = std::min(t, m); };
  if (role_ == Role::kResponder && !p1_established_) {
    at(created_ + kHalfOpenTimeout);
    at(diagnosis_deadline_);
  }
  if (p1_established_) at(p1_hard_);
  // child_tick: outbound switches poll the new inbound SA's counter on every tick (for at
  // most kOutboundSwitchDelay), responder Quick Modes time out, stale rekeys are abandoned.
  for (const auto& [mid, q] : qms_) {
    if (q->stage == Quick::Stage::kOutPending) at(now);
    if (!q->initiator && q->stage == Quick::Stage::kQm2Sent) at(q->started + kResponderQmTimeout);
  }
  for (const auto& s : slots_) {
    at(s.sas.next_retirement());
    if (!s.sas.current() || replaced_ || retire_at_ != Millis::max()) continue;
    at(s.sas.hard_expiry());
    if (s.rekey_mid != 0) {
      auto it = qms_.find(s.rekey_mid);
      if (it == qms_.end()) at(now);
      else if (it->second->stage != Quick::Stage::kOutPending)
        at(it->second->started + kRekeyAbandonAfter);
    } else {
      at(s.sas.soft_expiry());
    }
  }
  // start_wanted_quick_modes: a slot that waits for its Quick Mode (one at a time).
  if (p1_established_ && !replaced_ && retire_at_ == Millis::max() && !qm_busy()) {
    for (const auto& s : slots_) {
      if (s.sas.current() || s.start_at == Millis::max() || !s.cfg->admin_state_up) continue;
      if (s.cfg->initiator != InitiatorMode::kBidirectional &&
          (role_ != Role::kInitiator || !s.failure.empty()))
        continue;
      const bool in_flight = std::any_of(qms_.begin(), qms_.end(), [&](const auto& q) {
        return q.second->trap == s.trap && q.second->stage != Quick::Stage::kDone;
      });
      if (!in_flight) at(s.start_at);
    }
  }
  // keepalive_tick
  const bool encap = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) {
    return s.sas.current() && s.sas.current()->udp_encap;
  });
  if (nat_local_ && encap) at(keepalive_next_);
  // dpd_tick: the counters every kDpdPoll (on-demand DPD needs kOnDemandDpdAfter of silence
  // first), a probe after an idle interval, R-U-THERE repeats and the timeout.
  if (state_ == State::kActive && peer_dpd_ && any_child()) {
    const Millis interval{std::chrono::seconds(cfg_->dpd.interval_s)};
    const Millis timeout{std::chrono::seconds(cfg_->dpd.timeout_s)};
    if (dpd_outstanding_) {
      at(dpd_first_sent_ + timeout);
      at(dpd_next_);
    } else {
      at(last_alive_ + interval);
    }
    if (ctx_.installer != nullptr)
      at(std::max(last_alive_ + kOnDemandDpdAfter, dpd_polled_ + kDpdPoll));
  }
  // retransmit_tick
  if (waiting_) at(retransmit_at_);
  return t;
}

Millis IkeSa::reauth_time() const {
  if (!p1_established_ || replaced_ || done_ || state_ == State::kFailed ||
      retire_at_ != Millis::max())
    return Millis::max();
  return peer_mids_.size() >= kPeerMidRekeyAt ? Millis{0} : p1_soft_;
}

// Retransmission: first after kRetransmitBase, doubling, kMaxRetransmits times.
void IkeSa::retransmit_tick(Millis now) {
  if (!waiting_ || state_ == State::kFailed || now < retransmit_at_) return;
  if (retransmits_ >= kMaxRetransmits) {
    // The peer answered MM1 and MM3: it is reachable, it just never accepted our MM5.
    // What unauthenticated answers suggested (a wrong PSK, no proposal chosen) if any.
    fail(!diagnosis_.empty()          ? diagnosis_
         : state_ == State::kMm5Sent ? "no response to MM5 (peer rejected our authentication? "
                                       "check the PSK)"
                                     : "peer unreachable");
    return;
  }
  ++retransmits_;
  log(LogLevel::kInfo, tag() + ": retransmit " + std::to_string(retransmits_) + " in " +
                           to_string(state_));
  resend_last();
  retransmit_at_ = now + kRetransmitBase * (1 << retransmits_);
}

}  // namespace ipsecgw::ike
