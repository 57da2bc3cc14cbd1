// Main Mode with pre-shared keys (RFC 2409 §5.4), one process/build pair per message:
//   MM1  I->R  HDR, SA, VID*              MM2  R->I  HDR, SA, VID*
//   MM3  I->R  HDR, KE, Ni, NAT-D*        MM4  R->I  HDR, KE, Nr, NAT-D*
//   MM5  I->R  HDR*, IDii, HASH_I [, N]   MM6  R->I  HDR*, IDir, HASH_R
// mm_processN handles message N as received and calls mm_build(N+1) for the answer.
#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

using crypto::HashAlg;

namespace {

std::uint16_t hash_attr(const IkePolicy& p) {
  return p.hash == HashAlg::kSha1 ? ikea::kSha1 : ikea::kSha256;
}

Transform ike_transform(const IkePolicy& p, std::uint32_t lifetime) {
  Transform t;
  t.number = 1;
  t.id = ikea::kKeyIke;
  t.attrs = {Attribute::basic(ikea::kEnc, ikea::kAesCbc),
             // Key Length always sent for AES (RFC 3602 §5 style; strongSwan requires it)
             Attribute::basic(ikea::kKeyLength, key_bits(p.cipher)),
             Attribute::basic(ikea::kHash, hash_attr(p)),
             Attribute::basic(ikea::kAuth, ikea::kPsk),
             Attribute::basic(ikea::kGroup, static_cast<std::uint16_t>(p.group)),
             Attribute::basic(ikea::kLifeType, ikea::kSeconds),
             Attribute::integer(ikea::kLifeDuration, lifetime)};
  return t;
}

// Does this IKE transform carry exactly our policy? Returns its lifetime (seconds) if so.
std::optional<std::uint32_t> ike_transform_matches(const Transform& t, const IkePolicy& p) {
  if (t.id != ikea::kKeyIke) return std::nullopt;
  if (attr_int(t, ikea::kEnc, 0) != ikea::kAesCbc) return std::nullopt;
  if (attr_int(t, ikea::kKeyLength, 128) != key_bits(p.cipher)) return std::nullopt;
  if (attr_int(t, ikea::kHash, 0) != hash_attr(p)) return std::nullopt;
  if (attr_int(t, ikea::kAuth, 0) != ikea::kPsk) return std::nullopt;
  if (attr_int(t, ikea::kGroup, 0) != static_cast<std::uint16_t>(p.group)) return std::nullopt;
  return offered_lifetime(t, ikea::kLifeType, ikea::kLifeDuration, p.lifetime_s);
}

Result<SaPayload> sa_of(const Message& m) {
  const auto* sp = m.find(PayloadType::kSa);
  return sp ? parse_sa(sp->body) : Result<SaPayload>(make_error("missing"));
}

}  // namespace

void IkeSa::start() { mm_build1(); }

// Runs the step for the message that the current state waits for.
TaskStatus IkeSa::mm_process(const Message& m) {
  if (role_ == Role::kResponder && state_ == State::kInit) icookie_ = m.hdr.icookie;
  if (role_ == Role::kInitiator && state_ == State::kMm1Sent) rcookie_ = m.hdr.rcookie;
  switch (state_) {
    case State::kInit: return mm_process1(m);
    case State::kMm1Sent: return mm_process2(m);
    case State::kMm2Sent: return mm_process3(m);
    case State::kMm3Sent: return mm_process4(m);
    case State::kMm4Sent: return mm_process5(m);
    case State::kMm5Sent: return mm_process6(m);
    default: return TaskStatus::kNeedMore;  // late retransmission of a phase-1 message: ignore
  }
}

void IkeSa::mm_note_vendor_ids(const Message& m) {
  for (const auto* v : m.find_all(PayloadType::kVendorId)) {
    if (v->body == kVidNatTRfc3947) peer_nat_t_ = true;
    if (v->body == kVidNatTDraft02) peer_nat_t_draft_ = true;
    if (v->body == kVidDpd) peer_dpd_ = true;
  }
}

// Our DH key pair and nonce for MM3/MM4; returns our public value. A failed key generation
// fails this SA (never the process): nullopt.
std::optional<Bytes> IkeSa::mm_fresh_dh_nonce(Bytes& my_nonce) {
  auto kp = ctx_.keys->dh(cfg_->ike.group);
  if (!kp) {
    count(&IkeCounters::dh_failures);
    fail("DH key generation failed: " + kp.error());
    return std::nullopt;
  }
  p1_->dh.emplace(std::move(*kp));
  my_nonce = ctx_.keys->nonce(kNonceLen);
  return p1_->dh->public_value();
}

// Sends a plaintext Main Mode message (MM1..MM4) and moves to `next`.
void IkeSa::mm_send(const PayloadChain& c, State next, bool expect_reply) {
  state_ = next;
  send(build_message(header(ExchangeType::kIdentityProtection), c), expect_reply);
}

// Initiator: MM1 = HDR, SA, VID (NAT-T RFC, NAT-T draft, DPD).
void IkeSa::mm_build1() {
  p1_->sa_i_b = build_one_transform_sa(1, kProtoIsakmp, {},
                                       ike_transform(cfg_->ike, cfg_->ike.lifetime_s));
  PayloadChain c;
  c.add(PayloadType::kSa, p1_->sa_i_b);
  c.add(PayloadType::kVendorId, kVidNatTRfc3947);
  c.add(PayloadType::kVendorId, kVidNatTDraft02);
  c.add(PayloadType::kVendorId, kVidDpd);
  log(LogLevel::kInfo, tag() + ": initiating main mode to " + dp::format_ipv4(remote_.addr));
  mm_send(c, State::kMm1Sent, true);
}

// Responder: MM1, choose one of the initiator's transforms.
TaskStatus IkeSa::mm_process1(const Message& m) {
  auto sa = sa_of(m);
  if (!sa) {
    fail("MM1 without valid SA payload", notify::kPayloadMalformed);
    return TaskStatus::kFailed;
  }
  auto choice = select_proposal(
      *sa, [](const Proposal& prop) { return prop.protocol == kProtoIsakmp; },
      [&](const Transform& t) { return ike_transform_matches(t, cfg_->ike); });
  if (!choice) {
    fail("no proposal chosen", notify::kNoProposalChosen);
    return TaskStatus::kFailed;
  }
  p1_->lifetime_s = std::min(choice->lifetime_s, cfg_->ike.lifetime_s);
  p1_->sa_i_b = m.find(PayloadType::kSa)->body;
  mm_note_vendor_ids(m);
  mm_build2(*choice->transform, choice->proposal->number);
  return TaskStatus::kNeedMore;
}

// Responder: MM2 = HDR, SA (the chosen transform), VID*.
void IkeSa::mm_build2(const Transform& chosen, std::uint8_t proposal_number) {
  PayloadChain c;
  c.add(PayloadType::kSa, build_one_transform_sa(proposal_number, kProtoIsakmp, {}, chosen));
  if (peer_nat_t_) c.add(PayloadType::kVendorId, kVidNatTRfc3947);
  else if (peer_nat_t_draft_) c.add(PayloadType::kVendorId, kVidNatTDraft02);
  c.add(PayloadType::kVendorId, kVidDpd);
  log(LogLevel::kInfo, tag() + ": responding to main mode from " + dp::format_ipv4(remote_.addr));
  mm_send(c, State::kMm2Sent, false);
}

// Initiator: MM2, the responder's one transform must be the one we offered.
TaskStatus IkeSa::mm_process2(const Message& m) {
  auto sa = sa_of(m);
  if (!sa || sa->proposals.size() != 1 || sa->proposals[0].transforms.size() != 1) {
    fail("MM2: responder SA must hold exactly one transform");
    return TaskStatus::kFailed;
  }
  auto life = ike_transform_matches(sa->proposals[0].transforms[0], cfg_->ike);
  if (!life) {
    fail("no proposal chosen");  // the responder chose something we did not offer
    return TaskStatus::kFailed;
  }
  // Not covered by HASH_R: a longer lifetime than we offered is taken as ours (RFC 2409
  // §4.5 leaves it to policy; we never run longer than configured).
  p1_->lifetime_s = std::min(*life, cfg_->ike.lifetime_s);
  mm_note_vendor_ids(m);
  mm_build3();
  return TaskStatus::kNeedMore;
}

// MM3 and MM4 carry the same payloads: HDR, KE, nonce, NAT-D, NAT-D.
void IkeSa::mm_send_ke_nonce(const Bytes& ke, const Bytes& nonce, State next, bool expect_reply) {
  PayloadChain c;
  c.add(PayloadType::kKe, ke);
  c.add(PayloadType::kNonce, nonce);
  add_nat_d(c);
  mm_send(c, next, expect_reply);
}

// MM3 (responder) or MM4 (initiator) as received: the peer's KE and nonce, which must be a
// valid public value, and its NAT-D; then the phase-1 keys (the responder makes its own KE
// and nonce first). False when the SA failed.
bool IkeSa::mm_take_ke_nonce_derive(const Message& m, const char* which,
                                    std::uint16_t notify_type) {
  auto& p = *p1_;
  const bool initiator = role_ == Role::kInitiator;
  const auto* k = m.find(PayloadType::kKe);
  const auto* n = m.find(PayloadType::kNonce);
  if (k == nullptr || n == nullptr || !crypto::dh_public_value_valid(cfg_->ike.group, k->body)) {
    fail(std::string(which) + ": missing or invalid KE/nonce", notify_type);
    return false;
  }
  (initiator ? p.gxr : p.gxi) = k->body;
  (initiator ? p.nr : p.ni) = n->body;
  check_nat_d(m);
  if (!initiator) {
    auto ke = mm_fresh_dh_nonce(p.nr);
    if (!ke) return false;
    p.gxr = std::move(*ke);
  }
  if (auto r = derive_phase1_keys(); !r) {
    fail(std::string(which) + ": " + r.error(), notify_type);
    return false;
  }
  return true;
}

// Initiator: MM3 = HDR, KE, Ni, NAT-D, NAT-D.
void IkeSa::mm_build3() {
  auto ke = mm_fresh_dh_nonce(p1_->ni);
  if (!ke) return;
  p1_->gxi = std::move(*ke);
  mm_send_ke_nonce(p1_->gxi, p1_->ni, State::kMm3Sent, true);
}

// Responder: MM3, the initiator's KE and nonce; the keys can be derived once ours exist.
TaskStatus IkeSa::mm_process3(const Message& m) {
  if (!mm_take_ke_nonce_derive(m, "MM3", notify::kInvalidKeyInformation))
    return TaskStatus::kFailed;
  mm_build4();
  return TaskStatus::kNeedMore;
}

// Responder: MM4 = HDR, KE, Nr, NAT-D, NAT-D.
void IkeSa::mm_build4() { mm_send_ke_nonce(p1_->gxr, p1_->nr, State::kMm4Sent, false); }

// Initiator: MM4, the responder's KE and nonce; derive the keys.
TaskStatus IkeSa::mm_process4(const Message& m) {
  if (!mm_take_ke_nonce_derive(m, "MM4", 0)) return TaskStatus::kFailed;
  // RFC 3947 §4: with a NAT between us, float to port 4500 from MM5 on.
  if ((peer_nat_t_ || peer_nat_t_draft_) && nat_detected()) {
    local_.port = 4500;
    remote_.port = 4500;
  }
  mm_build5();
  return TaskStatus::kNeedMore;
}

// Our ID payload (RFC 2407 §4.6.2.1): local_id when set (dotted IPv4 as ID_IPV4_ADDR,
// user@FQDN as ID_USER_FQDN, else ID_FQDN), else our address.
IdPayload our_id(const ConnectionConfig& c) {
  if (c.local_id.empty()) return {kIdIpv4Addr, 0, 0, id_addr(c.local_addr)};
  if (auto a = dp::parse_ipv4(c.local_id)) return {kIdIpv4Addr, 0, 0, id_addr(*a)};
  const std::uint8_t type = c.local_id.find('@') != std::string::npos ? kIdUserFqdn : kIdFqdn;
  return {type, 0, 0, Bytes(c.local_id.begin(), c.local_id.end())};
}

// Initiator: MM5 = HDR*, IDii, HASH_I [, N(INITIAL-CONTACT)].
void IkeSa::mm_build5() {
  Bytes id = build_id(our_id(*cfg_));
  PayloadChain c;
  c.add(PayloadType::kId, id);
  c.add(PayloadType::kHash, hash_i(id));
  if (send_initial_contact_) {
    // RFC 2407 §4.6.3.3: protocol ISAKMP, SPI = CKY-I | CKY-R, no data.
    c.add(PayloadType::kNotify,
          build_notify({1, kProtoIsakmp, notify::kInitialContact, cookie_spi(), {}}));
  }
  state_ = State::kMm5Sent;
  send(seal(header(ExchangeType::kIdentityProtection), c, p1_->iv), true);
}

// Is the peer's (authenticated) ID payload the configured peer_id? (RFC 2407 §4.6.2.1:
// ID_IPV4_ADDR, ID_FQDN, ID_USER_FQDN.) An unset peer_id accepts any.
bool IkeSa::peer_id_matches(ByteView id_body) {
  if (cfg_->peer_id.empty()) return true;
  auto id = parse_id(id_body);
  std::string got;
  if (id && id->id_type == kIdIpv4Addr && id->data.size() == 4)
    got = dp::format_ipv4(get32(id->data.data()));
  else if (id && (id->id_type == kIdFqdn || id->id_type == kIdUserFqdn))
    got.assign(id->data.begin(), id->data.end());
  if (got == cfg_->peer_id) return true;
  count(&IkeCounters::peer_id_mismatches);
  log(LogLevel::kWarn, tag() + ": peer ID '" + got + "' is not the configured '" +
                           cfg_->peer_id + "'");
  return false;
}

// Responder: MM5, verify HASH_I.
TaskStatus IkeSa::mm_process5(const Message& m) {
  const auto* id = m.find(PayloadType::kId);
  if (id == nullptr || !hash_payload_matches(m.find(PayloadType::kHash), hash_i(id->body))) {
    diagnose("authentication failed", true);  // wrong PSK, or not the peer's message
    return TaskStatus::kNeedMore;
  }
  if (!peer_id_matches(id->body)) {
    fail("peer ID mismatch", notify::kInvalidIdInformation);
    return TaskStatus::kFailed;
  }
  for (const auto* np : m.find_all(PayloadType::kNotify))
    if (auto n = parse_notify(np->body); n && n->type == notify::kInitialContact)
      ic_received_ = true;
  mm_build6();
  return phase1_established("responder");
}

// Responder: MM6 = HDR*, IDir, HASH_R.
void IkeSa::mm_build6() {
  Bytes my_id = build_id(our_id(*cfg_));
  PayloadChain c;
  c.add(PayloadType::kId, my_id);
  c.add(PayloadType::kHash, hash_r(my_id));
  send(seal(header(ExchangeType::kIdentityProtection), c, p1_->iv), false);
}

// Initiator: MM6, verify HASH_R.
TaskStatus IkeSa::mm_process6(const Message& m) {
  const auto* id = m.find(PayloadType::kId);
  if (id == nullptr || !hash_payload_matches(m.find(PayloadType::kHash), hash_r(id->body))) {
    diagnose("authentication failed", false);  // fails when MM5's retransmissions run out
    return TaskStatus::kNeedMore;
  }
  if (!peer_id_matches(id->body)) {
    fail("peer ID mismatch");
    return TaskStatus::kFailed;
  }
  waiting_ = false;
  return phase1_established("initiator");
}

TaskStatus IkeSa::phase1_established(const char* role) {
  p1_->last_p1_iv = p1_->iv;
  wipe_phase1_secrets();  // only SKEYID_d/a/e and Ka stay for the life of the ISAKMP SA
  state_ = State::kPhase1Done;
  p1_started_lifetime();
  log(LogLevel::kInfo, tag() + ": ISAKMP SA established (" + role + "), lifetime " +
                           std::to_string(p1_->lifetime_s) + "s");
  return TaskStatus::kSuccess;
}

}  // namespace ipsecgw::ike
