// The raw ipsec-mb AES-CBC + HMAC rate (submitted directly to an IMB_MGR, in the gateway's bursts
// of 64), the ceiling the ESP paths are measured against. <bytes> is the INNER packet size; the
// jobs cipher and hash exactly what ESP does for it (raw_crypto.hpp: round_up(bytes + 2, 16),
// + 24 hashed).
// Through the synchronous burst API (the fastest, as EspEngine's default):
//   BM_RawIpsecMb/<combo>/<bytes>            cipher (encrypt) then hash burst, as esp_outbound
//   BM_RawIpsecMbDecrypt/<combo>/<bytes>     hash burst then cipher burst (decrypt), as esp_inbound
// The same through the job API (one job per packet, cipher and hash chained, all in flight):
//   BM_RawIpsecMbJob/<combo>/<bytes>         CIPHER_HASH jobs
//   BM_RawIpsecMbJobDecrypt/<combo>/<bytes>  HASH_CIPHER jobs
#include <benchmark/benchmark.h>

#include <string>

#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

constexpr std::size_t kBurst = kGatewayBurst;

void bm_raw_ipsec_mb(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                     std::size_t len, bool decrypt, RawApi api) {
  RawIpsecMb work(c, a, len, kBurst, api);
  run_raw_bursts(state, work, decrypt, len);
}

const bool registered = [] {
  for (auto c : {crypto::CipherAlg::kAes128Cbc, crypto::CipherAlg::kAes192Cbc,
                 crypto::CipherAlg::kAes256Cbc}) {
    for (auto a : {crypto::IntegAlg::kHmacSha1_96, crypto::IntegAlg::kHmacSha256_128}) {
      for (std::size_t len : {64, 512, 1400}) {
        const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
        for (RawApi api : {RawApi::kBurst, RawApi::kJob}) {
          const std::string fam = api == RawApi::kBurst ? "BM_RawIpsecMb" : "BM_RawIpsecMbJob";
          benchmark::RegisterBenchmark((fam + "/" + suffix).c_str(), bm_raw_ipsec_mb, c, a, len,
                                       false, api);
          benchmark::RegisterBenchmark((fam + "Decrypt/" + suffix).c_str(), bm_raw_ipsec_mb, c,
                                       a, len, true, api);
        }
      }
    }
  }
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
