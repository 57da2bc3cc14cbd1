#include "ike/ike_sa.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "ike/log.hpp"

namespace ipsecgw::ike {

using crypto::HashAlg;
using crypto::SecureBytes;

const Bytes kVidNatTRfc3947 = {0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45,
                               0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f};
const Bytes kVidNatTDraft02 = {0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e,
                               0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f};
const Bytes kVidDpd = {0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9,
                       0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00};

namespace {

// IKE SA attributes (RFC 2409 Appendix A).
namespace ikea {
constexpr std::uint16_t kEnc = 1, kHash = 2, kAuth = 3, kGroup = 4, kLifeType = 11,
                        kLifeDuration = 12, kKeyLength = 14;
constexpr std::uint16_t kAesCbc = 7, kSha1 = 2, kSha256 = 4, kPsk = 1, kSeconds = 1;
constexpr std::uint8_t kKeyIke = 1;
}  // namespace ikea
// IPsec SA attributes (RFC 2407 §4.5), ESP transform ids (§4.4.4).
namespace ipa {
constexpr std::uint16_t kLifeType = 1, kLifeDuration = 2, kGroup = 3, kEncap = 4, kAuth = 5,
                        kKeyLength = 6;
constexpr std::uint16_t kSeconds = 1, kHmacSha = 2, kHmacSha256 = 5;
constexpr std::uint16_t kTunnel = 1, kUdpTunnelRfc = 3, kUdpTunnelDraft = 61443;
constexpr std::uint8_t kEspAes = 12;
}  // namespace ipa

constexpr std::size_t kNonceLen = 32;
constexpr std::size_t kBlock = 16;

std::uint16_t key_bits(crypto::CipherAlg c) {
  return static_cast<std::uint16_t>(crypto::cipher_key_len(c) * 8);
}

ByteView bv(const SecureBytes& s) { return s.span(); }

Bytes be32(std::uint32_t v) {
  Bytes b;
  put32(b, v);
  return b;
}

std::string cookie_hex(const Cookie& c) { return hex(c); }

std::uint64_t attr_int(const Transform& t, std::uint16_t type, std::uint64_t dflt) {
  const Attribute* a = t.find(type);
  if (a == nullptr) return dflt;
  return a->as_int().value_or(~0ULL);
}

Bytes id_addr(dp::Ipv4 a) { return be32(a); }
Bytes id_subnet(const dp::Ipv4Prefix& p) {
  Bytes b = be32(p.addr);
  Bytes m = be32(p.mask());
  b.insert(b.end(), m.begin(), m.end());
  return b;
}

}  // namespace

// ---- state shared by the tasks ----

struct IkeSa::Phase1 {
  HashAlg hash = HashAlg::kSha1;
  std::size_t enc_key_len = 16;
  std::uint32_t lifetime_s = 0;
  Bytes sa_i_b;  // the initiator's SA payload body (RFC 2409 §5: SAi_b)
  std::optional<crypto::DhKeyPair> dh;
  Bytes gxi, gxr, ni, nr;
  SecureBytes gxy, skeyid, skeyid_d, skeyid_a, skeyid_e, ka;
  Bytes iv;          // phase-1 CBC chain (Appendix B)
  Bytes last_p1_iv;  // last phase-1 CBC output block, seeds QM/informational IVs
  bool keys = false;
};

struct IkeSa::Quick {
  enum class Stage : std::uint8_t { kNew, kQm1Sent, kQm2Sent, kDone } stage = Stage::kNew;
  bool initiator = false;
  bool in_installed = false;  // responder: inbound SA added when QM2 went out
  Millis started{0};
  std::uint32_t mid = 0;
  Bytes iv;
  std::uint32_t spi_in = 0, spi_out = 0;
  Bytes ni, nr;
  Bytes last_sent;  // our last message of this exchange
  std::optional<crypto::DhKeyPair> dh;
  SecureBytes gxy;
  std::uint32_t lifetime_s = 0;
  bool spi_reserved = false;
};

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
}

IkeSa::~IkeSa() {
  for (auto& [mid, q] : qms_)
    if (q->spi_reserved && ctx_.installer != nullptr) ctx_.installer->release_spi(q->spi_in);
}

std::string IkeSa::tag() const {
  return cfg_->name + " " + cookie_hex(icookie_) + "_" + cookie_hex(rcookie_);
}

// ---- framing ----

void IkeSa::send(Bytes msg, bool expect_reply) {
  auto r = ctx_.sender->send({local_, remote_, msg});
  if (!r) log(LogLevel::kWarn, tag() + ": send failed: " + r.error());
  last_out_ = std::move(msg);
  waiting_ = expect_reply;
  retransmits_ = 0;
  if (expect_reply) retransmit_at_ = ctx_.clock->now() + kRetransmitBase;
}

void IkeSa::tick(Millis now) {
  if (state_ == State::kFailed || done_) return;
  if (now >= retire_at_) {
    log(LogLevel::kInfo, tag() + ": replaced ISAKMP SA retired");
    teardown(true);
    done_ = true;
    return;
  }
  if (role_ == Role::kResponder && !p1_established_ && now - created_ >= kHalfOpenTimeout) {
    fail("negotiation timed out");
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
  // RFC 3948 §2.3: NAT keepalives from the side behind the NAT keep its mapping open.
  if (nat_local_ && child_ && child_->udp_encap && now >= keepalive_next_) {
    keepalive_next_ = now + kNatKeepaliveInterval;
    static const std::uint8_t kKeepalive[1] = {0xff};
    auto r = ctx_.sender->send({local_, remote_, kKeepalive});
    (void)r;
  }
  dpd_tick(now);
  if (!waiting_ || state_ == State::kFailed || now < retransmit_at_) return;
  if (retransmits_ >= kMaxRetransmits) {
    // The peer answered MM1 and MM3: it is reachable, it just never accepted our MM5.
    fail(state_ == State::kMm5Sent
             ? "no response to MM5 (peer rejected our authentication? check the PSK)"
             : "peer unreachable");
    return;
  }
  ++retransmits_;
  log(LogLevel::kInfo, tag() + ": retransmit " + std::to_string(retransmits_) + " in " +
                           to_string(state_));
  auto r = ctx_.sender->send({local_, remote_, last_out_});
  (void)r;
  retransmit_at_ = now + kRetransmitBase * (1 << retransmits_);
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

void IkeSa::fail(const std::string& reason, std::uint16_t notify_type) {
  if (state_ == State::kFailed) return;
  log(LogLevel::kWarn, tag() + ": failed in " + to_string(state_) + ": " + reason);
  if (notify_type != 0) send_plain_notify(notify_type);
  failure_ = reason;
  state_ = State::kFailed;
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

// Unprotected error notify during Main Mode (RFC 2408 §5: before the ISAKMP SA is
// authenticated the notification cannot be protected).
void IkeSa::send_plain_notify(std::uint16_t type) {
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kInformational);
  PayloadChain c;
  c.add(PayloadType::kNotify, build_notify({1, kProtoIsakmp, type, {}, {}}));
  auto r = ctx_.sender->send({local_, remote_, build_message(h, c)});
  (void)r;
}

// Protected informational exchange (RFC 2409 §5.7):
//   HASH(1) = prf(SKEYID_a, M-ID | N/D)
void IkeSa::send_informational(PayloadType t, const Bytes& body) {
  if (!p1_->keys || p1_->last_p1_iv.empty()) return;
  std::uint32_t mid = 0;
  while (mid == 0) mid = get32(crypto::random_bytes(4).data());
  PayloadChain rest;
  rest.add(t, body);
  Bytes rest_wire = rest.serialize();
  Bytes m = be32(mid);
  SecureBytes h1 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {m, rest_wire});
  PayloadChain c;
  c.add(PayloadType::kHash, h1.span());
  c.add(t, body);
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kInformational);
  h.message_id = mid;
  Bytes iv = qm_iv(mid);
  auto r = ctx_.sender->send({local_, remote_, seal(h, c, iv)});
  (void)r;
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
  if (child_ && child_->udp_encap && child_->peer_port != from.port && state_ == State::kActive &&
      !qm_in_flight)
    rekey_child();
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
  if (++mm5_rejections_ < 2) {
    log(LogLevel::kInfo, tag() + ": peer answered MM5 with a notify we cannot decrypt, resending MM5");
    auto r = ctx_.sender->send({local_, remote_, last_out_});
    (void)r;
    return;
  }
  fail("authentication failed (the peer answered our MM5 with notifies encrypted under other "
       "keys: the pre-shared keys differ)");
}

bool IkeSa::peer_mid_seen(std::uint32_t mid) const {
  return std::find(peer_mids_.begin(), peer_mids_.end(), mid) != peer_mids_.end();
}
void IkeSa::note_peer_mid(std::uint32_t mid) {
  if (peer_mids_.size() >= kPeerMidMemory) peer_mids_.erase(peer_mids_.begin());
  peer_mids_.push_back(mid);
}

// ---- dispatch ----

void IkeSa::handle(const dp::DatagramView& d, const Header& h) {
  if (state_ == State::kFailed || done_) return;
  const Bytes in(d.payload.begin(), d.payload.end());
  // A retransmitted request: answer from the last response, do not process it again.
  if (in == last_in_ && !last_out_.empty()) {
    log(LogLevel::kInfo, tag() + ": duplicate message, resending last response");
    auto r = ctx_.sender->send({local_, remote_, last_out_});
    (void)r;
    return;
  }
  const auto ex = static_cast<ExchangeType>(h.exchange);
  Result<Message> msg = make_error("unset");
  if (ex == ExchangeType::kInformational) {
    if (h.flags & kFlagEncryption) {
      if (p1_->last_p1_iv.empty()) {
        if (state_ == State::kMm5Sent) mm5_answered_with_informational(d, h);
        return;
      }
      Bytes iv = qm_iv(h.message_id);
      msg = open(d, h, iv);
    } else {
      msg = parse_message(d.payload);
    }
    if (!msg) {
      log(LogLevel::kWarn, tag() + ": dropping informational: " + msg.error());
      return;
    }
    with_tentative_peer(d.remote, [&] { informational(*msg); });
    return;
  }
  if (ex == ExchangeType::kIdentityProtection) {
    if (h.flags & kFlagEncryption) {
      Bytes iv = p1_->iv;
      msg = open(d, h, iv);
      if (!msg) {
        // With a wrong PSK, SKEYID_e differs and the peer's MM5/MM6 decrypts to garbage.
        if (state_ == State::kMm4Sent || state_ == State::kMm5Sent)
          fail("authentication failed", notify::kAuthenticationFailed);
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
    if (state_ == prev_state) {
      remote_ = prev_remote;
      local_ = prev_local;
      return;
    }
    last_in_ = in;
    if (st == TaskStatus::kSuccess && role_ == Role::kInitiator) qm_start();
    return;
  }
  if (ex == ExchangeType::kQuickMode) {
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
    msg = open(d, h, iv);
    if (!msg) {
      log(LogLevel::kWarn, tag() + ": dropping quick mode message: " + msg.error());
      return;
    }
    const bool new_exchange = it == qms_.end();
    if (new_exchange) {
      auto q = std::make_unique<Quick>();
      q->mid = h.message_id;
      it = qms_.emplace(h.message_id, std::move(q)).first;
    }
    Bytes prev_iv = std::exchange(it->second->iv, std::move(iv));
    with_tentative_peer(d.remote, [&] { qm_process(*it->second, *msg); });
    if (!authenticated_in_) {  // bad HASH: as if it never arrived
      if (new_exchange) qms_.erase(it);
      else it->second->iv = std::move(prev_iv);
      return;
    }
    last_in_ = in;
    if (new_exchange) note_peer_mid(h.message_id);
    prune_quicks();
    return;
  }
  log(LogLevel::kWarn, tag() + ": unsupported exchange type " + std::to_string(h.exchange));
}

// ---- Main Mode (RFC 2409 §5.4) ----

void IkeSa::start() { mm_build1(); }

namespace {
Transform ike_transform(const IkePolicy& p, std::uint32_t lifetime) {
  Transform t;
  t.number = 1;
  t.id = ikea::kKeyIke;
  t.attrs = {Attribute::basic(ikea::kEnc, ikea::kAesCbc),
             // Key Length always sent for AES (RFC 3602 §5 style; strongSwan requires it)
             Attribute::basic(ikea::kKeyLength, key_bits(p.cipher)),
             Attribute::basic(ikea::kHash, p.hash == HashAlg::kSha1 ? ikea::kSha1 : ikea::kSha256),
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
  if (attr_int(t, ikea::kHash, 0) != (p.hash == HashAlg::kSha1 ? ikea::kSha1 : ikea::kSha256))
    return std::nullopt;
  if (attr_int(t, ikea::kAuth, 0) != ikea::kPsk) return std::nullopt;
  if (attr_int(t, ikea::kGroup, 0) != static_cast<std::uint16_t>(p.group)) return std::nullopt;
  std::uint64_t life = p.lifetime_s;
  if (attr_int(t, ikea::kLifeType, ikea::kSeconds) == ikea::kSeconds)
    life = attr_int(t, ikea::kLifeDuration, p.lifetime_s);
  if (life == 0 || life > 0xffffffffULL) return std::nullopt;
  return static_cast<std::uint32_t>(life);
}
}  // namespace

void IkeSa::mm_build1() {
  SaPayload sa;
  Proposal prop;
  prop.protocol = kProtoIsakmp;
  prop.transforms.push_back(ike_transform(cfg_->ike, cfg_->ike.lifetime_s));
  sa.proposals.push_back(std::move(prop));
  p1_->sa_i_b = build_sa(sa);
  PayloadChain c;
  c.add(PayloadType::kSa, p1_->sa_i_b);
  c.add(PayloadType::kVendorId, kVidNatTRfc3947);
  c.add(PayloadType::kVendorId, kVidNatTDraft02);
  c.add(PayloadType::kVendorId, kVidDpd);
  Header h;
  h.icookie = icookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kIdentityProtection);
  log(LogLevel::kInfo, tag() + ": initiating main mode to " + dp::format_ipv4(remote_.addr));
  state_ = State::kMm1Sent;
  send(build_message(h, c), true);
}

// NAT-D = HASH(CKY-I | CKY-R | IP | Port) (RFC 3947 §3.2), with the negotiated hash.
Bytes IkeSa::nat_d(const dp::UdpEndpoint& ep) const {
  Bytes ip = be32(ep.addr);
  Bytes port{static_cast<std::uint8_t>(ep.port >> 8), static_cast<std::uint8_t>(ep.port)};
  return crypto::hash(p1_->hash, {icookie_, rcookie_, ip, port});
}

void IkeSa::add_nat_d(PayloadChain& c) const {
  if (!peer_nat_t_ && !peer_nat_t_draft_) return;
  const auto t = peer_nat_t_ ? PayloadType::kNatD : PayloadType::kNatDDraft;
  c.add(t, nat_d(remote_));  // first: the peer's address as we see it
  c.add(t, nat_d(local_));   // then ours
}

// RFC 3947 §3.2: the first NAT-D is the hash of our address as the peer saw it; if it does
// not match, we are behind a NAT. If no other NAT-D matches the peer's source, it is.
void IkeSa::check_nat_d(const Message& m) {
  auto v = m.find_all(PayloadType::kNatD);
  if (v.empty()) v = m.find_all(PayloadType::kNatDDraft);
  if (v.empty()) return;
  nat_local_ = v[0]->body != nat_d(local_);
  bool peer_ok = false;
  Bytes theirs = nat_d(remote_);
  for (std::size_t i = 1; i < v.size(); ++i) peer_ok |= v[i]->body == theirs;
  nat_remote_ = !peer_ok;
  if (nat_local_ || nat_remote_)
    log(LogLevel::kInfo, tag() + ": NAT detected (" + (nat_local_ ? "local" : "") +
                             (nat_remote_ ? " remote" : "") + ")");
}

Result<void> IkeSa::derive_phase1_keys() {
  auto& p = *p1_;
  auto gxy = p.dh->shared_secret(role_ == Role::kInitiator ? p.gxr : p.gxi);
  if (!gxy) return make_error(gxy.error());
  p.gxy = std::move(*gxy);
  const std::uint8_t zero = 0, one = 1, two = 2;
  // SKEYID = prf(pre-shared-key, Ni_b | Nr_b)                          (RFC 2409 §5)
  p.skeyid = crypto::prf(p.hash, bv(cfg_->psk), {p.ni, p.nr});
  // SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
  p.skeyid_d = crypto::prf(p.hash, bv(p.skeyid), {bv(p.gxy), icookie_, rcookie_, {&zero, 1}});
  // SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
  p.skeyid_a = crypto::prf(p.hash, bv(p.skeyid),
                           {bv(p.skeyid_d), bv(p.gxy), icookie_, rcookie_, {&one, 1}});
  // SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
  p.skeyid_e = crypto::prf(p.hash, bv(p.skeyid),
                           {bv(p.skeyid_a), bv(p.gxy), icookie_, rcookie_, {&two, 1}});
  // Ka (RFC 2409 Appendix B): the first bytes of SKEYID_e, or, when SKEYID_e is too short,
  // of K1 | K2 | ... with K1 = prf(SKEYID_e, 0), K2 = prf(SKEYID_e, K1), ...
  if (p.skeyid_e.size() >= p.enc_key_len) {
    p.ka = SecureBytes(p.skeyid_e.data(), p.enc_key_len);
  } else {
    SecureBytes k = crypto::prf(p.hash, bv(p.skeyid_e), {{&zero, 1}});
    SecureBytes ka = k.clone();
    while (ka.size() < p.enc_key_len) {
      k = crypto::prf(p.hash, bv(p.skeyid_e), {bv(k)});
      ka.append(k.span());
    }
    ka.resize(p.enc_key_len);
    p.ka = std::move(ka);
  }
  // IV = hash(g^xi | g^xr), truncated to the block size (Appendix B).
  Bytes iv = crypto::hash(p.hash, {p.gxi, p.gxr});
  p.iv.assign(iv.begin(), iv.begin() + kBlock);
  p.keys = true;
  return {};
}

// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)   (RFC 2409 §5)
Bytes IkeSa::hash_i(ByteView id_body) const {
  auto h = crypto::prf(p1_->hash, bv(p1_->skeyid),
                       {p1_->gxi, p1_->gxr, icookie_, rcookie_, p1_->sa_i_b, id_body});
  return Bytes(h.data(), h.data() + h.size());
}
// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
Bytes IkeSa::hash_r(ByteView id_body) const {
  auto h = crypto::prf(p1_->hash, bv(p1_->skeyid),
                       {p1_->gxr, p1_->gxi, rcookie_, icookie_, p1_->sa_i_b, id_body});
  return Bytes(h.data(), h.data() + h.size());
}

TaskStatus IkeSa::mm_process(const Message& m) {
  auto& p = *p1_;
  if (role_ == Role::kResponder && state_ == State::kInit) icookie_ = m.hdr.icookie;
  if (role_ == Role::kInitiator && state_ == State::kMm1Sent) rcookie_ = m.hdr.rcookie;
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kIdentityProtection);
  auto note_vids = [&] {
    for (const auto* v : m.find_all(PayloadType::kVendorId)) {
      if (v->body == kVidNatTRfc3947) peer_nat_t_ = true;
      if (v->body == kVidNatTDraft02) peer_nat_t_draft_ = true;
      if (v->body == kVidDpd) peer_dpd_ = true;
    }
  };
  auto take_ke_nonce = [&](Bytes& ke, Bytes& nonce) -> bool {
    const auto* k = m.find(PayloadType::kKe);
    const auto* n = m.find(PayloadType::kNonce);
    if (k == nullptr || n == nullptr) return false;
    ke = k->body;
    nonce = n->body;
    return crypto::dh_public_value_valid(cfg_->ike.group, ke);
  };
  auto fresh_dh_nonce = [&](Bytes& my_ke, Bytes& my_nonce) {
    auto kp = crypto::DhKeyPair::generate(cfg_->ike.group);
    if (!kp) std::abort();
    p.dh.emplace(std::move(*kp));
    my_ke = p.dh->public_value();
    my_nonce = crypto::random_bytes(kNonceLen);
  };

  switch (state_) {
    case State::kInit: {  // responder: MM1 = HDR, SA, VID* -> MM2 = HDR, SA, VID*
      const auto* sp = m.find(PayloadType::kSa);
      auto sa = sp ? parse_sa(sp->body) : Result<SaPayload>(make_error("missing"));
      if (!sa) {
        fail("MM1 without valid SA payload", notify::kPayloadMalformed);
        return TaskStatus::kFailed;
      }
      std::optional<Transform> chosen;
      std::uint8_t prop_num = 1;
      for (const auto& prop : sa->proposals) {
        if (prop.protocol != kProtoIsakmp) continue;
        for (const auto& t : prop.transforms) {
          if (auto life = ike_transform_matches(t, cfg_->ike)) {
            chosen = t;
            prop_num = prop.number;
            p.lifetime_s = std::min(*life, cfg_->ike.lifetime_s);
            break;
          }
        }
        if (chosen) break;
      }
      if (!chosen) {
        fail("no proposal chosen", notify::kNoProposalChosen);
        return TaskStatus::kFailed;
      }
      p.sa_i_b = sp->body;
      note_vids();
      SaPayload reply;
      Proposal prop;
      prop.number = prop_num;
      prop.protocol = kProtoIsakmp;
      prop.transforms.push_back(*chosen);
      reply.proposals.push_back(std::move(prop));
      PayloadChain c;
      c.add(PayloadType::kSa, build_sa(reply));
      if (peer_nat_t_) c.add(PayloadType::kVendorId, kVidNatTRfc3947);
      else if (peer_nat_t_draft_) c.add(PayloadType::kVendorId, kVidNatTDraft02);
      c.add(PayloadType::kVendorId, kVidDpd);
      log(LogLevel::kInfo, tag() + ": responding to main mode from " +
                               dp::format_ipv4(remote_.addr));
      state_ = State::kMm2Sent;
      send(build_message(h, c), false);
      return TaskStatus::kNeedMore;
    }
    case State::kMm1Sent: {  // initiator: MM2 -> MM3 = HDR, KE, Ni, NAT-D, NAT-D
      const auto* sp = m.find(PayloadType::kSa);
      auto sa = sp ? parse_sa(sp->body) : Result<SaPayload>(make_error("missing"));
      if (!sa || sa->proposals.size() != 1 || sa->proposals[0].transforms.size() != 1) {
        fail("MM2: responder SA must hold exactly one transform");
        return TaskStatus::kFailed;
      }
      auto life = ike_transform_matches(sa->proposals[0].transforms[0], cfg_->ike);
      if (!life) {
        fail("no proposal chosen");  // the responder chose something we did not offer
        return TaskStatus::kFailed;
      }
      p.lifetime_s = *life;
      note_vids();
      Bytes ke;
      fresh_dh_nonce(ke, p.ni);
      p.gxi = ke;
      PayloadChain c;
      c.add(PayloadType::kKe, ke);
      c.add(PayloadType::kNonce, p.ni);
      add_nat_d(c);
      state_ = State::kMm3Sent;
      send(build_message(h, c), true);
      return TaskStatus::kNeedMore;
    }
    case State::kMm2Sent: {  // responder: MM3 -> MM4 = HDR, KE, Nr, NAT-D, NAT-D
      if (!take_ke_nonce(p.gxi, p.ni)) {
        fail("MM3: missing or invalid KE/nonce", notify::kInvalidKeyInformation);
        return TaskStatus::kFailed;
      }
      check_nat_d(m);
      Bytes ke;
      fresh_dh_nonce(ke, p.nr);
      p.gxr = ke;
      if (auto r = derive_phase1_keys(); !r) {
        fail("MM3: " + r.error(), notify::kInvalidKeyInformation);
        return TaskStatus::kFailed;
      }
      PayloadChain c;
      c.add(PayloadType::kKe, ke);
      c.add(PayloadType::kNonce, p.nr);
      add_nat_d(c);
      state_ = State::kMm4Sent;
      send(build_message(h, c), false);
      return TaskStatus::kNeedMore;
    }
    case State::kMm3Sent: {  // initiator: MM4 -> MM5 = HDR*, IDii, HASH_I
      if (!take_ke_nonce(p.gxr, p.nr)) {
        fail("MM4: missing or invalid KE/nonce");
        return TaskStatus::kFailed;
      }
      check_nat_d(m);
      if (auto r = derive_phase1_keys(); !r) {
        fail("MM4: " + r.error());
        return TaskStatus::kFailed;
      }
      // RFC 3947 §4: with a NAT between us, float to port 4500 from MM5 on.
      if ((peer_nat_t_ || peer_nat_t_draft_) && nat_detected()) {
        local_.port = 4500;
        remote_.port = 4500;
      }
      Bytes id = build_id({kIdIpv4Addr, 0, 0, id_addr(cfg_->local_addr)});
      PayloadChain c;
      c.add(PayloadType::kId, id);
      c.add(PayloadType::kHash, hash_i(id));
      if (send_initial_contact_) {
        // RFC 2407 §4.6.3.3: protocol ISAKMP, SPI = CKY-I | CKY-R, no data.
        Bytes spi(icookie_.begin(), icookie_.end());
        spi.insert(spi.end(), rcookie_.begin(), rcookie_.end());
        c.add(PayloadType::kNotify,
              build_notify({1, kProtoIsakmp, notify::kInitialContact, spi, {}}));
      }
      state_ = State::kMm5Sent;
      send(seal(h, c, p.iv), true);
      return TaskStatus::kNeedMore;
    }
    case State::kMm4Sent: {  // responder: MM5 -> MM6 = HDR*, IDir, HASH_R
      const auto* id = m.find(PayloadType::kId);
      const auto* hp = m.find(PayloadType::kHash);
      if (id == nullptr || hp == nullptr || hp->body.size() != crypto::hash_len(p.hash) ||
          CRYPTO_memcmp(hp->body.data(), hash_i(id->body).data(), hp->body.size()) != 0) {
        fail("authentication failed", notify::kAuthenticationFailed);
        return TaskStatus::kFailed;
      }
      Bytes my_id = build_id({kIdIpv4Addr, 0, 0, id_addr(cfg_->local_addr)});
      PayloadChain c;
      c.add(PayloadType::kId, my_id);
      c.add(PayloadType::kHash, hash_r(my_id));
      for (const auto* np : m.find_all(PayloadType::kNotify))
        if (auto n = parse_notify(np->body); n && n->type == notify::kInitialContact)
          ic_received_ = true;
      send(seal(h, c, p.iv), false);
      p.last_p1_iv = p.iv;
      state_ = State::kPhase1Done;
      p1_started_lifetime();
      log(LogLevel::kInfo, tag() + ": ISAKMP SA established (responder), lifetime " +
                               std::to_string(p.lifetime_s) + "s");
      return TaskStatus::kSuccess;
    }
    case State::kMm5Sent: {  // initiator: MM6, verify HASH_R
      const auto* id = m.find(PayloadType::kId);
      const auto* hp = m.find(PayloadType::kHash);
      if (id == nullptr || hp == nullptr || hp->body.size() != crypto::hash_len(p.hash) ||
          CRYPTO_memcmp(hp->body.data(), hash_r(id->body).data(), hp->body.size()) != 0) {
        fail("authentication failed");
        return TaskStatus::kFailed;
      }
      waiting_ = false;
      p.last_p1_iv = p.iv;
      state_ = State::kPhase1Done;
      p1_started_lifetime();
      log(LogLevel::kInfo, tag() + ": ISAKMP SA established (initiator), lifetime " +
                               std::to_string(p.lifetime_s) + "s");
      return TaskStatus::kSuccess;
    }
    default:
      return TaskStatus::kNeedMore;  // late retransmission of a phase-1 message: ignore
  }
}

// ---- Quick Mode (RFC 2409 §5.5) ----

// Per-exchange IV = hash(last phase-1 CBC output block | M-ID), truncated (Appendix B).
Bytes IkeSa::qm_iv(std::uint32_t mid) const {
  Bytes iv = crypto::hash(p1_->hash, {p1_->last_p1_iv, be32(mid)});
  iv.resize(kBlock);
  return iv;
}

// UDP-Encapsulated-Tunnel: RFC 3947 value 3, or 61443 with the draft NAT-T VID.
std::uint16_t IkeSa::encap_mode() const {
  if (!nat_detected() || !(peer_nat_t_ || peer_nat_t_draft_)) return ipa::kTunnel;
  return peer_nat_t_ ? ipa::kUdpTunnelRfc : ipa::kUdpTunnelDraft;
}

namespace {
Transform esp_transform(const IpsecPolicy& p, std::uint16_t encap, std::uint32_t lifetime) {
  Transform t;
  t.number = 1;
  t.id = ipa::kEspAes;
  t.attrs = {Attribute::basic(ipa::kLifeType, ipa::kSeconds),
             Attribute::integer(ipa::kLifeDuration, lifetime),
             Attribute::basic(ipa::kGroup, static_cast<std::uint16_t>(p.pfs)),
             Attribute::basic(ipa::kEncap, encap),
             Attribute::basic(ipa::kAuth, p.integ == crypto::IntegAlg::kHmacSha1_96
                                              ? ipa::kHmacSha
                                              : ipa::kHmacSha256),
             Attribute::basic(ipa::kKeyLength, key_bits(p.cipher))};
  return t;
}

std::optional<std::uint32_t> esp_transform_matches(const Transform& t, const IpsecPolicy& p,
                                                   std::uint16_t encap) {
  if (t.id != ipa::kEspAes) return std::nullopt;
  if (attr_int(t, ipa::kKeyLength, 128) != key_bits(p.cipher)) return std::nullopt;
  const std::uint16_t auth =
      p.integ == crypto::IntegAlg::kHmacSha1_96 ? ipa::kHmacSha : ipa::kHmacSha256;
  if (attr_int(t, ipa::kAuth, 0) != auth) return std::nullopt;
  if (attr_int(t, ipa::kGroup, 0) != static_cast<std::uint16_t>(p.pfs)) return std::nullopt;
  if (attr_int(t, ipa::kEncap, ipa::kTunnel) != encap) return std::nullopt;
  std::uint64_t life = p.lifetime_s;
  if (attr_int(t, ipa::kLifeType, ipa::kSeconds) == ipa::kSeconds)
    life = attr_int(t, ipa::kLifeDuration, p.lifetime_s);
  if (life == 0 || life > 0xffffffffULL) return std::nullopt;
  return static_cast<std::uint32_t>(life);
}

Bytes concat_wire(const Message& m, std::size_t from) {
  Bytes out;
  for (std::size_t i = from; i < m.payloads.size(); ++i)
    out.insert(out.end(), m.payloads[i].wire.begin(), m.payloads[i].wire.end());
  return out;
}
}  // namespace

void IkeSa::qm_start() {
  std::uint32_t new_mid = 0;
  while (new_mid == 0 || qms_.count(new_mid) != 0) new_mid = get32(crypto::random_bytes(4).data());
  auto& q = *qms_.emplace(new_mid, std::make_unique<Quick>()).first->second;
  q.mid = new_mid;
  q.initiator = true;
  q.started = ctx_.clock->now();
  q.iv = qm_iv(q.mid);
  auto spi = ctx_.installer->allocate_spi();
  if (!spi) {
    q.stage = Quick::Stage::kDone;
    if (child_) {
      log(LogLevel::kWarn, tag() + ": rekey: SPI allocation failed: " + spi.error());
      return;
    }
    fail("SPI allocation failed: " + spi.error());
    return;
  }
  q.spi_in = *spi;
  q.spi_reserved = true;
  q.ni = crypto::random_bytes(kNonceLen);
  auto kp = crypto::DhKeyPair::generate(cfg_->ipsec.pfs);
  if (!kp) std::abort();
  q.dh.emplace(std::move(*kp));
  SaPayload sa;
  Proposal prop;
  prop.protocol = kProtoEsp;
  prop.spi = be32(q.spi_in);
  prop.transforms.push_back(esp_transform(cfg_->ipsec, encap_mode(), cfg_->ipsec.lifetime_s));
  sa.proposals.push_back(std::move(prop));
  PayloadChain rest;
  rest.add(PayloadType::kSa, build_sa(sa));
  rest.add(PayloadType::kNonce, q.ni);
  rest.add(PayloadType::kKe, q.dh->public_value());
  rest.add(PayloadType::kId, build_id({kIdIpv4AddrSubnet, 0, 0, id_subnet(cfg_->local_subnet)}));
  rest.add(PayloadType::kId, build_id({kIdIpv4AddrSubnet, 0, 0, id_subnet(cfg_->peer_subnet)}));
  // HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])
  Bytes rest_wire = rest.serialize();
  SecureBytes h1 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(q.mid), rest_wire});
  PayloadChain c;
  c.add(PayloadType::kHash, h1.span());
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kQuickMode);
  h.message_id = q.mid;
  // The full chain is HASH followed by `rest`; rebuild it as one chain.
  auto parsed = parse_payloads(rest.first(), rest_wire, false);
  for (const auto& pl : *parsed) c.add(pl.type, pl.body);
  q.stage = Quick::Stage::kQm1Sent;
  if (child_) {
    rekey_mid_ = q.mid;
  } else {
    state_ = State::kQm1Sent;
  }
  log(LogLevel::kInfo, tag() + ": quick mode " + (child_ ? "(rekey) " : "") + "initiated, mid " +
                           hex(be32(q.mid)) + ", SPI in " + hex(be32(q.spi_in)));
  send(seal(h, c, q.iv), true);
  q.last_sent = last_out_;
}

// KEYMAT = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b), expanded as
// K1 | K2 | ... with Kn+1 = prf(SKEYID_d, Kn | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
// (RFC 2409 §5.5). Encryption key first, then the authentication key (RFC 2407 §4.5).
namespace {
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
}  // namespace

Result<void> IkeSa::qm_install(Quick& q, dp::Direction dir) {
  const auto& ip = cfg_->ipsec;
  const std::size_t ek = crypto::cipher_key_len(ip.cipher), ak = crypto::integ_key_len(ip.integ);
  const bool encap = encap_mode() != ipa::kTunnel;
  auto make = [&](dp::Direction dir, std::uint32_t spi) {
    SecureBytes km = keymat(p1_->hash, p1_->skeyid_d, q.gxy, spi, q.ni, q.nr, ek + ak);
    dp::SaSpec s;
    s.dir = dir;
    s.spi = spi;
    s.conn_id = cfg_->id;
    s.cipher = ip.cipher;
    s.integ = ip.integ;
    s.enc_key = SecureBytes(km.data(), ek);
    s.auth_key = SecureBytes(km.data() + ek, ak);
    s.local_addr = cfg_->local_addr;
    s.peer_addr = remote_.addr;
    s.udp_encap = encap;
    s.local_port = local_.port;
    s.peer_port = remote_.port;
    s.local_subnet = cfg_->local_subnet;
    s.peer_subnet = cfg_->peer_subnet;
    s.mtu = cfg_->mtu;
    return s;
  };
  // Inbound first, then outbound (which points the policy at it, replacing the SA it held:
  // make-before-break).
  if (dir == dp::Direction::kInbound) {
    if (auto r = ctx_.installer->add_sa(make(dp::Direction::kInbound, q.spi_in)); !r)
      return make_error("inbound SA install failed: " + r.error());
    q.spi_reserved = false;
    q.in_installed = true;
    return {};
  }
  if (auto r = ctx_.installer->add_sa(make(dp::Direction::kOutbound, q.spi_out)); !r) {
    (void)ctx_.installer->del_sa(dp::Direction::kInbound, q.spi_in);
    q.in_installed = false;
    return make_error("outbound SA install failed: " + r.error());
  }
  (void)encap;
  return {};
}

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
         retire_at_ == Millis::max() && now >= p1_soft_;
}

void IkeSa::retire_at(Millis at) {
  if (at < retire_at_) retire_at_ = at;
}

std::vector<std::uint32_t> IkeSa::retiring_inbound_spis() const {
  std::vector<std::uint32_t> v;
  for (const auto& r : retiring_) v.push_back(r.spi_in);
  return v;
}

// The CHILD SA negotiated by `q` is now fully installed: it becomes the current one; a
// replaced one keeps its inbound SA for kRekeyGrace (the outbound one was re-pointed).
void IkeSa::child_activate(Quick& q) {
  const Millis now = ctx_.clock->now();
  const bool encap = encap_mode() != ipa::kTunnel;
  if (child_) {
    retiring_.push_back({child_->spi_in, child_->spi_out, now + kRekeyGrace});
    log(LogLevel::kInfo, tag() + ": CHILD SA rekeyed, old SPI in " + hex(be32(child_->spi_in)) +
                             " out " + hex(be32(child_->spi_out)) + " retired in " +
                             std::to_string(kRekeyGrace.count()) + "ms");
  }
  child_ = ChildSaInfo{q.spi_in, q.spi_out, encap, remote_.port, q.lifetime_s};
  child_installed_ = now;
  child_soft_ = soft_expiry(now, q.lifetime_s, q.initiator);
  child_hard_ = now + Millis(std::uint64_t{q.lifetime_s} * 1000);
  if (rekey_mid_ == q.mid) rekey_mid_ = 0;
  q.stage = Quick::Stage::kDone;
  q.dh.reset();
  q.gxy = SecureBytes();
  state_ = State::kActive;
  last_alive_ = now;
  last_in_packets_ = 0;
  log(LogLevel::kInfo, tag() + ": CHILD SA installed, SPI in " + hex(be32(q.spi_in)) + " out " +
                           hex(be32(q.spi_out)) + (encap ? " (UDP-encapsulated)" : "") +
                           ", lifetime " + std::to_string(q.lifetime_s) + "s");
}

void IkeSa::rekey_child() {
  if (!p1_established_ || state_ == State::kFailed || done_ || rekey_mid_ != 0 || !child_ ||
      retire_at_ != Millis::max())
    return;
  qm_start();
}

// Deletes one CHILD SA pair; the outbound one only while it still holds the policy (after a
// rekey the data plane already replaced it).
void IkeSa::delete_child(std::uint32_t spi_in, std::uint32_t spi_out, bool notify_peer,
                         bool del_outbound) {
  if (notify_peer) {
    // RFC 2408 §3.15: the SPI we receive with, which the peer sends to.
    send_informational(PayloadType::kDelete, build_delete({1, kProtoEsp, 4, {be32(spi_in)}}));
  }
  if (del_outbound) (void)ctx_.installer->del_sa(dp::Direction::kOutbound, spi_out);
  (void)ctx_.installer->del_sa(dp::Direction::kInbound, spi_in);
}

void IkeSa::send_esp_delete(std::uint32_t spi_in) {
  send_informational(PayloadType::kDelete, build_delete({1, kProtoEsp, 4, {be32(spi_in)}}));
}

std::vector<std::uint32_t> IkeSa::inbound_spis() const {
  std::vector<std::uint32_t> v = retiring_inbound_spis();
  if (child_) v.push_back(child_->spi_in);
  return v;
}

void IkeSa::child_tick(Millis now) {
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if (now >= it->at) {
      log(LogLevel::kInfo, tag() + ": deleting replaced CHILD SA, SPI in " + hex(be32(it->spi_in)));
      delete_child(it->spi_in, it->spi_out, true, false);
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
  if (!child_ || replaced_ || retire_at_ != Millis::max()) return;
  if (now >= child_hard_) {
    log(LogLevel::kWarn, tag() + ": CHILD SA hard lifetime expired, SPI in " +
                             hex(be32(child_->spi_in)));
    delete_child(child_->spi_in, child_->spi_out, true, true);
    child_.reset();
    state_ = State::kPhase1Done;
    return;
  }
  if (rekey_mid_ != 0) {
    // Our rekey got no answer in time (its retransmissions may also have been displaced by a
    // peer's exchange on the same SA): abandon it; the next soft-expiry check starts another.
    auto it = qms_.find(rekey_mid_);
    if (it == qms_.end() || now - it->second->started >= kRekeyAbandonAfter) {
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
  }
  if (now >= child_soft_ && rekey_mid_ == 0) {
    log(LogLevel::kInfo, tag() + ": CHILD SA soft lifetime reached: rekeying");
    rekey_child();
  }
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

TaskStatus IkeSa::qm_process(Quick& q, const Message& m) {
  const auto& ip = cfg_->ipsec;
  Header h;
  h.icookie = icookie_;
  h.rcookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kQuickMode);
  h.message_id = q.mid;
  const Bytes mid = be32(q.mid);
  auto hash_ok = [&](const SecureBytes& expect) {
    const bool ok = !m.payloads.empty() && m.payloads[0].type == PayloadType::kHash &&
                    m.payloads[0].body.size() == expect.size() &&
                    CRYPTO_memcmp(m.payloads[0].body.data(), expect.data(), expect.size()) == 0;
    authenticated_in_ |= ok;
    return ok;
  };
  // A message whose HASH does not verify is not the peer's (forged, corrupted): dropped as if
  // never received, no notify to its unauthenticated source; the exchange goes on (our
  // retransmission or the peer's brings the real one). handle() undoes its IV step.
  auto hash_mismatch = [&](const char* which) {
    log(LogLevel::kWarn, tag() + ": " + which + " with bad HASH dropped");
    return TaskStatus::kNeedMore;
  };
  auto qfail = [&](const std::string& why, std::uint16_t n) {
    log(LogLevel::kWarn, tag() + ": quick mode failed: " + why);
    if (n != 0) send_informational(PayloadType::kNotify, build_notify({1, kProtoEsp, n, {}, {}}));
    if (!child_) {
      fail(why);
      return TaskStatus::kFailed;
    }
    // A failed rekey leaves the current CHILD SA in place (retried at the next soft expiry
    // check, at the latest until the hard lifetime); the ISAKMP SA stays up.
    if (q.spi_reserved) ctx_.installer->release_spi(q.spi_in);
    q.spi_reserved = false;
    if (q.in_installed) (void)ctx_.installer->del_sa(dp::Direction::kInbound, q.spi_in);
    q.in_installed = false;
    q.stage = Quick::Stage::kDone;
    if (rekey_mid_ == q.mid) {
      rekey_mid_ = 0;
      child_soft_ = ctx_.clock->now() + kRetransmitBase * 5;
    }
    waiting_ = false;
    return TaskStatus::kFailed;
  };
  // The SA, nonce, KE and IDs of a QM1/QM2.
  auto parse_body = [&](SaPayload& sa, Bytes& nonce, Bytes& ke,
                        std::vector<IdPayload>& ids) -> bool {
    const auto* sp = m.find(PayloadType::kSa);
    const auto* np = m.find(PayloadType::kNonce);
    const auto* kp = m.find(PayloadType::kKe);
    if (sp == nullptr || np == nullptr || kp == nullptr) return false;
    auto s = parse_sa(sp->body);
    if (!s) return false;
    sa = std::move(*s);
    nonce = np->body;
    ke = kp->body;
    for (const auto* idp : m.find_all(PayloadType::kId)) ids.push_back(parse_id(idp->body).value());
    return true;
  };
  const auto sel_ok = [](const IdPayload& id, const dp::Ipv4Prefix& p) {
    return id.id_type == kIdIpv4AddrSubnet && id.data == id_subnet(p);
  };

  if (!q.initiator && q.stage == Quick::Stage::kNew) {
    // QM1 -> QM2 = HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr]
    if (!hash_ok(crypto::prf(p1_->hash, bv(p1_->skeyid_a), {mid, concat_wire(m, 1)})))
      return hash_mismatch("QM1");
    SaPayload sa;
    Bytes ke;
    std::vector<IdPayload> ids;
    if (!parse_body(sa, q.ni, ke, ids)) return qfail("QM1: missing SA/nonce/KE", notify::kPayloadMalformed);
    if (ids.size() != 2 || !sel_ok(ids[0], cfg_->peer_subnet) || !sel_ok(ids[1], cfg_->local_subnet))
      return qfail("QM1: traffic selectors do not match the connection's subnets",
                   notify::kInvalidIdInformation);
    std::optional<Transform> chosen;
    std::uint8_t prop_num = 1;
    for (const auto& prop : sa.proposals) {
      if (prop.protocol != kProtoEsp || prop.spi.size() != 4) continue;
      for (const auto& t : prop.transforms) {
        if (auto life = esp_transform_matches(t, ip, encap_mode())) {
          chosen = t;
          prop_num = prop.number;
          q.spi_out = get32(prop.spi.data());
          q.lifetime_s = std::min(*life, ip.lifetime_s);
          break;
        }
      }
      if (chosen) break;
    }
    if (!chosen) return qfail("no proposal chosen", notify::kNoProposalChosen);
    auto kp = crypto::DhKeyPair::generate(ip.pfs);
    if (!kp) std::abort();
    q.dh.emplace(std::move(*kp));
    auto gxy = q.dh->shared_secret(ke);
    if (!gxy) return qfail("QM1: " + gxy.error(), notify::kInvalidKeyInformation);
    q.gxy = std::move(*gxy);
    auto spi = ctx_.installer->allocate_spi();
    if (!spi) return qfail("SPI allocation failed: " + spi.error(), notify::kNoProposalChosen);
    q.spi_in = *spi;
    q.spi_reserved = true;
    q.nr = crypto::random_bytes(kNonceLen);
    SaPayload reply;
    Proposal prop;
    prop.number = prop_num;
    prop.protocol = kProtoEsp;
    prop.spi = be32(q.spi_in);
    prop.transforms.push_back(*chosen);
    reply.proposals.push_back(std::move(prop));
    PayloadChain rest;
    rest.add(PayloadType::kSa, build_sa(reply));
    rest.add(PayloadType::kNonce, q.nr);
    rest.add(PayloadType::kKe, q.dh->public_value());
    rest.add(PayloadType::kId, build_id(ids[0]));
    rest.add(PayloadType::kId, build_id(ids[1]));
    if (q.lifetime_s < attr_int(*chosen, ipa::kLifeDuration, ip.lifetime_s)) {
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
    PayloadChain c;
    c.add(PayloadType::kHash, h2.span());
    auto parsed = parse_payloads(rest.first(), rest_wire, false);
    for (const auto& pl : parsed.value()) c.add(pl.type, pl.body);
    // Our new inbound SA exists before the initiator can send on it (it switches its outbound
    // SA when QM2 arrives); ours is switched when HASH(3) arrives.
    if (auto r = qm_install(q, dp::Direction::kInbound); !r) return qfail(r.error(), 0);
    q.stage = Quick::Stage::kQm2Sent;
    if (!child_) state_ = State::kQm2Sent;
    log(LogLevel::kInfo, tag() + ": quick mode response, mid " + hex(mid) + ", SPI in " +
                             hex(be32(q.spi_in)) + " out " + hex(be32(q.spi_out)));
    send(seal(h, c, q.iv), true);  // retransmitted until HASH(3) arrives
    return TaskStatus::kNeedMore;
  }

  if (q.initiator && q.stage == Quick::Stage::kQm1Sent) {
    // QM2 -> QM3 = HDR*, HASH(3)
    if (!hash_ok(crypto::prf(p1_->hash, bv(p1_->skeyid_a), {mid, q.ni, concat_wire(m, 1)})))
      return hash_mismatch("QM2");
    SaPayload sa;
    Bytes ke;
    std::vector<IdPayload> ids;
    if (!parse_body(sa, q.nr, ke, ids)) return qfail("QM2: missing SA/nonce/KE", notify::kPayloadMalformed);
    if (sa.proposals.size() != 1 || sa.proposals[0].spi.size() != 4 ||
        sa.proposals[0].transforms.size() != 1)
      return qfail("QM2: responder SA must hold one proposal with one transform", notify::kPayloadMalformed);
    auto life = esp_transform_matches(sa.proposals[0].transforms[0], ip, encap_mode());
    if (!life) return qfail("no proposal chosen", 0);
    q.spi_out = get32(sa.proposals[0].spi.data());
    q.lifetime_s = *life;
    for (const auto* np : m.find_all(PayloadType::kNotify)) {
      auto n = parse_notify(np->body);
      if (!n || n->type != notify::kResponderLifetime) continue;
      auto attrs = parse_attributes(n->data);
      if (!attrs) continue;
      for (const auto& a : *attrs)
        if (a.type == ipa::kLifeDuration && a.as_int() && *a.as_int() > 0 &&
            *a.as_int() < q.lifetime_s)
          q.lifetime_s = static_cast<std::uint32_t>(*a.as_int());
    }
    auto gxy = q.dh->shared_secret(ke);
    if (!gxy) return qfail("QM2: " + gxy.error(), notify::kInvalidKeyInformation);
    q.gxy = std::move(*gxy);
    // HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)
    const std::uint8_t zero = 0;
    SecureBytes h3 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {{&zero, 1}, mid, q.ni, q.nr});
    if (auto r = qm_install(q, dp::Direction::kInbound); !r) return qfail(r.error(), 0);
    if (auto r = qm_install(q, dp::Direction::kOutbound); !r) return qfail(r.error(), 0);
    PayloadChain c;
    c.add(PayloadType::kHash, h3.span());
    send(seal(h, c, q.iv), false);
    child_activate(q);
    return TaskStatus::kSuccess;
  }

  if (!q.initiator && q.stage == Quick::Stage::kQm2Sent) {
    const std::uint8_t zero = 0;
    if (!hash_ok(crypto::prf(p1_->hash, bv(p1_->skeyid_a), {{&zero, 1}, mid, q.ni, q.nr})))
      return hash_mismatch("QM3");
    waiting_ = false;
    if (auto r = qm_install(q, dp::Direction::kOutbound); !r) return qfail(r.error(), 0);
    child_activate(q);
    return TaskStatus::kSuccess;
  }
  return TaskStatus::kNeedMore;
}

// ---- Informational (RFC 2409 §5.7, RFC 2408 §3.14/3.15) ----

void IkeSa::informational(const Message& m) {
  const bool protected_msg = (m.hdr.flags & kFlagEncryption) != 0;
  if (protected_msg) {
    Bytes rest = concat_wire(m, 1);
    SecureBytes h1 = crypto::prf(p1_->hash, bv(p1_->skeyid_a), {be32(m.hdr.message_id), rest});
    if (m.payloads.empty() || m.payloads[0].type != PayloadType::kHash ||
        m.payloads[0].body.size() != h1.size() ||
        CRYPTO_memcmp(m.payloads[0].body.data(), h1.data(), h1.size()) != 0) {
      log(LogLevel::kWarn, tag() + ": informational with bad HASH dropped");
      return;
    }
    // The HASH covers the message id but nothing orders informationals: a copy of an old one
    // verifies too. Each exchange has a fresh random id, so a repeated one is a replay.
    if (peer_mid_seen(m.hdr.message_id)) {
      log(LogLevel::kWarn, tag() + ": replayed informational dropped");
      return;
    }
    note_peer_mid(m.hdr.message_id);
    last_alive_ = ctx_.clock->now();  // an authenticated message: the peer is alive
    authenticated_in_ = true;
  }
  for (const auto& pl : m.payloads) {
    if (pl.type == PayloadType::kNotify) {
      auto n = parse_notify(pl.body);
      if (!n) continue;
      if (n->type == notify::kRUThere || n->type == notify::kRUThereAck) {
        // RFC 3706 §5: only accepted protected, within an established ISAKMP SA.
        if (protected_msg) dpd_notify(*n);
        continue;
      }
      log(LogLevel::kInfo, tag() + ": notify " + std::to_string(n->type) +
                               (protected_msg ? "" : " (unprotected)"));
      if (n->type >= 16384) continue;  // status notifications
      // Error notifications: before phase 1 completes they cannot be protected (RFC 2408
      // §5); accept them only then, and only protected ones afterwards.
      const bool in_phase1 = state_ < State::kPhase1Done;
      if (!protected_msg && !in_phase1) continue;
      std::string reason = n->type == notify::kNoProposalChosen     ? "no proposal chosen"
                           : n->type == notify::kAuthenticationFailed ? "authentication failed"
                           : n->type == notify::kPayloadMalformed     ? "payload malformed"
                           : n->type == notify::kInvalidIdInformation ? "invalid ID information"
                                                                      : "peer sent error notify " + std::to_string(n->type);
      if (in_phase1 || state_ == State::kQm1Sent || state_ == State::kQm2Sent) fail(reason);
    } else if (pl.type == PayloadType::kDelete && protected_msg) {
      auto d = parse_delete(pl.body);
      if (!d) continue;
      if (d->protocol == kProtoIsakmp) {
        const bool ours = std::any_of(d->spis.begin(), d->spis.end(), [&](const Bytes& spi) {
          return spi.size() == 16 && std::equal(icookie_.begin(), icookie_.end(), spi.begin()) &&
                 std::equal(rcookie_.begin(), rcookie_.end(), spi.begin() + 8);
        });
        if (!ours) continue;
        log(LogLevel::kInfo, tag() + ": peer deleted the ISAKMP SA");
        teardown(false);
        fail("deleted by peer");
        return;
      }
      if (d->protocol != kProtoEsp) continue;
      // RFC 2408 §3.15: the SPIs are the peer's inbound ones, i.e. our outbound SPIs.
      for (const auto& spi_b : d->spis) {
        if (spi_b.size() != 4) continue;
        const std::uint32_t spi = get32(spi_b.data());
        if (!peer_deleted_esp(spi)) foreign_esp_deletes_.push_back(spi);
        if (state_ == State::kFailed) return;
      }
    }
  }
}

bool IkeSa::peer_deleted_esp(std::uint32_t spi_out) {
  auto r = std::find_if(retiring_.begin(), retiring_.end(),
                        [&](const Retiring& x) { return x.spi_out == spi_out; });
  if (r != retiring_.end()) {
    log(LogLevel::kInfo, tag() + ": peer deleted replaced CHILD SA, SPI out " + hex(be32(spi_out)));
    delete_child(r->spi_in, r->spi_out, false, false);
    retiring_.erase(r);
    return true;
  }
  if (child_ && child_->spi_out == spi_out) {
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

// ---- Dead peer detection (RFC 3706) ----

// R-U-THERE / R-U-THERE-ACK: a Notify with protocol ISAKMP, SPI = CKY-I | CKY-R and a 32-bit
// sequence number as data (RFC 3706 §5.1, §7), sent in a protected informational exchange.
void IkeSa::send_dpd(std::uint16_t type, std::uint32_t seq) {
  Bytes spi(icookie_.begin(), icookie_.end());
  spi.insert(spi.end(), rcookie_.begin(), rcookie_.end());
  send_informational(PayloadType::kNotify, build_notify({1, kProtoIsakmp, type, spi, be32(seq)}));
}

void IkeSa::dpd_notify(const NotifyPayload& n) {
  if (state_ < State::kPhase1Done || n.data.size() != 4) return;
  if (n.spi.size() == 16 && (!std::equal(icookie_.begin(), icookie_.end(), n.spi.begin()) ||
                             !std::equal(rcookie_.begin(), rcookie_.end(), n.spi.begin() + 8))) {
    log(LogLevel::kWarn, tag() + ": DPD notify for other cookies ignored");
    return;
  }
  const std::uint32_t seq = get32(n.data.data());
  if (n.type == notify::kRUThere) {
    send_dpd(notify::kRUThereAck, seq);  // §5.1: echo the sequence number
    return;
  }
  // §7: an ACK must carry the sequence number of an R-U-THERE we sent and have not seen
  // acknowledged; others are stale or forged.
  if (dpd_outstanding_ && seq - dpd_first_seq_ <= dpd_seq_ - dpd_first_seq_) {
    dpd_outstanding_ = false;
  } else {
    log(LogLevel::kDebug, tag() + ": unexpected R-U-THERE-ACK seq " + std::to_string(seq));
  }
}

void IkeSa::dpd_tick(Millis now) {
  if (state_ != State::kActive || !peer_dpd_ || !child_) return;
  // Inbound ESP proves liveness as well as IKE does (§5.3: only query an idle peer).
  if (ctx_.installer != nullptr) {
    if (auto c = ctx_.installer->query_sa(dp::Direction::kInbound, child_->spi_in);
        c && c->packets != last_in_packets_) {
      last_in_packets_ = c->packets;
      last_alive_ = now;
      dpd_outstanding_ = false;
    }
  }
  const Millis interval{std::chrono::seconds(cfg_->dpd.interval_s)};
  const Millis timeout{std::chrono::seconds(cfg_->dpd.timeout_s)};
  if (dpd_outstanding_) {
    if (now - dpd_first_sent_ >= timeout) {
      log(LogLevel::kWarn, tag() + ": dead peer detected: no R-U-THERE-ACK within " +
                               std::to_string(cfg_->dpd.timeout_s) + "s (DPD action " +
                               (cfg_->dpd.action == DpdAction::kRestart ? "restart" : "hold") + ")");
      dpd_dead_ = true;
      teardown(false);
      fail("dead peer detected (DPD)");
      return;
    }
    if (now >= dpd_next_) {
      send_dpd(notify::kRUThere, ++dpd_seq_);
      dpd_next_ = now + interval;
    }
    return;
  }
  if (now - last_alive_ < interval) return;
  if (dpd_seq_ == 0) {
    while (dpd_seq_ == 0) dpd_seq_ = get32(crypto::random_bytes(4).data()) & 0x7fffffffU;
  } else {
    ++dpd_seq_;
  }
  dpd_first_seq_ = dpd_seq_;
  dpd_outstanding_ = true;
  dpd_first_sent_ = now;
  dpd_next_ = now + interval;
  log(LogLevel::kDebug, tag() + ": DPD R-U-THERE seq " + std::to_string(dpd_seq_));
  send_dpd(notify::kRUThere, dpd_seq_);
}

void IkeSa::teardown(bool notify_peer) {
  for (const auto& r : retiring_) delete_child(r.spi_in, r.spi_out, notify_peer, false);
  retiring_.clear();
  for (auto& [mid, q] : qms_) {  // a Quick Mode in flight may have added its inbound SA
    if (q->in_installed && q->stage != Quick::Stage::kDone)
      (void)ctx_.installer->del_sa(dp::Direction::kInbound, q->spi_in);
    q->in_installed = false;
  }
  if (child_) {
    delete_child(child_->spi_in, child_->spi_out, notify_peer, true);
    child_.reset();
  }
  if (notify_peer && p1_->keys && !p1_->last_p1_iv.empty()) {
    Bytes spi(icookie_.begin(), icookie_.end());
    spi.insert(spi.end(), rcookie_.begin(), rcookie_.end());
    send_informational(PayloadType::kDelete, build_delete({1, kProtoIsakmp, 16, {spi}}));
  }
}

}  // namespace ipsecgw::ike
