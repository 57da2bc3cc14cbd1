// Private to crypto/: what the ESP key schedule (esp_keys.cpp) and the burst engine
// (esp_crypto.cpp) share. Includes ipsec-mb; never included outside crypto/.
#pragma once

#include <intel-ipsec-mb.h>

#include <cstddef>

#include "common/handle.hpp"
#include "common/result.hpp"
#include "crypto/esp_crypto.hpp"

namespace ipsecgw::crypto::detail {

using ImbMgrPtr = handle<IMB_MGR, free_mb_mgr>;

constexpr std::size_t kHmacBlock = 64;  // SHA-1 and SHA-256 block size (RFC 2104 §2, B = 64)

inline std::size_t digest_len(IntegAlg a) noexcept { return a == IntegAlg::kHmacSha1_96 ? 20 : 32; }

constexpr IMB_HASH_ALG imb_hash(IntegAlg a) noexcept {
  return a == IntegAlg::kHmacSha1_96 ? IMB_AUTH_HMAC_SHA_1 : IMB_AUTH_HMAC_SHA_256;
}

// Initialises `mgr` for the fastest code path the CPU has, or the one asked for.
Result<IMB_ARCH> init_mgr(IMB_MGR* mgr, Arch want);

constexpr EspAlgParams esp_alg_params_constexpr(CipherAlg cipher, IntegAlg integ) noexcept {
  EspAlgParams p;
  // AES-CBC (RFC 3602): a 16-byte IV after the ESP header, payload in whole AES blocks.
  p.iv_len = static_cast<std::uint8_t>(kMaxEspIvLen);
  p.block_align = static_cast<std::uint8_t>(kAesBlock);
  p.cipher_offset = static_cast<std::uint8_t>(8 + p.iv_len);  // SPI + seq + IV (RFC 4303 §2)
  p.icv_len = static_cast<std::uint8_t>(icv_len(integ));
  p.key_len = static_cast<std::uint8_t>(cipher_key_len(cipher));
  p.cipher_mode = static_cast<std::uint8_t>(IMB_CIPHER_CBC);
  p.hash_alg = static_cast<std::uint8_t>(imb_hash(integ));
  return p;
}

// The algorithm pairs the burst path is instantiated for (run_ops<..., Path>): every job
// parameter a compile-time constant, so the per-SA parameters cost nothing per packet. An
// EspKeySchedule names its entry in engine_path.
struct FixedAlg {
  CipherAlg cipher;
  IntegAlg integ;
};
inline constexpr FixedAlg kFixedAlgs[] = {
    {CipherAlg::kAes128Cbc, IntegAlg::kHmacSha1_96},   {CipherAlg::kAes256Cbc, IntegAlg::kHmacSha1_96},
    {CipherAlg::kAes128Cbc, IntegAlg::kHmacSha256_128}, {CipherAlg::kAes256Cbc, IntegAlg::kHmacSha256_128},
    {CipherAlg::kAes192Cbc, IntegAlg::kHmacSha1_96},   {CipherAlg::kAes192Cbc, IntegAlg::kHmacSha256_128},
};
inline constexpr unsigned kNumFixedAlgs = sizeof kFixedAlgs / sizeof kFixedAlgs[0];

}  // namespace ipsecgw::crypto::detail
