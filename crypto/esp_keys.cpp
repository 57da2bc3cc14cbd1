// ESP key schedules: per-SA algorithm parameters, AES key expansion and HMAC pads
// (control side; the per-packet engine is esp_crypto.cpp).
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>
#include <string>

#include "crypto/esp_crypto.hpp"
#include "crypto/esp_crypto_internal.hpp"

namespace ipsecgw::crypto {

using namespace detail;

namespace {

// A manager for the control-side helpers (key expansion, pad hashing), one per thread so that
// make_key_schedule is thread-safe without locks.
IMB_MGR* control_mgr() noexcept {
  thread_local ImbMgrPtr mgr = []() noexcept {
    ImbMgrPtr m(alloc_mb_mgr(0));
    if (m && !init_mgr(m.get(), Arch::kAuto).ok()) m.reset();
    return m;
  }();
  return mgr.get();
}

}  // namespace

static_assert(IMB_CIPHER_NUM <= 256 && IMB_AUTH_NUM <= 256, "EspAlgParams keeps them in a byte");
static_assert(EspAlgParams{}.cipher_mode == IMB_CIPHER_CBC &&
              EspAlgParams{}.hash_alg == IMB_AUTH_HMAC_SHA_1, "defaults: AES-CBC, HMAC-SHA1");


EspAlgParams esp_alg_params(CipherAlg cipher, IntegAlg integ) noexcept {
  return esp_alg_params_constexpr(cipher, integ);
}

namespace {
bool same_params(const EspAlgParams& a, const EspAlgParams& b) noexcept {
  return a.iv_len == b.iv_len && a.block_align == b.block_align &&
         a.cipher_offset == b.cipher_offset && a.icv_len == b.icv_len && a.key_len == b.key_len &&
         a.cipher_mode == b.cipher_mode && a.hash_alg == b.hash_alg;
}

// A schedule gets a fixed path only when its parameters are exactly that pair's (anything
// else, e.g. a schedule with only HMAC pads, runs the generic path).
void select_engine_path(EspKeySchedule& ks) noexcept {
  ks.engine_path = EspKeySchedule::kGenericEnginePath;
  for (unsigned i = 0; i < kNumFixedAlgs; ++i) {
    const FixedAlg& f = kFixedAlgs[i];
    if (ks.cipher == f.cipher && ks.integ == f.integ &&
        same_params(ks.alg, esp_alg_params_constexpr(f.cipher, f.integ))) {
      ks.engine_path = static_cast<std::uint8_t>(i);
      return;
    }
  }
}

}  // namespace

std::string_view to_string(CipherAlg c) noexcept {
  switch (c) {
    case CipherAlg::kAes128Cbc: return "aes-128-cbc";
    case CipherAlg::kAes192Cbc: return "aes-192-cbc";
    case CipherAlg::kAes256Cbc: return "aes-256-cbc";
  }
  return "unknown-cipher";
}

std::string_view to_string(IntegAlg a) noexcept {
  switch (a) {
    case IntegAlg::kHmacSha1_96: return "hmac-sha1-96";
    case IntegAlg::kHmacSha256_128: return "hmac-sha256-128";
  }
  return "unknown-integ";
}

EspKeySchedule::~EspKeySchedule() { wipe(); }

void EspKeySchedule::wipe() noexcept {
  OPENSSL_cleanse(round_keys, sizeof(round_keys));
  OPENSSL_cleanse(ipad, sizeof(ipad));
  OPENSSL_cleanse(opad, sizeof(opad));
}

// HMAC(K, m) = H((K' ^ opad) | H((K' ^ ipad) | m)), K' = K zero-padded to B bytes, or H(K) if
// K is longer than B (RFC 2104 §2). ipsec-mb takes the hash states after the first block of each
// of the two hashes, so we run exactly one compression on (K' ^ ipad) and on (K' ^ opad).
Result<void> make_hmac_pads(EspKeySchedule& out, IntegAlg integ,
                            std::span<const std::uint8_t> key) {
  IMB_MGR* mgr = control_mgr();
  if (mgr == nullptr) return make_error("ipsec-mb manager unavailable");
  if (integ != IntegAlg::kHmacSha1_96 && integ != IntegAlg::kHmacSha256_128) {
    return make_error("unknown integrity algorithm");
  }

  alignas(16) std::uint8_t kprime[kHmacBlock] = {};
  if (key.size() > kHmacBlock) {
    unsigned int len = 0;
    const EVP_MD* md = integ == IntegAlg::kHmacSha1_96 ? EVP_sha1() : EVP_sha256();
    if (EVP_Digest(key.data(), key.size(), kprime, &len, md, nullptr) != 1) {
      return make_error(std::string("hashing the long HMAC key for ") +
                        std::string(to_string(integ)) + " failed");
    }
  } else if (!key.empty()) {
    std::memcpy(kprime, key.data(), key.size());
  }

  alignas(16) std::uint8_t block[kHmacBlock];
  for (std::size_t i = 0; i < kHmacBlock; ++i) block[i] = kprime[i] ^ 0x36;
  std::memset(out.ipad, 0, sizeof(out.ipad));
  if (integ == IntegAlg::kHmacSha1_96) {
    IMB_SHA1_ONE_BLOCK(mgr, block, out.ipad);
  } else {
    IMB_SHA256_ONE_BLOCK(mgr, block, out.ipad);
  }
  for (std::size_t i = 0; i < kHmacBlock; ++i) block[i] = kprime[i] ^ 0x5c;
  std::memset(out.opad, 0, sizeof(out.opad));
  if (integ == IntegAlg::kHmacSha1_96) {
    IMB_SHA1_ONE_BLOCK(mgr, block, out.opad);
  } else {
    IMB_SHA256_ONE_BLOCK(mgr, block, out.opad);
  }
  OPENSSL_cleanse(kprime, sizeof(kprime));
  OPENSSL_cleanse(block, sizeof(block));

  out.integ = integ;
  out.icv_bytes = static_cast<std::uint8_t>(icv_len(integ));
  out.alg.icv_len = out.icv_bytes;
  out.alg.hash_alg = static_cast<std::uint8_t>(imb_hash(integ));
  select_engine_path(out);
  return {};
}

Result<void> make_key_schedule(EspKeySchedule& out, CipherAlg cipher,
                               std::span<const std::uint8_t> enc_key, IntegAlg integ,
                               std::span<const std::uint8_t> auth_key, KeyUse first) {
  const std::size_t want_enc = cipher_key_len(cipher);
  if (want_enc == 0) return make_error("unknown encryption algorithm");
  if (enc_key.size() != want_enc) {
    return make_error("encryption key for " + std::string(to_string(cipher)) + " must be " +
                      std::to_string(want_enc) + " bytes, got " +
                      std::to_string(enc_key.size()));
  }
  if (integ != IntegAlg::kHmacSha1_96 && integ != IntegAlg::kHmacSha256_128) {
    return make_error("unknown integrity algorithm");
  }
  // RFC 2404 §3 / RFC 4868 §2.1.1: ESP uses the full-length HMAC key (160 / 256 bits).
  const std::size_t want_auth = integ_key_len(integ);
  if (auth_key.size() != want_auth) {
    return make_error("integrity key for " + std::string(to_string(integ)) + " must be " +
                      std::to_string(want_auth) + " bytes, got " +
                      std::to_string(auth_key.size()));
  }
  IMB_MGR* mgr = control_mgr();
  if (mgr == nullptr) return make_error("ipsec-mb manager unavailable");

  out.wipe();
  out.enc_off = first == KeyUse::kEncrypt ? 0 : EspKeySchedule::kRoundKeyBytes;
  out.dec_off = first == KeyUse::kEncrypt ? EspKeySchedule::kRoundKeyBytes : 0;
  std::uint8_t* enc = out.round_keys + out.enc_off;
  std::uint8_t* dec = out.round_keys + out.dec_off;
  switch (cipher) {
    case CipherAlg::kAes128Cbc:
      IMB_AES_KEYEXP_128(mgr, enc_key.data(), enc, dec);
      break;
    case CipherAlg::kAes192Cbc:
      IMB_AES_KEYEXP_192(mgr, enc_key.data(), enc, dec);
      break;
    case CipherAlg::kAes256Cbc:
      IMB_AES_KEYEXP_256(mgr, enc_key.data(), enc, dec);
      break;
  }
  out.cipher = cipher;
  out.cipher_key_bytes = static_cast<std::uint8_t>(want_enc);
  out.alg = esp_alg_params(cipher, integ);
  if (auto r = make_hmac_pads(out, integ, auth_key); !r) {
    out.wipe();
    return r;
  }
  return {};
}

}  // namespace ipsecgw::crypto
