// Quick Mode with PFS (RFC 2409 §5.5), one process/build pair per message:
//   QM1  I->R  HDR*, HASH(1), SA, Ni, KE, IDci, IDcr
//   QM2  R->I  HDR*, HASH(2), SA, Nr, KE, IDci, IDcr [, N(RESPONDER-LIFETIME)]
//   QM3  I->R  HDR*, HASH(3)
// Either side may start one under an established ISAKMP SA (the first CHILD SA, or a rekey
// that replaces the current one make-before-break); exchanges are told apart by message id.
#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

using crypto::HashAlg;
using crypto::SecureBytes;

namespace {

std::uint16_t integ_attr(const IpsecPolicy& p) {
  return p.integ == crypto::IntegAlg::kHmacSha1_96 ? ipa::kHmacSha : ipa::kHmacSha256;
}

Transform esp_transform(const IpsecPolicy& p, std::uint16_t encap, std::uint32_t lifetime) {
  Transform t;
  t.number = 1;
  t.id = ipa::kEspAes;
  t.attrs = {Attribute::basic(ipa::kLifeType, ipa::kSeconds),
             Attribute::integer(ipa::kLifeDuration, lifetime),
             Attribute::basic(ipa::kGroup, static_cast<std::uint16_t>(p.pfs)),
             Attribute::basic(ipa::kEncap, encap),
             Attribute::basic(ipa::kAuth, integ_attr(p)),
             Attribute::basic(ipa::kKeyLength, key_bits(p.cipher))};
  return t;
}

// Does this ESP transform carry exactly our policy? Returns its lifetime (seconds) if so.
std::optional<std::uint32_t> esp_transform_matches(const Transform& t, const IpsecPolicy& p,
                                                   std::uint16_t encap) {
  if (t.id != ipa::kEspAes) return std::nullopt;
  if (attr_int(t, ipa::kKeyLength, 128) != key_bits(p.cipher)) return std::nullopt;
  if (attr_int(t, ipa::kAuth, 0) != integ_attr(p)) return std::nullopt;
  if (attr_int(t, ipa::kGroup, 0) != static_cast<std::uint16_t>(p.pfs)) return std::nullopt;
  if (attr_int(t, ipa::kEncap, ipa::kTunnel) != encap) return std::nullopt;
  return offered_lifetime(t, ipa::kLifeType, ipa::kLifeDuration, p.lifetime_s);
}

// The SA, nonce, KE and IDs of a QM1/QM2.
struct QmBody {
  SaPayload sa;
  Bytes nonce, ke;
  std::vector<IdPayload> ids;
};
std::optional<QmBody> parse_qm_body(const Message& m) {
  const auto* sp = m.find(PayloadType::kSa);
  const auto* np = m.find(PayloadType::kNonce);
  const auto* kp = m.find(PayloadType::kKe);
  if (sp == nullptr || np == nullptr || kp == nullptr) return std::nullopt;
  auto s = parse_sa(sp->body);
  if (!s) return std::nullopt;
  QmBody b{std::move(*s), np->body, kp->body, {}};
  for (const auto* idp : m.find_all(PayloadType::kId)) b.ids.push_back(parse_id(idp->body).value());
  return b;
}

bool selector_is(const IdPayload& id, const dp::Ipv4Prefix& p) {
  return id.id_type == kIdIpv4AddrSubnet && id.data == id_subnet(p);
}

// The lifetime a RESPONDER-LIFETIME notify (RFC 2407 §4.6.3.1) of QM2 shortens ours to.
std::uint32_t responder_lifetime(const Message& m, std::uint32_t lifetime_s) {
  for (const auto* np : m.find_all(PayloadType::kNotify)) {
    auto n = parse_notify(np->body);
    if (!n || n->type != notify::kResponderLifetime) continue;
    auto attrs = parse_attributes(n->data);
    if (!attrs) continue;
    for (const auto& a : *attrs)
      if (a.type == ipa::kLifeDuration && a.as_int() && *a.as_int() > 0 &&
          *a.as_int() < lifetime_s)
        lifetime_s = static_cast<std::uint32_t>(*a.as_int());
  }
  return lifetime_s;
}

// KEYMAT = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b), expanded as
// K1 | K2 | ... with Kn+1 = prf(SKEYID_d, Kn | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
// (RFC 2409 §5.5). Encryption key first, then the authentication key (RFC 2407 §4.5).
SecureBytes keymat(HashAlg hash, const SecureBytes& skeyid_d, const SecureBytes& gxy,
                   std::uint32_t spi, ByteView ni, ByteView nr, std::size_t len) {
  const std::uint8_t proto = kProtoEsp;
  Bytes s = be32(spi);
  SecureBytes k = crypto::prf(hash, bv(skeyid_d), {bv(gxy), {&proto, 1}, s, ni, nr});
  SecureBytes out = k.clone();
  while (out.size() < len) {
    k = crypto::prf(hash, bv(skeyid_d), {bv(k), bv(gxy), {&proto, 1}, s, ni, nr});
    out.append(k.span());
  }
  out.resize(len);
  return out;
}

// A message whose HASH does not verify is not the peer's (forged, corrupted): dropped as if
// never received, no notify to its unauthenticated source; the exchange goes on (our
// retransmission or the peer's brings the real one). handle_quick_mode() undoes its IV step.
TaskStatus dropped_for_bad_hash(const std::string& tag, const char* which) {
  log(LogLevel::kWarn, tag + ": " + which + " with bad HASH dropped");
  return TaskStatus::kNeedMore;
}

}  // namespace

// UDP-Encapsulated-Tunnel: RFC 3947 value 3, or 61443 with the draft NAT-T VID.
std::uint16_t IkeSa::encap_mode() const {
  if (!nat_detected() || !(peer_nat_t_ || peer_nat_t_draft_)) return ipa::kTunnel;
  return peer_nat_t_ ? ipa::kUdpTunnelRfc : ipa::kUdpTunnelDraft;
}

// Initiator: a new exchange for slot `sl` with a fresh message id and inbound SPI, then QM1.
void IkeSa::qm_start(Slot& sl) {
  std::uint32_t new_mid = 0;
  while (new_mid == 0 || qms_.count(new_mid) != 0) new_mid = get32(crypto::random_bytes(4).data());
  auto& q = *qms_.emplace(new_mid, std::make_unique<Quick>()).first->second;
  q.mid = new_mid;
  q.initiator = true;
  q.trap = sl.trap;
  sl.failure.clear();
  q.started = ctx_.clock->now();
  q.iv = qm_iv(q.mid);
  auto spi = ctx_.installer->allocate_spi();
  if (!spi) {
    q.stage = Quick::Stage::kDone;
    if (any_child()) {
      log(LogLevel::kWarn, tag() + ": quick mode: SPI allocation failed: " + spi.error());
      sl.start_at = ctx_.clock->now() + kRetransmitBase * 5;
      return;
    }
    fail("SPI allocation failed: " + spi.error());
    return;
  }
  q.spi_in = *spi;
  q.spi_reserved = true;
  q.ni = ctx_.keys->nonce(kNonceLen);
  auto kp = ctx_.keys->dh(sl.cfg->ipsec.pfs);
  if (!kp) {  // this exchange (or, without a CHILD SA yet, this SA) fails; never the process
    count(&IkeCounters::dh_failures);
    ctx_.installer->release_spi(q.spi_in);
    q.spi_reserved = false;
    q.stage = Quick::Stage::kDone;
    if (any_child()) {
      log(LogLevel::kWarn, tag() + ": quick mode: DH key generation failed: " + kp.error());
      if (sl.sas.current()) sl.sas.set_soft_expiry(ctx_.clock->now() + kRetransmitBase * 5);
      else sl.start_at = ctx_.clock->now() + kRetransmitBase * 5;
      return;
    }
    fail("DH key generation failed: " + kp.error());
    return;
  }
  q.dh.emplace(std::move(*kp));
  qm_build1(q);
}

// Initiator: QM1 = HDR*, HASH(1), SA, Ni, KE, IDci, IDcr.
void IkeSa::qm_build1(Quick& q) {
  Slot& sl = *slot(q.trap);
  const IpsecPolicy& ip = sl.cfg->ipsec;
  PayloadChain rest;
  const Transform offer = esp_transform(ip, encap_mode(), ip.lifetime_s);
  rest.add(PayloadType::kSa, build_one_transform_sa(1, kProtoEsp, be32(q.spi_in), offer));
  rest.add(PayloadType::kNonce, q.ni);
  rest.add(PayloadType::kKe, q.dh->public_value());
  rest.add(PayloadType::kId, build_id({kIdIpv4AddrSubnet, 0, 0, id_subnet(sl.sel.local)}));
  rest.add(PayloadType::kId, build_id({kIdIpv4AddrSubnet, 0, 0, id_subnet(sl.sel.peer)}));
  // HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
  Bytes rest_wire = rest.serialize();
  SecureBytes h1 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(q.mid), rest_wire});
  PayloadChain c = hash_then(h1.span(), rest, rest_wire);
  q.stage = Quick::Stage::kQm1Sent;
  const bool rekey = sl.sas.current().has_value();
  if (rekey) {
    sl.rekey_mid = q.mid;
  } else if (!any_child()) {
    state_ = State::kQm1Sent;
  }
  log(LogLevel::kInfo, tag() + ": " + sl.cfg->name + ": quick mode " + (rekey ? "(rekey) " : "") +
                           "initiated, mid " +
                           hex(be32(q.mid)) + ", SPI in " + hex(be32(q.spi_in)));
  send(seal(header(ExchangeType::kQuickMode, q.mid), c, q.iv), true);
  q.last_sent = last_out_;
}

// Runs the step for the message the exchange waits for.
TaskStatus IkeSa::qm_process(Quick& q, const Message& m) {
  if (!q.initiator && q.stage == Quick::Stage::kNew) return qm_process1(q, m);
  if (q.initiator && q.stage == Quick::Stage::kQm1Sent) return qm_process2(q, m);
  if (!q.initiator && q.stage == Quick::Stage::kQm2Sent) return qm_process3(q, m);
  return TaskStatus::kNeedMore;
}

// Is the message's first payload the HASH we expect? A match authenticates the message.
bool IkeSa::qm_hash_ok(const Message& m, const SecureBytes& expect) {
  const bool ok = hash_payload_matches(m.payloads.empty() ? nullptr : &m.payloads[0], bv(expect));
  authenticated_in_ |= ok;
  return ok;
}

TaskStatus IkeSa::qm_fail(Quick& q, const std::string& why, std::uint16_t notify_type) {
  log(LogLevel::kWarn, tag() + ": quick mode failed: " + why);
  if (notify_type != 0)
    send_informational(PayloadType::kNotify, build_notify({1, kProtoEsp, notify_type, {}, {}}));
  Slot* sl = slot(q.trap);
  const bool others_in_flight = std::any_of(qms_.begin(), qms_.end(), [&](const auto& o) {
    return o.second.get() != &q && o.second->stage != Quick::Stage::kDone;
  });
  if (!any_child() && !others_in_flight) {
    fail(why);
    return TaskStatus::kFailed;
  }
  // A failed rekey leaves the current CHILD SA in place (retried at the next soft expiry
  // check, at the latest until the hard lifetime); the ISAKMP SA stays up, as it does for
  // the other connections and pairs it carries (this pair is tried again later).
  if (q.spi_reserved) ctx_.installer->release_spi(q.spi_in);
  q.spi_reserved = false;
  if (q.in_installed) (void)ctx_.installer->del_sa(dp::Direction::kInbound, q.spi_in);
  q.in_installed = false;
  q.stage = Quick::Stage::kDone;
  if (sl != nullptr && sl->rekey_mid == q.mid) {
    sl->rekey_mid = 0;
    sl->sas.set_soft_expiry(ctx_.clock->now() + kRetransmitBase * 5);
  } else if (sl != nullptr && !sl->sas.current()) {
    sl->failure = why;
    sl->start_at = ctx_.clock->now() + kChildRetryAfterFailure;
  }
  waiting_ = false;
  return TaskStatus::kFailed;
}

// Responder: QM1, verify HASH(1), check the selectors, choose a transform, derive g^xy,
// reserve our SPI and install our inbound SA before answering.
TaskStatus IkeSa::qm_process1(Quick& q, const Message& m) {
  if (!qm_hash_ok(m, crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(q.mid), concat_wire(m, 1)})))
    return dropped_for_bad_hash(tag(), "QM1");
  auto body = parse_qm_body(m);
  if (!body) return qm_fail(q, "QM1: missing SA/nonce/KE", notify::kPayloadMalformed);
  q.ni = body->nonce;
  const auto& ids = body->ids;
  // The IDs choose the connection and pair (IDci: the initiator's side, the peer's subnet).
  Slot* sl = nullptr;
  if (ids.size() == 2)
    for (auto& s : slots_)
      if (s.cfg->admin_state_up && selector_is(ids[0], s.sel.peer) &&
          selector_is(ids[1], s.sel.local)) {
        sl = &s;
        break;
      }
  if (sl == nullptr)
    return qm_fail(q, "QM1: traffic selectors do not match the connection's subnets",
                   notify::kInvalidIdInformation);
  q.trap = sl->trap;
  if (quick_mode_over_cap(*sl)) {
    // Authenticated, but one too many: dropped before any SA exists (the message id stays
    // known, so its retransmissions are ignored too).
    count(&IkeCounters::quick_mode_cap_drops);
    log(LogLevel::kWarn, tag() + ": QM1 over the per-connection quick mode / SA cap dropped");
    q.stage = Quick::Stage::kDone;
    return TaskStatus::kFailed;
  }
  const auto& ip = sl->cfg->ipsec;
  auto choice = select_proposal(
      body->sa,
      [](const Proposal& prop) { return prop.protocol == kProtoEsp && prop.spi.size() == 4; },
      [&](const Transform& t) { return esp_transform_matches(t, ip, encap_mode()); });
  if (!choice) return qm_fail(q, "no proposal chosen", notify::kNoProposalChosen);
  q.spi_out = get32(choice->proposal->spi.data());
  q.lifetime_s = std::min(choice->lifetime_s, ip.lifetime_s);
  auto kp = ctx_.keys->dh(ip.pfs);
  if (!kp) {
    count(&IkeCounters::dh_failures);
    return qm_fail(q, "DH key generation failed: " + kp.error(), notify::kNoProposalChosen);
  }
  q.dh.emplace(std::move(*kp));
  auto gxy = q.dh->shared_secret(body->ke);
  if (!gxy) return qm_fail(q, "QM1: " + gxy.error(), notify::kInvalidKeyInformation);
  q.gxy = std::move(*gxy);
  auto spi = ctx_.installer->allocate_spi();
  if (!spi) return qm_fail(q, "SPI allocation failed: " + spi.error(), notify::kNoProposalChosen);
  q.spi_in = *spi;
  q.spi_reserved = true;
  q.nr = ctx_.keys->nonce(kNonceLen);
  // Our new inbound SA exists before the initiator can send on it (it switches its outbound
  // SA when QM2 arrives); ours is switched when HASH(3) arrives.
  if (auto r = qm_install(q, dp::Direction::kInbound); !r) return qm_fail(q, r.error(), 0);
  qm_build2(q, *choice->transform, choice->proposal->number, ids);
  return TaskStatus::kNeedMore;
}

// Responder: QM2 = HDR*, HASH(2), SA, Nr, KE, IDci, IDcr [, N(RESPONDER-LIFETIME)].
void IkeSa::qm_build2(Quick& q, const Transform& chosen, std::uint8_t proposal_number,
                      const std::vector<IdPayload>& ids) {
  const auto& ip = slot(q.trap)->cfg->ipsec;
  const Bytes mid = be32(q.mid);
  PayloadChain rest;
  rest.add(PayloadType::kSa,
           build_one_transform_sa(proposal_number, kProtoEsp, be32(q.spi_in), chosen));
  rest.add(PayloadType::kNonce, q.nr);
  rest.add(PayloadType::kKe, q.dh->public_value());
  rest.add(PayloadType::kId, build_id(ids[0]));
  rest.add(PayloadType::kId, build_id(ids[1]));
  if (q.lifetime_s < attr_int(chosen, ipa::kLifeDuration, ip.lifetime_s)) {
    // RFC 2407 §4.6.3.1: tell the initiator the lifetime we will use.
    Bytes attrs;
    write_attributes({Attribute::basic(ipa::kLifeType, ipa::kSeconds),
                      Attribute::integer(ipa::kLifeDuration, q.lifetime_s)},
                     attrs);
    rest.add(PayloadType::kNotify,
             build_notify({1, kProtoEsp, notify::kResponderLifetime, be32(q.spi_out), attrs}));
  }
  // HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])
  Bytes rest_wire = rest.serialize();
  SecureBytes h2 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {mid, q.ni, rest_wire});
  PayloadChain c = hash_then(h2.span(), rest, rest_wire);
  q.stage = Quick::Stage::kQm2Sent;
  if (!any_child()) state_ = State::kQm2Sent;
  log(LogLevel::kInfo, tag() + ": quick mode response, mid " + hex(mid) + ", SPI in " +
                           hex(be32(q.spi_in)) + " out " + hex(be32(q.spi_out)));
  send(seal(header(ExchangeType::kQuickMode, q.mid), c, q.iv), true);  // until HASH(3) arrives
  q.last_sent = last_out_;
}

// Initiator: QM2, verify HASH(2) and the responder's choice, install both SAs (for a rekey,
// the outbound one later: defer_outbound_switch).
TaskStatus IkeSa::qm_process2(Quick& q, const Message& m) {
  const Bytes wire = concat_wire(m, 1);
  if (!qm_hash_ok(m, crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(q.mid), q.ni, wire})))
    return dropped_for_bad_hash(tag(), "QM2");
  auto body = parse_qm_body(m);
  if (!body) return qm_fail(q, "QM2: missing SA/nonce/KE", notify::kPayloadMalformed);
  q.nr = body->nonce;
  const auto& props = body->sa.proposals;
  if (props.size() != 1 || props[0].spi.size() != 4 || props[0].transforms.size() != 1)
    return qm_fail(q, "QM2: responder SA must hold one proposal with one transform",
                   notify::kPayloadMalformed);
  const Slot* sl = slot(q.trap);
  if (sl == nullptr) return qm_fail(q, "connection removed", 0);
  auto life = esp_transform_matches(props[0].transforms[0], sl->cfg->ipsec, encap_mode());
  if (!life) return qm_fail(q, "no proposal chosen", 0);
  q.spi_out = get32(props[0].spi.data());
  q.lifetime_s = responder_lifetime(m, std::min(*life, sl->cfg->ipsec.lifetime_s));
  auto gxy = q.dh->shared_secret(body->ke);
  if (!gxy) return qm_fail(q, "QM2: " + gxy.error(), notify::kInvalidKeyInformation);
  q.gxy = std::move(*gxy);
  if (auto r = qm_install(q, dp::Direction::kInbound); !r) return qm_fail(q, r.error(), 0);
  // A rekey, or the first pair of a slot an older ISAKMP SA still serves: the current pair
  // carries traffic until the switch.
  if (sl->sas.current() || std::erase(live_elsewhere_, sl->trap) > 0) {
    qm_build3(q);
    defer_outbound_switch(q);
    return TaskStatus::kNeedMore;
  }
  if (auto r = qm_install(q, dp::Direction::kOutbound); !r) return qm_fail(q, r.error(), 0);
  qm_build3(q);
  child_activate(q);
  return TaskStatus::kSuccess;
}

// Initiator: QM3 = HDR*, HASH(3).
void IkeSa::qm_build3(Quick& q) {
  // HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
  const std::uint8_t zero = 0;
  SecureBytes h3 =
      crypto::prf(p1_->hash, bv(p1_->skeyid_a), {{&zero, 1}, be32(q.mid), q.ni, q.nr});
  PayloadChain c;
  c.add(PayloadType::kHash, h3.span());
  send(seal(header(ExchangeType::kQuickMode, q.mid), c, q.iv), false);
}

// Responder: QM3, verify HASH(3) and switch our outbound SA to the new pair.
TaskStatus IkeSa::qm_process3(Quick& q, const Message& m) {
  // HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
  const std::uint8_t zero = 0;
  if (!qm_hash_ok(m, crypto::prf(p1_->hash, bv(p1_->skeyid_a),
                                 {{&zero, 1}, be32(q.mid), q.ni, q.nr})))
    return dropped_for_bad_hash(tag(), "QM3");
  waiting_ = false;
  if (auto r = qm_install(q, dp::Direction::kOutbound); !r) return qm_fail(q, r.error(), 0);
  child_activate(q);
  return TaskStatus::kSuccess;
}

// Installs our inbound SA, or the outbound one (which points the policy at it, replacing the
// SA it held: make-before-break). Inbound always first.
Result<void> IkeSa::qm_install(Quick& q, dp::Direction dir) {
  const Slot* sl = slot(q.trap);
  if (sl == nullptr) return make_error("connection removed");
  const ConnectionConfig& cfg = *sl->cfg;
  const auto& ip = cfg.ipsec;
  const std::size_t ek = crypto::cipher_key_len(ip.cipher), ak = crypto::integ_key_len(ip.integ);
  const std::uint32_t spi = dir == dp::Direction::kInbound ? q.spi_in : q.spi_out;
  SecureBytes km = keymat(p1_->hash, p1_->skeyid_d, q.gxy, spi, q.ni, q.nr, ek + ak);
  dp::SaSpec s;
  s.dir = dir;
  s.spi = spi;
  s.conn_id = sl->trap;
  s.cipher = ip.cipher;
  s.integ = ip.integ;
  s.enc_key = SecureBytes(km.data(), ek);
  s.auth_key = SecureBytes(km.data() + ek, ak);
  s.local_addr = cfg.local_addr;
  s.peer_addr = remote_.addr;
  s.udp_encap = encap_mode() != ipa::kTunnel;
  s.local_port = local_.port;
  s.peer_port = remote_.port;
  s.local_subnet = sl->sel.local;
  s.peer_subnet = sl->sel.peer;
  s.mtu = cfg.mtu;
  s.soft_packets = ctx_.child_soft_packets;
  if (dir == dp::Direction::kInbound) {
    if (auto r = ctx_.installer->add_sa(std::move(s)); !r)
      return make_error("inbound SA install failed: " + r.error());
    q.spi_reserved = false;
    q.in_installed = true;
    return {};
  }
  if (auto r = ctx_.installer->add_sa(std::move(s)); !r) {
    (void)ctx_.installer->del_sa(dp::Direction::kInbound, q.spi_in);
    q.in_installed = false;
    return make_error("outbound SA install failed: " + r.error());
  }
  return {};
}

bool IkeSa::quick_mode_over_cap(const Slot& s) const {
  std::size_t waiting = 0, slot_sas = (s.sas.current() ? 1 : 0) +
                                      s.sas.retiring_inbound_spis().size();
  for (const auto& [mid, q] : qms_) {
    if (q->stage == Quick::Stage::kDone) continue;
    waiting += !q->initiator && q->stage == Quick::Stage::kQm2Sent;
    slot_sas += q->trap == s.trap && (q->in_installed || q->spi_reserved);
  }
  return waiting >= kMaxResponderQuickModes || slot_sas >= kMaxChildSasPerSlot;
}

void IkeSa::expire_responder_quicks(Millis now) {
  for (auto& [mid, q] : qms_) {
    if (q->initiator || q->stage != Quick::Stage::kQm2Sent ||
        now - q->started < kResponderQmTimeout)
      continue;
    log(LogLevel::kInfo, tag() + ": quick mode without QM3 abandoned, SPI in " +
                             hex(be32(q->spi_in)));
    if (q->spi_reserved) ctx_.installer->release_spi(q->spi_in);
    q->spi_reserved = false;
    if (q->in_installed) (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
    q->in_installed = false;
    q->stage = Quick::Stage::kDone;
    if (last_out_ == q->last_sent) waiting_ = false;
    if (!any_child() && state_ == State::kQm2Sent) state_ = State::kPhase1Done;
  }
  prune_quicks();
}

void IkeSa::prune_quicks() {
  // Keep a few finished exchanges so late retransmissions are recognised; drop the rest.
  std::size_t done = 0;
  for (const auto& [mid, q] : qms_) done += q->stage == Quick::Stage::kDone;
  for (auto it = qms_.begin(); it != qms_.end() && done > 4;) {
    if (it->second->stage == Quick::Stage::kDone) {
      it = qms_.erase(it);
      --done;
    } else {
      ++it;
    }
  }
}

}  // namespace ipsecgw::ike
