// ISAKMP wire codec (RFC 2408 §3, RFC 2407 IPsec DOI, RFC 3947 NAT-T payloads).
// Parsing is strict and bounds-checked: every length is checked against what contains it, the
// header length must equal the datagram length, generic payload headers must fit, typed bodies
// must meet their minimum sizes, and an unknown payload is rejected (RFC 2408 §5.1: we have no
// "critical" bit in IKEv1, so unknown = INVALID-PAYLOAD-TYPE). Failures carry a reason.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace ipsecgw::ike {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using Cookie = std::array<std::uint8_t, 8>;

// RFC 2408 §3.1 next-payload values, RFC 3947 §3/§4 NAT-D/NAT-OA (draft values 130/131).
enum class PayloadType : std::uint8_t {
  kNone = 0, kSa = 1, kProposal = 2, kTransform = 3, kKe = 4, kId = 5, kCert = 6, kCertReq = 7,
  kHash = 8, kSig = 9, kNonce = 10, kNotify = 11, kDelete = 12, kVendorId = 13,
  kNatD = 20, kNatOa = 21, kNatDDraft = 130, kNatOaDraft = 131,
};
// RFC 2408 §3.1 / RFC 2409 exchange types.
enum class ExchangeType : std::uint8_t {
  kIdentityProtection = 2, kAggressive = 4, kInformational = 5, kQuickMode = 32,
};
constexpr std::uint8_t kFlagEncryption = 0x01;
constexpr std::uint8_t kFlagCommit = 0x02;
constexpr std::uint8_t kFlagAuthOnly = 0x04;
constexpr std::uint8_t kIsakmpVersion = 0x10;  // major 1, minor 0
constexpr std::size_t kHeaderLen = 28;
constexpr std::size_t kGenericHeaderLen = 4;

// RFC 2408 §3.1
struct Header {
  Cookie icookie{};
  Cookie rcookie{};
  std::uint8_t next_payload = 0;
  std::uint8_t version = kIsakmpVersion;
  std::uint8_t exchange = 0;
  std::uint8_t flags = 0;
  std::uint32_t message_id = 0;
  std::uint32_t length = 0;
};

Result<Header> parse_header(ByteView datagram);
void write_header(const Header& h, Bytes& out);  // appends 28 bytes

// One payload as received: its type and body (after the 4-byte generic header), plus the whole
// payload as on the wire (generic header included), which HASH(1)/(2) cover (RFC 2409 §5.5).
struct RawPayload {
  PayloadType type = PayloadType::kNone;
  Bytes body;
  Bytes wire;
};

// Parses a payload chain starting with `first`. When allow_trailing is true (decrypted
// messages), bytes after the last payload are padding and are ignored (RFC 2409 Appendix B);
// otherwise the chain must end exactly at the end of `data`.
Result<std::vector<RawPayload>> parse_payloads(std::uint8_t first, ByteView data,
                                               bool allow_trailing);

// ---- Typed payload bodies ------------------------------------------------------------------

// RFC 2408 §3.3 data attributes: TV (AF=1, 2-byte value) or TLV.
struct Attribute {
  std::uint16_t type = 0;  // without the AF bit
  bool tv = true;
  std::uint16_t value = 0;  // TV
  Bytes data;               // TLV
  // Integer value of a TV attribute or of a TLV of up to 8 bytes (e.g. Life Duration).
  std::optional<std::uint64_t> as_int() const;
  static Attribute basic(std::uint16_t type, std::uint16_t v) { return {type, true, v, {}}; }
  // TV when it fits in 16 bits, else TLV with the shortest of 4 or 8 bytes.
  static Attribute integer(std::uint16_t type, std::uint64_t v);
};

struct Transform {  // RFC 2408 §3.6
  std::uint8_t number = 1;
  std::uint8_t id = 0;
  std::vector<Attribute> attrs;
  const Attribute* find(std::uint16_t type) const;
};

struct Proposal {  // RFC 2408 §3.5
  std::uint8_t number = 1;
  std::uint8_t protocol = 0;
  Bytes spi;
  std::vector<Transform> transforms;
};

struct SaPayload {  // RFC 2408 §3.4, RFC 2407 §4.6.1
  std::uint32_t doi = 1;        // IPSEC DOI
  std::uint32_t situation = 1;  // SIT_IDENTITY_ONLY
  std::vector<Proposal> proposals;
};

struct IdPayload {  // RFC 2407 §4.6.2
  std::uint8_t id_type = 0;
  std::uint8_t protocol = 0;
  std::uint16_t port = 0;
  Bytes data;
};

struct NotifyPayload {  // RFC 2408 §3.14
  std::uint32_t doi = 1;
  std::uint8_t protocol = 0;
  std::uint16_t type = 0;
  Bytes spi;
  Bytes data;
};

struct DeletePayload {  // RFC 2408 §3.15
  std::uint32_t doi = 1;
  std::uint8_t protocol = 0;
  std::uint8_t spi_size = 0;
  std::vector<Bytes> spis;
};

// ID types (RFC 2407 §4.6.2.1), protocol ids (RFC 2407 §4.4.1), notify types.
constexpr std::uint8_t kIdIpv4Addr = 1;
constexpr std::uint8_t kIdFqdn = 2, kIdUserFqdn = 3;
constexpr std::uint8_t kIdIpv4AddrSubnet = 4;
constexpr std::uint8_t kProtoIsakmp = 1;
constexpr std::uint8_t kProtoEsp = 3;
namespace notify {
constexpr std::uint16_t kInvalidPayloadType = 1;
constexpr std::uint16_t kInvalidCookie = 4;
constexpr std::uint16_t kInvalidExchangeType = 7;
constexpr std::uint16_t kNoProposalChosen = 14;
constexpr std::uint16_t kPayloadMalformed = 16;
constexpr std::uint16_t kInvalidKeyInformation = 17;
constexpr std::uint16_t kInvalidIdInformation = 18;
constexpr std::uint16_t kAuthenticationFailed = 24;
constexpr std::uint16_t kInvalidHashInformation = 23;
constexpr std::uint16_t kResponderLifetime = 24576;  // RFC 2407 §4.6.3.1
constexpr std::uint16_t kInitialContact = 24578;     // RFC 2407 §4.6.3.3
constexpr std::uint16_t kRUThere = 36136;            // RFC 3706 §5
constexpr std::uint16_t kRUThereAck = 36137;
}  // namespace notify

Result<SaPayload> parse_sa(ByteView body);
Result<IdPayload> parse_id(ByteView body);
Result<NotifyPayload> parse_notify(ByteView body);
Result<DeletePayload> parse_delete(ByteView body);
Result<std::vector<Attribute>> parse_attributes(ByteView data);

Bytes build_sa(const SaPayload& sa);
Bytes build_id(const IdPayload& id);
Bytes build_notify(const NotifyPayload& n);
Bytes build_delete(const DeletePayload& d);
void write_attributes(const std::vector<Attribute>& attrs, Bytes& out);

// Validates the body of a known payload type (used by parse_payloads).
Result<void> validate_body(PayloadType t, ByteView body);

// ---- Messages ------------------------------------------------------------------------------

struct Message {
  Header hdr;
  std::vector<RawPayload> payloads;

  const RawPayload* find(PayloadType t) const;
  std::vector<const RawPayload*> find_all(PayloadType t) const;
};

// A plaintext message (E flag clear): header, then payload chain covering exactly the rest.
Result<Message> parse_message(ByteView datagram);

// Builds a payload chain (generic headers with next-payload links); `first` receives the type
// of the first payload for the ISAKMP header.
class PayloadChain {
 public:
  void add(PayloadType t, ByteView body);
  std::uint8_t first() const;
  Bytes serialize() const;
  bool empty() const { return items_.empty(); }

 private:
  std::vector<std::pair<PayloadType, Bytes>> items_;
};

// Header + chain, plaintext. hdr.next_payload and hdr.length are filled in.
Bytes build_message(Header hdr, const PayloadChain& chain);

std::string hex(ByteView b);
inline std::uint16_t get16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
inline std::uint32_t get32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
inline void put16(Bytes& o, std::uint16_t v) {
  o.push_back(static_cast<std::uint8_t>(v >> 8));
  o.push_back(static_cast<std::uint8_t>(v));
}
inline void put32(Bytes& o, std::uint32_t v) {
  put16(o, static_cast<std::uint16_t>(v >> 16));
  put16(o, static_cast<std::uint16_t>(v));
}

}  // namespace ipsecgw::ike
