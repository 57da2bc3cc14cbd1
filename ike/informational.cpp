// Informational exchanges (RFC 2409 §5.7; RFC 2408 §3.14 notify, §3.15 delete): sending
// protected and plain ones, and handling what the peer sends.
#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

using crypto::SecureBytes;

// Unprotected error notify during Main Mode (RFC 2408 §5: before the ISAKMP SA is
// authenticated the notification cannot be protected).
void IkeSa::send_plain_notify(std::uint16_t type) {
  PayloadChain c;
  c.add(PayloadType::kNotify, build_notify({1, kProtoIsakmp, type, {}, {}}));
  auto r = ctx_.sender->send(
      {local_, remote_, build_message(header(ExchangeType::kInformational), c)});
  (void)r;
}

// Protected informational exchange (RFC 2409 §5.7):
//   HASH(1) = prf(SKEYID_a, M-ID | N/D)
void IkeSa::send_informational(PayloadType t, const Bytes& body) {
  if (!p1_->keys || p1_->last_p1_iv.empty()) return;
  const std::uint32_t mid = random_nonzero32();
  PayloadChain rest;
  rest.add(t, body);
  Bytes rest_wire = rest.serialize();
  SecureBytes h1 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(mid), rest_wire});
  PayloadChain c;
  c.add(PayloadType::kHash, h1.span());
  c.add(t, body);
  Bytes iv = qm_iv(mid);
  auto r = ctx_.sender->send(
      {local_, remote_, seal(header(ExchangeType::kInformational, mid), c, iv)});
  (void)r;
}

bool IkeSa::peer_mid_seen(std::uint32_t mid) const {
  const bool seen = peer_mids_.size() >= kPeerMidMax || peer_mids_.count(mid) != 0;
  if (seen) count(&IkeCounters::replay_drops);
  return seen;
}
void IkeSa::note_peer_mid(std::uint32_t mid) {
  peer_mids_.insert(mid);
  if (peer_mids_.size() == kPeerMidRekeyAt) {
    log(LogLevel::kInfo, tag() + ": message-id memory at its limit: ISAKMP SA wants renewal");
    count(&IkeCounters::mid_cap_rekeys);
  }
}

// A protected informational: HASH(1) must verify and its message id must be new. Marks the
// message authenticated and the peer alive.
bool IkeSa::informational_authentic(const Message& m) {
  SecureBytes h1 =
      crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(m.hdr.message_id), concat_wire(m, 1)});
  if (!hash_payload_matches(m.payloads.empty() ? nullptr : &m.payloads[0], bv(h1))) {
    log(LogLevel::kWarn, tag() + ": informational with bad HASH dropped");
    return false;
  }
  // The HASH covers the message id but nothing orders informationals: a copy of an old one
  // verifies too. Each exchange has a fresh random id, so a repeated one is a replay.
  if (peer_mid_seen(m.hdr.message_id)) {
    log(LogLevel::kWarn, tag() + ": replayed informational dropped");
    return false;
  }
  note_peer_mid(m.hdr.message_id);
  last_alive_ = ctx_.clock->now();  // an authenticated message: the peer is alive
  authenticated_in_ = true;
  return true;
}

void IkeSa::informational(const Message& m) {
  const bool protected_msg = (m.hdr.flags & kFlagEncryption) != 0;
  if (protected_msg && !informational_authentic(m)) return;
  for (const auto& pl : m.payloads) {
    if (pl.type == PayloadType::kNotify) {
      if (auto n = parse_notify(pl.body)) informational_notify(*n, protected_msg);
    } else if (pl.type == PayloadType::kDelete && protected_msg) {
      auto d = parse_delete(pl.body);
      if (d && !informational_delete(*d)) return;
    }
  }
}

void IkeSa::informational_notify(const NotifyPayload& n, bool protected_msg) {
  if (n.type == notify::kRUThere || n.type == notify::kRUThereAck) {
    // RFC 3706 §5: only accepted protected, within an established ISAKMP SA.
    if (protected_msg) dpd_notify(n);
    return;
  }
  log(LogLevel::kInfo, tag() + ": notify " + std::to_string(n.type) +
                           (protected_msg ? "" : " (unprotected)"));
  if (n.type >= 16384) return;  // status notifications
  // Error notifications: before phase 1 completes they cannot be protected (RFC 2408
  // §5); accept them only then, and only protected ones afterwards.
  const bool in_phase1 = state_ < State::kPhase1Done;
  if (!protected_msg) {
    // Anyone can send one: it only explains a later timeout (RFC 2408 §5).
    if (in_phase1) diagnose(n.type == notify::kNoProposalChosen ? "no proposal chosen"
                            : n.type == notify::kAuthenticationFailed
                                ? "authentication failed"
                                : "peer sent error notify " + std::to_string(n.type),
                            false);
    return;
  }
  std::string reason = n.type == notify::kNoProposalChosen       ? "no proposal chosen"
                       : n.type == notify::kAuthenticationFailed ? "authentication failed"
                       : n.type == notify::kPayloadMalformed     ? "payload malformed"
                       : n.type == notify::kInvalidIdInformation ? "invalid ID information"
                                                                 : "peer sent error notify " +
                                                                       std::to_string(n.type);
  if (in_phase1 || state_ == State::kQm1Sent || state_ == State::kQm2Sent) fail(reason);
}

bool IkeSa::informational_delete(const DeletePayload& d) {
  if (d.protocol == kProtoIsakmp) {
    const bool ours = std::any_of(d.spis.begin(), d.spis.end(),
                                  [&](const Bytes& spi) { return is_our_cookie_spi(spi); });
    if (!ours) return true;
    log(LogLevel::kInfo, tag() + ": peer deleted the ISAKMP SA");
    teardown(false);
    fail("deleted by peer");
    return false;
  }
  if (d.protocol != kProtoEsp) return true;
  // RFC 2408 §3.15: the SPIs are the peer's inbound ones, i.e. our outbound SPIs.
  for (const auto& spi_b : d.spis) {
    if (spi_b.size() != 4) continue;
    const std::uint32_t spi = get32(spi_b.data());
    if (!peer_deleted_esp(spi)) foreign_esp_deletes_.push_back(spi);
    if (state_ == State::kFailed) return false;
  }
  return true;
}

// A responder that cannot decrypt or verify our MM5 (a different PSK gives different keys)
// may answer with an informational notify encrypted under its keys (strongSwan: HASH,
// N(PAYLOAD-MALFORMED)). Its IV follows RFC 2409 Appendix B from the last phase-1 block, our
// MM5. If it decrypts and its HASH verifies under our keys it is handled as any protected
// informational; if not, the two sides derived different keys from the same exchange, which
// means different PSKs: the same verdict as an MM6 that does not decrypt. The first such
// answer only makes us resend MM5 at once: a peer that did accept it (its MM6 lost, an
// informational of its own overtaking) answers the copy with its MM6; one that rejected it
// rejects it again.
void IkeSa::mm5_answered_with_informational(const dp::DatagramView& d, const Header& h) {
  if (!p1_->keys) return;
  Bytes iv = crypto::hash(p1_->hash, {p1_->iv, be32(h.message_id)});
  iv.resize(kBlock);
  auto m = open(d, h, iv);
  authenticated_in_ = false;
  if (m) informational(*m);
  if (authenticated_in_ || state_ == State::kFailed) return;
  // Not authenticated: a diagnosis for MM5's timeout, never a failure by itself.
  diagnose("authentication failed (the peer answered our MM5 with notifies encrypted under "
           "other keys: the pre-shared keys differ)", false);
  if (++mm5_rejections_ < 2) {
    log(LogLevel::kInfo, tag() + ": peer answered MM5 with a notify we cannot decrypt, resending MM5");
    resend_last();
  }
}

}  // namespace ipsecgw::ike
