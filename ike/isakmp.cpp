#include "ike/isakmp.hpp"

#include <algorithm>

namespace ipsecgw::ike {

namespace {
std::string str(const char* what, std::size_t a) { return std::string(what) + std::to_string(a); }
}  // namespace

std::string hex(ByteView b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(b.size() * 2);
  for (auto c : b) {
    s.push_back(d[c >> 4]);
    s.push_back(d[c & 15]);
  }
  return s;
}

// ---- Header (RFC 2408 §3.1) ----

Result<Header> parse_header(ByteView p) {
  if (p.size() < kHeaderLen) return make_error(str("datagram shorter than ISAKMP header: ", p.size()));
  Header h;
  std::copy_n(p.data(), 8, h.icookie.begin());
  std::copy_n(p.data() + 8, 8, h.rcookie.begin());
  h.next_payload = p[16];
  h.version = p[17];
  h.exchange = p[18];
  h.flags = p[19];
  h.message_id = get32(p.data() + 20);
  h.length = get32(p.data() + 24);
  if ((h.version >> 4) != 1) return make_error(str("unsupported ISAKMP major version ", h.version >> 4));
  if (h.length != p.size())
    return make_error("header length " + std::to_string(h.length) + " != datagram length " +
                      std::to_string(p.size()));
  if ((h.flags & ~(kFlagEncryption | kFlagCommit | kFlagAuthOnly)) != 0)
    return make_error("unknown header flags");
  return h;
}

void write_header(const Header& h, Bytes& o) {
  o.insert(o.end(), h.icookie.begin(), h.icookie.end());
  o.insert(o.end(), h.rcookie.begin(), h.rcookie.end());
  o.push_back(h.next_payload);
  o.push_back(h.version);
  o.push_back(h.exchange);
  o.push_back(h.flags);
  put32(o, h.message_id);
  put32(o, h.length);
}

// ---- Attributes (RFC 2408 §3.3) ----

std::optional<std::uint64_t> Attribute::as_int() const {
  if (tv) return value;
  if (data.empty() || data.size() > 8) return std::nullopt;
  std::uint64_t v = 0;
  for (auto b : data) v = v << 8 | b;
  return v;
}

Attribute Attribute::integer(std::uint16_t type, std::uint64_t v) {
  if (v <= 0xffff) return basic(type, static_cast<std::uint16_t>(v));
  Attribute a{type, false, 0, {}};
  const int n = v <= 0xffffffffULL ? 4 : 8;
  for (int i = n - 1; i >= 0; --i) a.data.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  return a;
}

Result<std::vector<Attribute>> parse_attributes(ByteView d) {
  std::vector<Attribute> out;
  std::size_t off = 0;
  while (off < d.size()) {
    if (d.size() - off < 4) return make_error("truncated data attribute");
    std::uint16_t t = get16(d.data() + off);
    std::uint16_t v = get16(d.data() + off + 2);
    Attribute a;
    a.type = t & 0x7fff;
    a.tv = (t & 0x8000) != 0;
    off += 4;
    if (a.tv) {
      a.value = v;
    } else {
      if (d.size() - off < v) return make_error("TLV attribute length exceeds transform");
      a.data.assign(d.begin() + off, d.begin() + off + v);
      off += v;
    }
    out.push_back(std::move(a));
  }
  return out;
}

void write_attributes(const std::vector<Attribute>& attrs, Bytes& o) {
  for (const auto& a : attrs) {
    if (a.tv) {
      put16(o, static_cast<std::uint16_t>(0x8000 | a.type));
      put16(o, a.value);
    } else {
      put16(o, a.type & 0x7fff);
      put16(o, static_cast<std::uint16_t>(a.data.size()));
      o.insert(o.end(), a.data.begin(), a.data.end());
    }
  }
}

const Attribute* Transform::find(std::uint16_t type) const {
  for (const auto& a : attrs)
    if (a.type == type) return &a;
  return nullptr;
}

// ---- SA / Proposal / Transform (RFC 2408 §3.4-3.6) ----

namespace {
// Walks a chain of sub-payloads of type `type` (Proposal or Transform) inside `d`; calls
// fn(body) for each; the chain must cover `d` exactly.
template <class Fn>
Result<void> walk_sub(ByteView d, std::uint8_t type, std::size_t expected, const char* what,
                      Fn&& fn) {
  std::size_t off = 0, count = 0;
  std::uint8_t next = type;
  while (next != 0) {
    if (next != type) return make_error(std::string(what) + ": unexpected next payload " + std::to_string(next));
    if (d.size() - off < kGenericHeaderLen) return make_error(std::string(what) + ": truncated header");
    next = d[off];
    std::uint16_t len = get16(d.data() + off + 2);
    if (len < kGenericHeaderLen || len > d.size() - off)
      return make_error(std::string(what) + ": bad length " + std::to_string(len));
    auto r = fn(d.subspan(off + kGenericHeaderLen, len - kGenericHeaderLen));
    if (!r) return r;
    off += len;
    ++count;
  }
  if (off != d.size()) return make_error(std::string(what) + ": trailing bytes after chain");
  if (expected != 0 && count != expected)
    return make_error(std::string(what) + ": count " + std::to_string(count) + " != declared " +
                      std::to_string(expected));
  return {};
}
}  // namespace

Result<SaPayload> parse_sa(ByteView b) {
  if (b.size() < 8) return make_error("SA payload too short");
  SaPayload sa;
  sa.doi = get32(b.data());
  sa.situation = get32(b.data() + 4);
  if (sa.doi != 1) return make_error(str("SA: unsupported DOI ", sa.doi));
  if (sa.situation != 1) return make_error(str("SA: unsupported situation ", sa.situation));
  if (b.size() == 8) return make_error("SA without proposals");
  auto r = walk_sub(b.subspan(8), 2, 0, "proposal", [&](ByteView p) -> Result<void> {
    if (p.size() < 4) return make_error("proposal too short");
    Proposal prop;
    prop.number = p[0];
    prop.protocol = p[1];
    std::uint8_t spi_size = p[2];
    std::uint8_t ntrans = p[3];
    if (ntrans == 0) return make_error("proposal without transforms");
    if (p.size() - 4 < spi_size) return make_error("proposal SPI exceeds payload");
    prop.spi.assign(p.begin() + 4, p.begin() + 4 + spi_size);
    auto t = walk_sub(p.subspan(4 + spi_size), 3, ntrans, "transform", [&](ByteView tb) -> Result<void> {
      if (tb.size() < 4) return make_error("transform too short");
      Transform tr;
      tr.number = tb[0];
      tr.id = tb[1];
      auto attrs = parse_attributes(tb.subspan(4));
      if (!attrs) return make_error(attrs.error());
      tr.attrs = std::move(*attrs);
      prop.transforms.push_back(std::move(tr));
      return {};
    });
    if (!t) return t;
    sa.proposals.push_back(std::move(prop));
    return {};
  });
  if (!r) return make_error(r.error());
  return sa;
}

Bytes build_sa(const SaPayload& sa) {
  Bytes o;
  put32(o, sa.doi);
  put32(o, sa.situation);
  for (std::size_t i = 0; i < sa.proposals.size(); ++i) {
    const auto& p = sa.proposals[i];
    Bytes pb;
    pb.push_back(p.number);
    pb.push_back(p.protocol);
    pb.push_back(static_cast<std::uint8_t>(p.spi.size()));
    pb.push_back(static_cast<std::uint8_t>(p.transforms.size()));
    pb.insert(pb.end(), p.spi.begin(), p.spi.end());
    for (std::size_t j = 0; j < p.transforms.size(); ++j) {
      const auto& t = p.transforms[j];
      Bytes tb;
      tb.push_back(t.number);
      tb.push_back(t.id);
      put16(tb, 0);
      write_attributes(t.attrs, tb);
      pb.push_back(j + 1 < p.transforms.size() ? 3 : 0);
      pb.push_back(0);
      put16(pb, static_cast<std::uint16_t>(tb.size() + 4));
      pb.insert(pb.end(), tb.begin(), tb.end());
    }
    o.push_back(i + 1 < sa.proposals.size() ? 2 : 0);
    o.push_back(0);
    put16(o, static_cast<std::uint16_t>(pb.size() + 4));
    o.insert(o.end(), pb.begin(), pb.end());
  }
  return o;
}

// ---- ID (RFC 2407 §4.6.2) ----

Result<IdPayload> parse_id(ByteView b) {
  if (b.size() < 5) return make_error("ID payload too short");
  IdPayload id{b[0], b[1], get16(b.data() + 2), Bytes(b.begin() + 4, b.end())};
  if (id.id_type == kIdIpv4Addr && id.data.size() != 4) return make_error("ID_IPV4_ADDR not 4 bytes");
  if (id.id_type == kIdIpv4AddrSubnet && id.data.size() != 8)
    return make_error("ID_IPV4_ADDR_SUBNET not 8 bytes");
  return id;
}

Bytes build_id(const IdPayload& id) {
  Bytes o{id.id_type, id.protocol};
  put16(o, id.port);
  o.insert(o.end(), id.data.begin(), id.data.end());
  return o;
}

// ---- Notify (RFC 2408 §3.14) and Delete (§3.15) ----

namespace {
// Notify and Delete start alike: DOI (4), Protocol-ID (1), SPI Size (1), then 16 bits that
// are the Notify Message Type or the # of SPIs; 8 bytes in all.
struct DoiHead {
  std::uint32_t doi;
  std::uint8_t protocol, spi_size;
  std::uint16_t field;
};
constexpr std::size_t kDoiHeadLen = 8;
DoiHead read_doi_head(ByteView b) {
  return {get32(b.data()), b[4], b[5], get16(b.data() + 6)};
}
void write_doi_head(Bytes& o, const DoiHead& h) {
  put32(o, h.doi);
  o.push_back(h.protocol);
  o.push_back(h.spi_size);
  put16(o, h.field);
}
}  // namespace

Result<NotifyPayload> parse_notify(ByteView b) {
  if (b.size() < kDoiHeadLen) return make_error("notify payload too short");
  const DoiHead h = read_doi_head(b);
  if (b.size() - kDoiHeadLen < h.spi_size) return make_error("notify SPI exceeds payload");
  NotifyPayload n{h.doi, h.protocol, h.field, {}, {}};
  n.spi.assign(b.begin() + kDoiHeadLen, b.begin() + kDoiHeadLen + h.spi_size);
  n.data.assign(b.begin() + kDoiHeadLen + h.spi_size, b.end());
  return n;
}

Bytes build_notify(const NotifyPayload& n) {
  Bytes o;
  write_doi_head(o, {n.doi, n.protocol, static_cast<std::uint8_t>(n.spi.size()), n.type});
  o.insert(o.end(), n.spi.begin(), n.spi.end());
  o.insert(o.end(), n.data.begin(), n.data.end());
  return o;
}

Result<DeletePayload> parse_delete(ByteView b) {
  if (b.size() < kDoiHeadLen) return make_error("delete payload too short");
  const DoiHead h = read_doi_head(b);
  const std::uint16_t n = h.field;
  DeletePayload d{h.doi, h.protocol, h.spi_size, {}};
  if (d.spi_size == 0 || n == 0) return make_error("delete without SPIs");
  if (b.size() - kDoiHeadLen != std::size_t{d.spi_size} * n)
    return make_error("delete SPI count/length mismatch");
  for (std::size_t i = 0; i < n; ++i) {
    auto s = b.begin() + kDoiHeadLen + i * d.spi_size;
    d.spis.emplace_back(s, s + d.spi_size);
  }
  return d;
}

Bytes build_delete(const DeletePayload& d) {
  Bytes o;
  write_doi_head(o, {d.doi, d.protocol, d.spi_size, static_cast<std::uint16_t>(d.spis.size())});
  for (const auto& s : d.spis) o.insert(o.end(), s.begin(), s.end());
  return o;
}

// ---- Generic payload chain (RFC 2408 §3.2) ----

namespace {
// The error of a parse, without its value.
template <typename T>
Result<void> parse_verdict(const Result<T>& r) {
  if (!r) return make_error(r.error());
  return {};
}
}  // namespace

Result<void> validate_body(PayloadType t, ByteView b) {
  switch (t) {
    case PayloadType::kSa: return parse_verdict(parse_sa(b));
    case PayloadType::kId: return parse_verdict(parse_id(b));
    case PayloadType::kNotify: return parse_verdict(parse_notify(b));
    case PayloadType::kDelete: return parse_verdict(parse_delete(b));
    case PayloadType::kNonce:  // RFC 2409 §5: nonce between 8 and 256 bytes
      if (b.size() < 8 || b.size() > 256) return make_error(str("nonce length out of range: ", b.size()));
      return {};
    case PayloadType::kKe:
    case PayloadType::kHash:
    case PayloadType::kVendorId:
    case PayloadType::kNatD:
    case PayloadType::kNatDDraft:
    case PayloadType::kCert:
    case PayloadType::kCertReq:
    case PayloadType::kSig:
      if (b.empty()) return make_error(str("empty payload of type ", static_cast<unsigned>(t)));
      return {};
    case PayloadType::kNatOa:
    case PayloadType::kNatOaDraft:
      if (b.size() < 8) return make_error("NAT-OA too short");
      return {};
    default:
      return make_error(str("unsupported payload type ", static_cast<unsigned>(t)));
  }
}

Result<std::vector<RawPayload>> parse_payloads(std::uint8_t first, ByteView d, bool allow_trailing) {
  std::vector<RawPayload> out;
  std::size_t off = 0;
  std::uint8_t next = first;
  while (next != 0) {
    if (out.size() >= 64) return make_error("too many payloads");
    if (d.size() - off < kGenericHeaderLen) return make_error("truncated generic payload header");
    const auto type = static_cast<PayloadType>(next);
    next = d[off];
    if (d[off + 1] != 0) return make_error("non-zero RESERVED in generic payload header");
    std::uint16_t len = get16(d.data() + off + 2);
    if (len < kGenericHeaderLen || len > d.size() - off)
      return make_error(str("payload length out of bounds: ", len));
    ByteView body = d.subspan(off + kGenericHeaderLen, len - kGenericHeaderLen);
    auto v = validate_body(type, body);
    if (!v) return make_error(v.error());
    out.push_back({type, Bytes(body.begin(), body.end()),
                   Bytes(d.begin() + off, d.begin() + off + len)});
    off += len;
  }
  if (!allow_trailing && off != d.size()) return make_error("bytes after the last payload");
  return out;
}

const RawPayload* Message::find(PayloadType t) const {
  for (const auto& p : payloads)
    if (p.type == t) return &p;
  return nullptr;
}

std::vector<const RawPayload*> Message::find_all(PayloadType t) const {
  std::vector<const RawPayload*> v;
  for (const auto& p : payloads)
    if (p.type == t) v.push_back(&p);
  return v;
}

Result<Message> parse_message(ByteView p) {
  auto h = parse_header(p);
  if (!h) return make_error(h.error());
  if (h->flags & kFlagEncryption) return make_error("message is encrypted");
  auto pl = parse_payloads(h->next_payload, p.subspan(kHeaderLen), false);
  if (!pl) return make_error(pl.error());
  return Message{*h, std::move(*pl)};
}

void PayloadChain::add(PayloadType t, ByteView body) {
  items_.emplace_back(t, Bytes(body.begin(), body.end()));
}

std::uint8_t PayloadChain::first() const {
  return items_.empty() ? 0 : static_cast<std::uint8_t>(items_.front().first);
}

Bytes PayloadChain::serialize() const {
  Bytes o;
  for (std::size_t i = 0; i < items_.size(); ++i) {
    o.push_back(i + 1 < items_.size() ? static_cast<std::uint8_t>(items_[i + 1].first) : 0);
    o.push_back(0);
    put16(o, static_cast<std::uint16_t>(items_[i].second.size() + kGenericHeaderLen));
    o.insert(o.end(), items_[i].second.begin(), items_[i].second.end());
  }
  return o;
}

Bytes build_message(Header hdr, const PayloadChain& chain) {
  Bytes body = chain.serialize();
  hdr.next_payload = chain.first();
  hdr.length = static_cast<std::uint32_t>(kHeaderLen + body.size());
  Bytes o;
  write_header(hdr, o);
  o.insert(o.end(), body.begin(), body.end());
  return o;
}

}  // namespace ipsecgw::ike
