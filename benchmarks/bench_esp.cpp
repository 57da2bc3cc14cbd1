// ESP data path per burst of 128 (dp::kMaxBurst, dataplane/esp.hpp), to compare with
// BM_RawIpsecMb (the same AES-CBC + HMAC work submitted straight to ipsec-mb, in place, no
// copies).
//
//   BM_EspOutbound/<combo>/<len>   esp_outbound on 128 inner packets of <len> bytes
//   BM_EspInbound/<combo>/<len>    esp_inbound on 128 outer packets carrying <len>-byte inners
//   BM_EspInboundRecorded/<combo>/<len>  the gateway's inbound path: esp_inbound_parse per
//                                  packet (the RX parse, layout kept in the mbuf), then
//                                  esp_inbound_recorded (no second parse)
//   BM_EspInboundPrep/<len>        only the per-iteration re-preparation BM_EspInbound does
//
// Fairness (how packets are re-used between iterations):
//  - Outbound re-encrypts in place like the raw baseline: each iteration only resets the mbuf
//    offsets/lengths and rewrites the 20-byte inner IPv4 header (the payload left from the last
//    round is ciphertext, which costs the same to encrypt). No payload copy on either side.
//  - Inbound must start from a valid ciphertext every time (decryption is in place), so each
//    iteration copies the template outer packet into each mbuf and empties the replay window, as
//    if RX delivered fresh packets. That copy is measured on its own in BM_EspInboundPrep/<len>;
//    subtract it for the ESP-only cost. Timing is never paused (PauseTiming costs more than the
//    copy and adds noise).
// items = packets, bytes = inner packet bytes. The SAs, packets, bursts and the per-burst work
// itself are in esp_fixture.hpp, shared with bench_scaling.cpp and bench_paired.cpp.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "benchmarks/esp_fixture.hpp"
#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

using namespace ipsecgw::dp;

void bm_outbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len) {
  OutboundBench bench(esp_bench_pool(), c, a, len);
  run_esp_bursts(state, bench, len, "outbound dropped packets");
}

void bm_inbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len) {
  InboundBench bench(esp_bench_pool(), c, a, len);
  run_esp_bursts(state, bench, len, "inbound dropped packets");
}

void bm_inbound_recorded(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                         std::size_t len) {
  InboundBench bench(esp_bench_pool(), c, a, len);
  if (const char* e = bench.error(); e != nullptr) {
    state.SkipWithError(e);
    return;
  }
  for (auto _ : state) {
    if (bench.work().run_recorded() != kBurst) {
      state.SkipWithError("inbound (recorded layout) dropped packets");
      break;
    }
    benchmark::DoNotOptimize(bench.first());
  }
  set_burst_counters(state, len, kBurst);
}

// Exactly the re-preparation bm_inbound does per iteration, without the ESP work.
void bm_inbound_prep(benchmark::State& state, std::size_t len) {
  Burst b(esp_bench_pool());
  if (!b.ok) {
    state.SkipWithError("setup failed");
    return;
  }
  InboundPrepBurst work(b, len);
  for (auto _ : state) {
    work.run();
    benchmark::DoNotOptimize(b.m[0]);
    benchmark::DoNotOptimize(work.window());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
}

const bool registered = [] {
  for (auto [c, a] : kEspCombos) {
    for (std::size_t len : {64, 512, 1400}) {
      const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
      benchmark::RegisterBenchmark(("BM_EspOutbound/" + suffix).c_str(), bm_outbound, c, a, len);
      benchmark::RegisterBenchmark(("BM_EspInbound/" + suffix).c_str(), bm_inbound, c, a, len);
      benchmark::RegisterBenchmark(("BM_EspInboundRecorded/" + suffix).c_str(),
                                   bm_inbound_recorded, c, a, len);
    }
  }
  for (std::size_t len : {64, 512, 1400})
    benchmark::RegisterBenchmark(("BM_EspInboundPrep/" + std::to_string(len)).c_str(),
                                 bm_inbound_prep, len);
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
