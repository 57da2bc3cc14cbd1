// ISAKMP codec: round trips, strict rejection of truncated/corrupted input, no crashes.
#include <gtest/gtest.h>

#include <random>

#include "ike/isakmp.hpp"

namespace ipsecgw::ike {
namespace {

SaPayload sample_sa() {
  SaPayload sa;
  Proposal p;
  p.number = 1;
  p.protocol = kProtoIsakmp;
  Transform t;
  t.number = 1;
  t.id = 1;
  t.attrs = {Attribute::basic(1, 7), Attribute::basic(14, 256), Attribute::basic(2, 4),
             Attribute::basic(3, 1), Attribute::basic(4, 14), Attribute::basic(11, 1),
             Attribute::integer(12, 86400)};
  p.transforms.push_back(t);
  t.number = 2;
  t.attrs[1] = Attribute::basic(14, 128);
  p.transforms.push_back(t);
  sa.proposals.push_back(p);
  return sa;
}

Bytes sample_message() {
  Header h;
  h.icookie = {1, 2, 3, 4, 5, 6, 7, 8};
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kIdentityProtection);
  PayloadChain c;
  c.add(PayloadType::kSa, build_sa(sample_sa()));
  Bytes vid{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45};
  c.add(PayloadType::kVendorId, vid);
  c.add(PayloadType::kNonce, Bytes(16, 0xaa));
  c.add(PayloadType::kId, build_id({kIdIpv4AddrSubnet, 0, 0, {10, 1, 0, 0, 255, 255, 0, 0}}));
  c.add(PayloadType::kNotify, build_notify({1, kProtoEsp, notify::kResponderLifetime, {1, 2, 3, 4}, {0x80, 1, 0, 1}}));
  c.add(PayloadType::kDelete, build_delete({1, kProtoEsp, 4, {{1, 2, 3, 4}, {5, 6, 7, 8}}}));
  c.add(PayloadType::kNatD, Bytes(20, 0x11));
  c.add(PayloadType::kKe, Bytes(128, 0x22));
  c.add(PayloadType::kHash, Bytes(20, 0x33));
  return build_message(h, c);
}

TEST(IsakmpCodec, MessageRoundTripsAllPayloadKinds) {
  Bytes m = sample_message();
  auto r = parse_message(m);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->hdr.length, m.size());
  EXPECT_EQ(r->hdr.icookie[7], 8);
  ASSERT_EQ(r->payloads.size(), 9u);
  auto sa = parse_sa(r->find(PayloadType::kSa)->body);
  ASSERT_TRUE(sa.ok()) << sa.error();
  ASSERT_EQ(sa->proposals.size(), 1u);
  ASSERT_EQ(sa->proposals[0].transforms.size(), 2u);
  const auto& t = sa->proposals[0].transforms[0];
  EXPECT_EQ(t.find(1)->as_int(), 7u);
  EXPECT_FALSE(t.find(12)->tv);  // 86400 needs a TLV
  EXPECT_EQ(t.find(12)->as_int(), 86400u);
  EXPECT_EQ(sa->proposals[0].transforms[1].find(14)->as_int(), 128u);
  EXPECT_EQ(build_sa(*sa), r->find(PayloadType::kSa)->body);
  auto id = parse_id(r->find(PayloadType::kId)->body);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->id_type, kIdIpv4AddrSubnet);
  auto n = parse_notify(r->find(PayloadType::kNotify)->body);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->type, notify::kResponderLifetime);
  EXPECT_EQ(n->spi, (Bytes{1, 2, 3, 4}));
  auto d = parse_delete(r->find(PayloadType::kDelete)->body);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->spis.size(), 2u);
  EXPECT_EQ(d->spis[1], (Bytes{5, 6, 7, 8}));
  // Rebuilding from the parsed payloads gives the same bytes.
  PayloadChain c;
  for (const auto& p : r->payloads) c.add(p.type, p.body);
  EXPECT_EQ(build_message(r->hdr, c), m);
  // The wire form of each payload is its generic header + body.
  EXPECT_EQ(r->payloads[1].wire.size(), r->payloads[1].body.size() + 4);
}

TEST(IsakmpCodec, RejectsEveryTruncation) {
  Bytes m = sample_message();
  for (std::size_t n = 0; n < m.size(); ++n) {
    Bytes t(m.begin(), m.begin() + n);
    EXPECT_FALSE(parse_message(t).ok()) << "length " << n;
    // Even with the header length patched to match, the chain must not fit.
    if (n >= kHeaderLen) {
      t[24] = static_cast<std::uint8_t>(n >> 24);
      t[25] = static_cast<std::uint8_t>(n >> 16);
      t[26] = static_cast<std::uint8_t>(n >> 8);
      t[27] = static_cast<std::uint8_t>(n);
      EXPECT_FALSE(parse_message(t).ok()) << "patched length " << n;
    }
  }
}

TEST(IsakmpCodec, RejectsTrailingBytesAndLengthMismatch) {
  Bytes m = sample_message();
  Bytes longer = m;
  longer.push_back(0);
  EXPECT_FALSE(parse_message(longer).ok());
  longer[27] += 1;  // header claims the extra byte: now it is trailing after the chain
  auto r = parse_message(longer);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("after the last payload"), std::string::npos);
}

TEST(IsakmpCodec, RejectsUnknownPayloadTypeAndBadVersion) {
  Header h;
  PayloadChain c;
  c.add(static_cast<PayloadType>(99), Bytes(4, 0));
  auto r = parse_message(build_message(h, c));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("unsupported payload type 99"), std::string::npos);
  Bytes m = sample_message();
  m[17] = 0x20;
  EXPECT_FALSE(parse_message(m).ok());
}

TEST(IsakmpCodec, RejectsMalformedSaInternals) {
  Bytes sa = build_sa(sample_sa());
  // Transform count 3 but only 2 present.
  Bytes bad = sa;
  bad[8 + 4 + 3] = 3;
  EXPECT_FALSE(parse_sa(bad).ok());
  // TLV attribute length running past the transform.
  SaPayload s = sample_sa();
  s.proposals[0].transforms.resize(1);
  Bytes one = build_sa(s);
  // Last attribute is Life Duration TLV: its length field sits 4+4 bytes before the end.
  one[one.size() - 6] = 0;
  one[one.size() - 5] = 9;
  EXPECT_FALSE(parse_sa(one).ok());
  EXPECT_FALSE(parse_sa(Bytes{0, 0, 0, 1, 0, 0, 0, 1}).ok());  // no proposal
  EXPECT_FALSE(parse_sa(Bytes{0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4}).ok());  // DOI 2
}

TEST(IsakmpCodec, SurvivesRandomByteFlips) {
  Bytes m = sample_message();
  std::mt19937 rng(12345);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    Bytes t = m;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) t[rng() % t.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    auto r = parse_message(t);
    if (r.ok()) {
      ++accepted;
      // Whatever is accepted must be internally consistent.
      std::size_t total = kHeaderLen;
      for (const auto& p : r->payloads) total += p.wire.size();
      EXPECT_EQ(total, t.size());
    }
  }
  EXPECT_LT(accepted, 20000);
}

TEST(IsakmpCodec, DecryptedChainMayCarryPadding) {
  PayloadChain c;
  c.add(PayloadType::kHash, Bytes(20, 1));
  Bytes body = c.serialize();
  body.insert(body.end(), 12, 0);
  EXPECT_TRUE(parse_payloads(c.first(), body, true).ok());
  EXPECT_FALSE(parse_payloads(c.first(), body, false).ok());
}

TEST(IsakmpCodec, LongAttributeIntegers) {
  EXPECT_TRUE(Attribute::integer(12, 100).tv);
  EXPECT_EQ(Attribute::integer(12, 0x10000).data.size(), 4u);
  EXPECT_EQ(Attribute::integer(12, 0x100000000ULL).data.size(), 8u);
  EXPECT_EQ(Attribute::integer(12, 0x100000000ULL).as_int(), 0x100000000ULL);
}

}  // namespace
}  // namespace ipsecgw::ike
