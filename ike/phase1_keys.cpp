// Phase-1 key material and the hashes built from it: SKEYID and its derivatives (RFC 2409 §5),
// Ka and the CBC IVs (Appendix B), HASH_I / HASH_R, NAT-D (RFC 3947 §3.2).
#include <algorithm>

#include "ike/ike_sa_internal.hpp"

namespace ipsecgw::ike {

using crypto::SecureBytes;

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
  // g^xy and our DH private key are not needed again: wiped now (SecureBytes, OpenSSL frees
  // and clears the key). SKEYID goes once HASH_I/HASH_R are done (wipe_phase1_secrets).
  p.gxy = SecureBytes();
  p.dh.reset();
  return {};
}

void IkeSa::wipe_phase1_secrets() {
  p1_->dh.reset();
  p1_->gxy = SecureBytes();
  p1_->skeyid = SecureBytes();
}

bool IkeSa::holds_phase1_secrets() const {
  return p1_->dh.has_value() || !p1_->gxy.empty() || !p1_->skeyid.empty();
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

// Per-exchange IV = hash(last phase-1 CBC output block | M-ID), truncated (Appendix B).
// Quick Mode and informational exchanges start from it.
Bytes IkeSa::qm_iv(std::uint32_t mid) const {
  Bytes iv = crypto::hash(p1_->hash, {p1_->last_p1_iv, be32(mid)});
  iv.resize(kBlock);
  return iv;
}

// The SPI that names the ISAKMP SA in a notify or delete: CKY-I | CKY-R (RFC 2408 §3.14,
// §3.15; RFC 2407 §4.6.3.3; RFC 3706 §7).
Bytes IkeSa::cookie_spi() const {
  Bytes spi(icookie_.begin(), icookie_.end());
  spi.insert(spi.end(), rcookie_.begin(), rcookie_.end());
  return spi;
}

bool IkeSa::is_our_cookie_spi(ByteView spi) const {
  return spi.size() == 16 && std::equal(icookie_.begin(), icookie_.end(), spi.begin()) &&
         std::equal(rcookie_.begin(), rcookie_.end(), spi.begin() + 8);
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

}  // namespace ipsecgw::ike
