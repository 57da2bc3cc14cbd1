// The raw ipsec-mb AES-CBC + HMAC rate (submitted directly to an IMB_MGR, in the gateway's bursts
// of 128), the ceiling the ESP paths are measured against. <bytes> is the INNER packet size; the
// jobs cipher and hash exactly what ESP does for it (raw_crypto.hpp: round_up(bytes + 2, 16),
// + 24 hashed).
// Through the synchronous burst API (the fastest, as EspEngine's default):
//   BM_RawIpsecMb/<combo>/<bytes>            cipher (encrypt) then hash burst, as esp_outbound
//   BM_RawIpsecMbDecrypt/<combo>/<bytes>     hash burst then cipher burst (decrypt), as esp_inbound
// The same through the job API (one job per packet, cipher and hash chained, all in flight):
//   BM_RawIpsecMbJob/<combo>/<bytes>         CIPHER_HASH jobs
//   BM_RawIpsecMbJobDecrypt/<combo>/<bytes>  HASH_CIPHER jobs
// The burst API with 16, 32, 64 or 128 packets a burst (how the gateway's 64 was chosen):
//   BM_RawCallSize[Decrypt]/<combo>/<bytes>/jobs:<n>
#include <benchmark/benchmark.h>

#include <string>
#include <utility>

#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

constexpr std::size_t kBurst = kGatewayBurst;

void bm_raw_ipsec_mb(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                     std::size_t len, bool decrypt, RawApi api) {
  RawIpsecMb work(c, a, len, kBurst, api);
  run_raw_bursts(state, work, decrypt, len);
}

// The same work with `jobs` packets a burst (one cipher and one hash call per chunk of at most
// 128): what the gateway's burst size (kGatewayBurst) was chosen from. ipsec-mb finishes every
// call by flushing its multi-buffer lanes, so the per-packet cost falls as a call carries more
// jobs (docs/performance.md, "Bursts of 128").
void bm_raw_call_size(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                      std::size_t len, bool decrypt) {
  RawIpsecMb work(c, a, len, static_cast<std::size_t>(state.range(0)), RawApi::kBurst);
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
  for (auto [c, a] : {std::pair{crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96},
                      std::pair{crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128}}) {
    for (std::size_t len : {64, 1400}) {
      const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
      for (bool decrypt : {false, true}) {
        const std::string fam = decrypt ? "BM_RawCallSizeDecrypt/" : "BM_RawCallSize/";
        benchmark::RegisterBenchmark((fam + suffix).c_str(), bm_raw_call_size, c, a, len, decrypt)
            ->ArgName("jobs")
            ->Arg(16)
            ->Arg(32)
            ->Arg(64)
            ->Arg(128);
      }
    }
  }
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
