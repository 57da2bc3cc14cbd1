// What the ESP crypto tests (test_esp_crypto.cpp, test_esp_burst.cpp) check EspEngine against:
// OpenSSL's AES-CBC and HMAC as an independent implementation, the SA they key both from and
// random test data.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "crypto/esp_crypto.hpp"

namespace ipsecgw::crypto::test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes random_bytes(std::mt19937_64& rng, std::size_t n) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

// The algorithms and keys, kept for the OpenSSL references, with the engine's key schedule.
struct Sa {
  CipherAlg c;
  IntegAlg a;
  Bytes ekey, akey;
  EspKeySchedule ks;
};

// ---- OpenSSL references --------------------------------------------------------------------

inline const EVP_CIPHER* evp_cipher(CipherAlg c) {
  switch (c) {
    case CipherAlg::kAes128Cbc: return EVP_aes_128_cbc();
    case CipherAlg::kAes192Cbc: return EVP_aes_192_cbc();
    case CipherAlg::kAes256Cbc: return EVP_aes_256_cbc();
  }
  return nullptr;
}

// AES-CBC without padding; `iv` is 16 bytes.
inline Bytes ossl_cbc(CipherAlg c, const Bytes& key, const std::uint8_t* iv, const Bytes& in,
                      bool enc) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(in.size() + 16);
  int n1 = 0, n2 = 0;
  EXPECT_EQ(EVP_CipherInit_ex(ctx, evp_cipher(c), nullptr, key.data(), iv, enc ? 1 : 0), 1);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  EXPECT_EQ(EVP_CipherUpdate(ctx, out.data(), &n1, in.data(), static_cast<int>(in.size())), 1);
  EXPECT_EQ(EVP_CipherFinal_ex(ctx, out.data() + n1, &n2), 1);
  EVP_CIPHER_CTX_free(ctx);
  out.resize(static_cast<std::size_t>(n1 + n2));
  return out;
}

// The full HMAC (20 bytes for SHA-1, 32 for SHA-256).
inline Bytes ossl_hmac(IntegAlg a, const Bytes& key, const std::uint8_t* msg, std::size_t len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  HMAC(a == IntegAlg::kHmacSha1_96 ? EVP_sha1() : EVP_sha256(), key.data(),
       static_cast<int>(key.size()), msg, len, md, &mdlen);
  return Bytes(md, md + mdlen);
}

// HMAC truncated to the ESP ICV length.
inline Bytes ossl_icv(IntegAlg a, const Bytes& key, const std::uint8_t* msg, std::size_t len) {
  Bytes md = ossl_hmac(a, key, msg, len);
  md.resize(icv_len(a));
  return md;
}

}  // namespace ipsecgw::crypto::test
