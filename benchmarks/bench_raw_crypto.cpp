// The raw ipsec-mb AES-CBC + HMAC rate (jobs submitted directly to an IMB_MGR, bursts of 32), the
// ceiling the ESP paths are measured against. <bytes> is the INNER packet size; the jobs cipher
// and hash exactly what ESP does for it (raw_crypto.hpp: round_up(bytes + 2, 16), + 24 hashed).
//   BM_RawIpsecMb/<combo>/<bytes>         encrypt then HMAC (CIPHER_HASH), as esp_outbound
//   BM_RawIpsecMbDecrypt/<combo>/<bytes>  HMAC then decrypt (HASH_CIPHER), as esp_inbound
#include <benchmark/benchmark.h>

#include <string>

#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

constexpr std::size_t kBurst = 32;

void bm_raw_ipsec_mb(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                     std::size_t len, bool decrypt) {
  RawIpsecMb work(c, a, len, kBurst);
  run_raw_bursts(state, work, decrypt, len);
}

const bool registered = [] {
  for (auto c : {crypto::CipherAlg::kAes128Cbc, crypto::CipherAlg::kAes192Cbc,
                 crypto::CipherAlg::kAes256Cbc}) {
    for (auto a : {crypto::IntegAlg::kHmacSha1_96, crypto::IntegAlg::kHmacSha256_128}) {
      for (std::size_t len : {64, 512, 1400}) {
        const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
        benchmark::RegisterBenchmark(("BM_RawIpsecMb/" + suffix).c_str(), bm_raw_ipsec_mb, c, a,
                                     len, false);
        benchmark::RegisterBenchmark(("BM_RawIpsecMbDecrypt/" + suffix).c_str(), bm_raw_ipsec_mb,
                                     c, a, len, true);
      }
    }
  }
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
