// IKE crypto primitives against RFC vectors (RFC 2202, RFC 4231, RFC 3602, FIPS 180 "abc") and
// DH agreement/validation for MODP groups 2, 5 and 14.
#include <gtest/gtest.h>
#include <openssl/bn.h>

#include <string>

#include "crypto/ike_crypto.hpp"

namespace ipsecgw::crypto {
namespace {

Bytes unhex(std::string_view h) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}
ByteView sv(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
Bytes to_bytes(const SecureBytes& s) { return Bytes(s.data(), s.data() + s.size()); }

TEST(IkeHash, Sha1AndSha256OfAbcMatchFips180) {
  EXPECT_EQ(hash(HashAlg::kSha1, {sv("a"), sv("bc")}),
            unhex("a9993e364706816aba3e25717850c26c9cd0d89d"));
  EXPECT_EQ(hash(HashAlg::kSha256, {sv("abc")}),
            unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST(IkePrf, HmacSha1MatchesRfc2202Cases1And2) {
  Bytes k1(20, 0x0b);
  EXPECT_EQ(to_bytes(prf(HashAlg::kSha1, k1, {sv("Hi There")})),
            unhex("b617318655057264e28bc0b6fb378c8ef146be00"));
  EXPECT_EQ(to_bytes(prf(HashAlg::kSha1, sv("Jefe"), {sv("what do ya want "), sv("for nothing?")})),
            unhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
}

TEST(IkePrf, HmacSha256MatchesRfc4231Cases1And2) {
  Bytes k1(20, 0x0b);
  EXPECT_EQ(to_bytes(prf(HashAlg::kSha256, k1, {sv("Hi There")})),
            unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  EXPECT_EQ(to_bytes(prf(HashAlg::kSha256, sv("Jefe"), {sv("what do ya want for nothing?")})),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

TEST(IkeAesCbc, MatchesRfc3602Cases1And2) {
  auto c1 = aes_cbc_encrypt(unhex("06a9214036b8a15b512e03d534120006"),
                            unhex("3dafba429d9eb430b422da802c9fac41"), sv("Single block msg"));
  ASSERT_TRUE(c1.ok()) << c1.error();
  EXPECT_EQ(*c1, unhex("e353779c1079aeb82708942dbe77181a"));
  Bytes pt2;
  for (int i = 0; i < 32; ++i) pt2.push_back(static_cast<std::uint8_t>(i));
  Bytes key2 = unhex("c286696d887c9aa0611bbb3e2025a45a");
  Bytes iv2 = unhex("562e17996d093d28ddb3ba695a2e6f58");
  auto c2 = aes_cbc_encrypt(key2, iv2, pt2);
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(*c2, unhex("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"));
  auto p2 = aes_cbc_decrypt(key2, iv2, *c2);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p2, pt2);
}

TEST(IkeAesCbc, RoundTripsAllKeySizesAndRejectsBadLengths) {
  for (std::size_t kl : {16u, 24u, 32u}) {
    Bytes key = random_bytes(kl), iv = random_bytes(16), pt = random_bytes(48);
    auto c = aes_cbc_encrypt(key, iv, pt);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->size(), 48u);  // no padding added
    EXPECT_NE(*c, pt);
    auto p = aes_cbc_decrypt(key, iv, *c);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, pt);
  }
  EXPECT_FALSE(aes_cbc_encrypt(Bytes(16), Bytes(16), Bytes(15)).ok());
  EXPECT_FALSE(aes_cbc_encrypt(Bytes(20), Bytes(16), Bytes(16)).ok());
  EXPECT_FALSE(aes_cbc_decrypt(Bytes(16), Bytes(8), Bytes(16)).ok());
}

class DhGroups : public ::testing::TestWithParam<DhGroup> {};

TEST_P(DhGroups, TwoSidesAgreeOnAFullLengthSecret) {
  auto a = DhKeyPair::generate(GetParam());
  auto b = DhKeyPair::generate(GetParam());
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  EXPECT_EQ(a->public_value().size(), dh_group_bytes(GetParam()));
  EXPECT_NE(a->public_value(), b->public_value());
  auto sa = a->shared_secret(b->public_value());
  auto sb = b->shared_secret(a->public_value());
  ASSERT_TRUE(sa.ok()) << sa.error();
  ASSERT_TRUE(sb.ok()) << sb.error();
  EXPECT_EQ(sa->size(), dh_group_bytes(GetParam()));
  EXPECT_TRUE(*sa == *sb);
}

TEST_P(DhGroups, PrimeIsTheRfcSafePrimeWithPiDigits) {
  Bytes p = dh_group_prime(GetParam());
  ASSERT_EQ(p.size(), dh_group_bytes(GetParam()));
  // All MODP primes: top and bottom 64 bits set; then the binary expansion of pi
  // (RFC 2409 §6.2, RFC 3526: "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 ...").
  Bytes head = unhex("ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd1");
  EXPECT_TRUE(std::equal(head.begin(), head.end(), p.begin()));
  for (std::size_t i = p.size() - 8; i < p.size(); ++i) EXPECT_EQ(p[i], 0xff);
  BIGNUM* bp = BN_bin2bn(p.data(), static_cast<int>(p.size()), nullptr);
  BIGNUM* q = BN_dup(bp);
  BN_rshift1(q, q);
  BN_CTX* ctx = BN_CTX_new();
  EXPECT_EQ(BN_check_prime(bp, ctx, nullptr), 1);
  EXPECT_EQ(BN_check_prime(q, ctx, nullptr), 1);  // safe prime: (p-1)/2 prime
  BN_CTX_free(ctx);
  BN_free(q);
  BN_free(bp);
}

TEST_P(DhGroups, RejectsDegeneratePeerValues) {
  const DhGroup g = GetParam();
  auto a = DhKeyPair::generate(g);
  ASSERT_TRUE(a.ok());
  const std::size_t n = dh_group_bytes(g);
  Bytes zero(n, 0), one(n, 0), p = dh_group_prime(g), pm1 = dh_group_prime(g), two(n, 0);
  one.back() = 1;
  two.back() = 2;
  pm1.back() -= 1;
  EXPECT_FALSE(a->shared_secret(zero).ok());
  EXPECT_FALSE(a->shared_secret(one).ok());
  EXPECT_FALSE(a->shared_secret(pm1).ok());
  EXPECT_FALSE(a->shared_secret(p).ok());
  EXPECT_FALSE(a->shared_secret(Bytes(n - 1, 0x55)).ok());  // wrong length
  EXPECT_TRUE(dh_public_value_valid(g, two));
  EXPECT_TRUE(a->shared_secret(two).ok());
}

// Powers of two are checkable by hand: 2^x mod p = 2^x while 2^x < p.
TEST_P(DhGroups, FromPrivateGivesTwoToTheXAndAgreesWithGeneratedPairs) {
  const DhGroup g = GetParam();
  const std::size_t n = dh_group_bytes(g);
  auto a = DhKeyPair::from_private(g, Bytes{3});
  auto b = DhKeyPair::from_private(g, Bytes{0x00, 0x05});
  auto k = DhKeyPair::from_private(g, Bytes{0x01, 0x00});  // 256: 2^256, bit 256 set
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  ASSERT_TRUE(k.ok()) << k.error();
  Bytes eight(n, 0), thirty_two(n, 0), two_256(n, 0), two_15(n, 0);
  eight.back() = 8;
  thirty_two.back() = 32;
  two_256[n - 33] = 1;
  two_15[n - 2] = 0x80;
  EXPECT_EQ(a->public_value(), eight);
  EXPECT_EQ(b->public_value(), thirty_two);
  EXPECT_EQ(k->public_value(), two_256);
  auto s = a->shared_secret(b->public_value());
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(to_bytes(*s), two_15);  // (2^3)^5
  auto r = DhKeyPair::generate(g);
  ASSERT_TRUE(r.ok());
  auto s1 = k->shared_secret(r->public_value());
  auto s2 = r->shared_secret(k->public_value());
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_TRUE(*s1 == *s2);
  EXPECT_FALSE(DhKeyPair::from_private(g, Bytes{0}).ok());
  EXPECT_FALSE(DhKeyPair::from_private(g, dh_group_prime(g)).ok());
}

INSTANTIATE_TEST_SUITE_P(Modp, DhGroups,
                         ::testing::Values(DhGroup::kModp1024, DhGroup::kModp1536,
                                           DhGroup::kModp2048));

TEST(IkeRandom, ProducesDistinctOutputs) {
  EXPECT_NE(random_bytes(16), random_bytes(16));
}

}  // namespace
}  // namespace ipsecgw::crypto
