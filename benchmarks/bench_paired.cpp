// The ours/raw ratio measured in PAIRS: the ESP data path and the raw ipsec-mb baseline timed in
// the same short window, many times, and the median of the per-window ratios kept. Robust to
// what makes two separate benchmark runs disagree on a shared VM (load and clock frequency
// changing between the two measurements): both sides of one window see the same machine.
//
//   BM_PairedOutbound/<combo>/<len>  ours = BM_EspOutbound's burst, raw = BM_RawIpsecMb's burst,
//                                    prep = the offset reset + inner-header rewrite alone
//   BM_PairedInbound/<combo>/<len>   ours = BM_EspInbound's burst, raw = BM_RawIpsecMbDecrypt's,
//                                    prep = the copy + replay reset of BM_EspInbound's burst alone
//
// One Google Benchmark iteration is one ROUND: kRoundBursts (4) bursts of 128 packets of ours,
// timed as a whole, then 4 bursts of raw, timed, then 4 bursts of prep, timed. The
// order alternates: ours first on even rounds, raw first on odd ones (prep last), so neither
// side always runs right after the other (caches, branch predictors, turbo ramps). The per-burst
// work is exactly that of the separate benchmarks (OutboundBurst / InboundBurst of
// esp_fixture.hpp, RawIpsecMb of raw_crypto.hpp), each on its own buffers, set up and run once
// (checked) before the first round. Every burst's result is checked (ours: 128 good packets, raw:
// 128 completed jobs; one compare per burst, inside the timed window on both sides).
//
// Timing: rte_rdtsc() around each side's 4 bursts (about 10 to 150 µs): the TSC is
// constant-rate and non-stop on these CPUs (constant_tsc, nonstop_tsc), and reading it costs a
// few ns, against a std::chrono::steady_clock call (clock_gettime via vDSO, ~20 ns, more on a VM
// whose clocksource falls back to a syscall). Rates use rte_get_tsc_hz() (EAL).
//
// Per round (same packet count on every side, so a time ratio is a packet-rate ratio):
//   ratio = t_raw / t_ours                     ours/raw packets per second
//   adj   = t_raw / (t_ours - t_prep)          without the per-burst RX stand-in (inbound: the
//                                              template copy; outbound: offsets + inner header)
// The per-round times are kept in vectors reserved before the loop (state.max_iterations
// entries; nothing allocates inside the loop) and reduced after it. User counters:
//   ratio, ratio_p10, ratio_p90   median, 10th and 90th percentile of the per-round ratio
//   adj, adj_p10, adj_p90         the same for adj (rounds with t_ours <= t_prep skipped)
//   sym, sym_p10, sym_p90         inbound: the raw decrypt also given freshly copied input
//                                 (raw_fresh: the copy, then the burst; raw_prep: the copy
//                                 alone), sym = (t_raw_fresh - t_raw_prep) / (t_ours - t_prep):
//                                 both sides start from the same cache state, without the copy
//   raw_fresh_pps                 inbound: median per-round rate of raw_fresh
//   ours_pps, raw_pps, prep_pps   median per-round packet rates of each side
//   rounds                        rounds measured
// No items/bytes counters: the benchmark's own time covers all sides together and means nothing.
//
// Burst against job API (docs/performance.md, "ipsec-mb burst API"), the same rounds with
// "ours" = the ESP burst on an engine using ipsec-mb's synchronous burst API (EngineApi::kBurst)
// and "raw" = the same ESP burst on an engine using the job API (EngineApi::kJob), each with its
// own engine, SA and mbufs (prep = the burst engine side's prep):
//   BM_PairedApiOutbound/<combo>/<len>, BM_PairedApiInbound/<combo>/<len>
//   ratio = t_job / t_burst   burst-API packets/s over job-API packets/s (> 1: burst faster)
//   ours_pps = the burst engine's rate, raw_pps = the job engine's
// scripts/lib/bench_report.py prints these as the "paired" table.
//
// Note: the prep side copies exactly the templates the inbound burst copies (this combo's outer
// packets, so 4 bytes shorter for the 12-byte SHA-1 ICV), into the same mbufs; BM_EspInboundPrep
// copies one SHA-256-sized template.
#include <benchmark/benchmark.h>
#include <rte_cycles.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/esp_fixture.hpp"
#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

using namespace ipsecgw::dp;

constexpr unsigned kRoundBursts = 4;
constexpr double kPacketsPerSide = static_cast<double>(kRoundBursts) * kBurst;

// The q-quantile (0..1) of v, linear interpolation between closest ranks; sorts v.
double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// The per-round TSC ticks of each side, reserved for the whole run before the timing loop.
struct Rounds {
  std::vector<std::uint64_t> ours, raw, prep;
  std::vector<std::uint64_t> raw_fresh, raw_prep;  // inbound only (sym)
  Rounds(benchmark::IterationCount n, bool with_prep, bool with_fresh = false) {
    ours.reserve(static_cast<std::size_t>(n));
    raw.reserve(static_cast<std::size_t>(n));
    if (with_prep) prep.reserve(static_cast<std::size_t>(n));
    if (with_fresh) {
      raw_fresh.reserve(static_cast<std::size_t>(n));
      raw_prep.reserve(static_cast<std::size_t>(n));
    }
  }
};

// Times `f` (the bursts of one side); f returns how many of its bursts failed.
template <class F>
inline std::uint64_t timed(F&& f, unsigned& failed) noexcept {
  const std::uint64_t t0 = rte_rdtsc();
  failed += f();
  return rte_rdtsc() - t0;
}

void set_rate(benchmark::State& state, const char* name, const std::vector<std::uint64_t>& ticks,
              double hz) {
  std::vector<double> pps;
  pps.reserve(ticks.size());
  for (std::uint64_t t : ticks) pps.push_back(kPacketsPerSide * hz / static_cast<double>(t));
  state.counters[name] = quantile(pps, 0.5);
}

void set_quantiles(benchmark::State& state, const std::string& name, std::vector<double>& v) {
  state.counters[name] = quantile(v, 0.5);
  state.counters[name + "_p10"] = quantile(v, 0.1);
  state.counters[name + "_p90"] = quantile(v, 0.9);
}

void set_counters(benchmark::State& state, const Rounds& r) {
  const auto hz = static_cast<double>(rte_get_tsc_hz());
  std::vector<double> ratio, adj, sym;
  ratio.reserve(r.ours.size());
  adj.reserve(r.prep.size());
  sym.reserve(r.raw_fresh.size());
  for (std::size_t i = 0; i < r.ours.size(); ++i) {
    ratio.push_back(static_cast<double>(r.raw[i]) / static_cast<double>(r.ours[i]));
    if (i < r.prep.size() && r.ours[i] > r.prep[i])
      adj.push_back(static_cast<double>(r.raw[i]) / static_cast<double>(r.ours[i] - r.prep[i]));
    if (i < r.raw_fresh.size() && r.ours[i] > r.prep[i] && r.raw_fresh[i] > r.raw_prep[i])
      sym.push_back(static_cast<double>(r.raw_fresh[i] - r.raw_prep[i]) /
                    static_cast<double>(r.ours[i] - r.prep[i]));
  }
  set_quantiles(state, "ratio", ratio);
  if (!r.prep.empty()) set_quantiles(state, "adj", adj);
  if (!r.raw_fresh.empty()) {
    set_quantiles(state, "sym", sym);
    set_rate(state, "raw_fresh_pps", r.raw_fresh, hz);
  }
  set_rate(state, "ours_pps", r.ours, hz);
  set_rate(state, "raw_pps", r.raw, hz);
  if (!r.prep.empty()) set_rate(state, "prep_pps", r.prep, hz);
  state.counters["rounds"] = static_cast<double>(r.ours.size());
}

// One side of a round: kRoundBursts calls of `f` (true = the burst went through), returning how
// many failed.
template <class F>
auto side(F f) {
  return [f]() mutable noexcept {
    unsigned bad = 0;
    for (unsigned i = 0; i < kRoundBursts; ++i) bad += f() ? 0u : 1u;
    return bad;
  };
}

// The rounds of both directions (see the header comment): ours and raw alternate which goes first;
// the optional fresh side (inbound's raw decrypt on freshly copied input) runs next to raw; the
// preparations alone last. Sets the counters unless a burst failed.
template <class Ours, class Raw, class Prep, class Fresh = Prep, class FreshPrep = Prep>
void run_rounds(benchmark::State& state, const char* ours_error, Ours& ours_side, Raw& raw_side,
                Prep& prep_side, Fresh* fresh_side = nullptr,
                FreshPrep* fresh_prep_side = nullptr) {
  unsigned prep_bad = 0;
  (void)timed(prep_side, prep_bad);
  if (fresh_prep_side != nullptr) (void)timed(*fresh_prep_side, prep_bad);
  Rounds r(state.max_iterations, true, fresh_side != nullptr);
  unsigned ours_bad = 0, raw_bad = 0;
  std::uint64_t round = 0;
  for (auto _ : state) {
    std::uint64_t t_ours, t_raw, t_fresh = 0;
    if ((round++ & 1) == 0) {
      t_ours = timed(ours_side, ours_bad);
      t_raw = timed(raw_side, raw_bad);
      if (fresh_side != nullptr) t_fresh = timed(*fresh_side, raw_bad);
    } else {
      if (fresh_side != nullptr) t_fresh = timed(*fresh_side, raw_bad);
      t_raw = timed(raw_side, raw_bad);
      t_ours = timed(ours_side, ours_bad);
    }
    const std::uint64_t t_prep = timed(prep_side, prep_bad);
    const std::uint64_t t_fresh_prep =
        fresh_prep_side != nullptr ? timed(*fresh_prep_side, prep_bad) : 0;
    if (ours_bad != 0 || raw_bad != 0) {
      state.SkipWithError(ours_bad != 0 ? ours_error : "ipsec-mb job failed");
      return;
    }
    r.ours.push_back(t_ours);
    r.raw.push_back(t_raw);
    r.prep.push_back(t_prep);
    if (fresh_side != nullptr) {
      r.raw_fresh.push_back(t_fresh);
      r.raw_prep.push_back(t_fresh_prep);
    }
  }
  set_counters(state, r);
}

void bm_paired_outbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                        std::size_t len) {
  OutboundBench bench(esp_bench_pool(), c, a, len);
  if (const char* e = bench.error(); e != nullptr) {
    state.SkipWithError(e);
    return;
  }
  OutboundBurst& ours = bench.work();
  RawIpsecMb raw(c, a, len, kBurst);
  auto ours_side = side([&ours] { return ours.run() == kBurst; });
  auto raw_side = side([&raw] { return raw.encrypt_burst() == kBurst; });
  // The per-burst reset + inner-header rewrite of ours.run() alone (RX stand-in).
  auto prep_side = side([&ours] {
    ours.prep();
    benchmark::ClobberMemory();
    return true;
  });
  // Warm-up, checked: one burst of each side.
  if (ours.run() != kBurst) {
    state.SkipWithError("outbound dropped packets");
    return;
  }
  if (raw.encrypt_burst() != kBurst) {
    state.SkipWithError("ipsec-mb job failed");
    return;
  }
  run_rounds(state, "outbound dropped packets", ours_side, raw_side, prep_side);
}

void bm_paired_inbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                       std::size_t len) {
  InboundBench bench(esp_bench_pool(), c, a, len);
  if (const char* e = bench.error(); e != nullptr) {
    state.SkipWithError(e);
    return;
  }
  InboundBurst& ours = bench.work();
  RawIpsecMb raw(c, a, len, kBurst);
  raw.save_fresh();
  const std::size_t fresh_bytes = ours.outer_len();  // what ours' prep copies per packet
  auto ours_side = side([&ours] { return ours.run() == kBurst; });
  auto raw_side = side([&raw] { return raw.decrypt_burst() == kBurst; });
  // The raw decrypt on freshly copied input, as ours gets (sym), and that copy alone.
  auto fresh_side = side([&raw, fresh_bytes] {
    raw.fresh(fresh_bytes);
    return raw.decrypt_burst() == kBurst;
  });
  auto fresh_prep_side = side([&raw, fresh_bytes] {
    raw.fresh(fresh_bytes);
    benchmark::ClobberMemory();
    return true;
  });
  // The copy + replay reset of ours.run() alone (into the same mbufs: the next ours burst
  // copies its templates in again before decrypting).
  auto prep_side = side([&ours] {
    ours.prep();
    benchmark::ClobberMemory();
    return true;
  });
  // Warm-up, checked: one burst of each side.
  if (ours.run() != kBurst) {
    state.SkipWithError("inbound dropped packets");
    return;
  }
  if (raw.decrypt_burst() != kBurst) {
    state.SkipWithError("ipsec-mb job failed");
    return;
  }
  run_rounds(state, "inbound dropped packets", ours_side, raw_side, prep_side, &fresh_side,
             &fresh_prep_side);
}

// Burst against job API: ours = the burst engine's ESP burst, raw = the job engine's.
template <class Bench>
void bm_paired_api(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                   std::size_t len, const char* what) {
  Bench burst(esp_bench_pool(), c, a, len, 0x1000, crypto::EngineApi::kBurst);
  Bench job(esp_bench_pool(), c, a, len, 0x2000, crypto::EngineApi::kJob);
  for (const char* e : {burst.error(), job.error()}) {
    if (e != nullptr) {
      state.SkipWithError(e);
      return;
    }
  }
  auto& b = burst.work();
  auto& j = job.work();
  auto burst_side = side([&b] { return b.run() == kBurst; });
  auto job_side = side([&j] { return j.run() == kBurst; });
  auto prep_side = side([&b] {
    b.prep();
    benchmark::ClobberMemory();
    return true;
  });
  if (b.run() != kBurst || j.run() != kBurst) {  // warm-up, checked
    state.SkipWithError(what);
    return;
  }
  run_rounds(state, what, burst_side, job_side, prep_side);
}

const bool registered = [] {
  for (auto [c, a] : kEspCombos) {
    for (std::size_t len : {64, 512, 1400}) {
      const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
      benchmark::RegisterBenchmark(("BM_PairedOutbound/" + suffix).c_str(), bm_paired_outbound,
                                   c, a, len);
      benchmark::RegisterBenchmark(("BM_PairedInbound/" + suffix).c_str(), bm_paired_inbound, c,
                                   a, len);
      benchmark::RegisterBenchmark(("BM_PairedApiOutbound/" + suffix).c_str(),
                                   bm_paired_api<OutboundBench>, c, a, len,
                                   "outbound dropped packets");
      benchmark::RegisterBenchmark(("BM_PairedApiInbound/" + suffix).c_str(),
                                   bm_paired_api<InboundBench>, c, a, len,
                                   "inbound dropped packets");
    }
  }
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
