// Private to ike/: what the IkeSa task files (ike_sa.cpp, main_mode.cpp, quick_mode.cpp,
// informational.cpp, dpd.cpp, phase1_keys.cpp, child_sa.cpp) share. Not for app/ or tests.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "crypto/ike_crypto.hpp"
#include "ike/ike_sa.hpp"
#include "ike/isakmp.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike {

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

// ---- state shared by the tasks ----

struct IkeSa::Phase1 {
  crypto::HashAlg hash = crypto::HashAlg::kSha1;
  std::size_t enc_key_len = 16;
  std::uint32_t lifetime_s = 0;
  Bytes sa_i_b;  // the initiator's SA payload body (RFC 2409 §5: SAi_b)
  std::optional<crypto::DhKeyPair> dh;
  Bytes gxi, gxr, ni, nr;
  crypto::SecureBytes gxy, skeyid, skeyid_d, skeyid_a, skeyid_e, ka;
  Bytes iv;          // phase-1 CBC chain (Appendix B)
  Bytes last_p1_iv;  // last phase-1 CBC output block, seeds QM/informational IVs
  bool keys = false;
};

struct IkeSa::Quick {
  // kOutPending: our rekey sent QM3 and holds its outbound SA until the peer is seen using
  // the new pair (or kOutboundSwitchDelay passed).
  enum class Stage : std::uint8_t { kNew, kQm1Sent, kQm2Sent, kOutPending, kDone } stage =
      Stage::kNew;
  bool initiator = false;
  std::uint32_t trap = 0;  // the slot (responder: known once QM1's IDs are matched)
  bool in_installed = false;  // responder: inbound SA added when QM2 went out
  Millis started{0};
  Millis switch_by{0};  // kOutPending: the outbound SA is installed by then at the latest
  std::uint32_t mid = 0;
  Bytes iv;
  std::uint32_t spi_in = 0, spi_out = 0;
  Bytes ni, nr;
  Bytes last_sent;  // our last message of this exchange
  std::optional<crypto::DhKeyPair> dh;
  crypto::SecureBytes gxy;
  std::uint32_t lifetime_s = 0;
  bool spi_reserved = false;
};

// ---- small helpers ----

inline std::uint16_t key_bits(crypto::CipherAlg c) {
  return static_cast<std::uint16_t>(crypto::cipher_key_len(c) * 8);
}

inline ByteView bv(const crypto::SecureBytes& s) { return s.span(); }

inline Bytes be32(std::uint32_t v) {
  Bytes b;
  put32(b, v);
  return b;
}

// A non-zero random 32-bit value (message ids).
std::uint32_t random_nonzero32();

std::uint64_t attr_int(const Transform& t, std::uint16_t type, std::uint64_t dflt);

// The lifetime (seconds) a transform offers: its Life Duration when its Life Type is seconds
// (`type_attr`, `duration_attr` are the DOI's attribute numbers), else `dflt`; nullopt for 0
// or a value over 32 bits.
std::optional<std::uint32_t> offered_lifetime(const Transform& t, std::uint16_t type_attr,
                                              std::uint16_t duration_attr, std::uint32_t dflt);

// Responder's choice (RFC 2408 §4.2): the first transform, in the initiator's order, of a
// proposal `usable` accepts that `match` accepts; `match` returns its lifetime (seconds).
struct ProposalChoice {
  const Proposal* proposal = nullptr;
  const Transform* transform = nullptr;
  std::uint32_t lifetime_s = 0;
};
std::optional<ProposalChoice> select_proposal(
    const SaPayload& sa, const std::function<bool(const Proposal&)>& usable,
    const std::function<std::optional<std::uint32_t>(const Transform&)>& match);

// An SA payload of one proposal holding one transform (the responder's answer, or our offer).
Bytes build_one_transform_sa(std::uint8_t proposal_number, std::uint8_t protocol, Bytes spi,
                             const Transform& t);

Bytes id_addr(dp::Ipv4 a);
// Our phase-1 identity (main_mode.cpp).
IdPayload our_id(const ConnectionConfig& c);
Bytes id_subnet(const dp::Ipv4Prefix& p);

// The wire bytes of payloads `from`.. of a message (what HASH(1)/(2) cover).
Bytes concat_wire(const Message& m, std::size_t from);

// Constant-time check that `p` is a HASH payload equal to `expect`.
bool hash_payload_matches(const RawPayload* p, ByteView expect);

// A chain of HASH followed by the payloads of `rest` (serialized as `rest_wire`).
PayloadChain hash_then(ByteView hash, const PayloadChain& rest, const Bytes& rest_wire);

}  // namespace ipsecgw::ike
