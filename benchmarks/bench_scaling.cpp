// Multi-core scaling of the ESP data path: the same per-burst work as bench_esp.cpp and
// bench_raw_crypto.cpp, run on 1, 2, 4, 8 and 16 threads at once.
//
//   BM_ScaleEspOutbound/<combo>/<len>/real_time/threads:N        esp_outbound, as BM_EspOutbound
//   BM_ScaleEspInbound/<combo>/<len>/real_time/threads:N         esp_inbound, as BM_EspInbound
//   BM_ScaleRawIpsecMb/<combo>/<len>/real_time/threads:N         raw encrypt, as BM_RawIpsecMb
//   BM_ScaleRawIpsecMbDecrypt/<combo>/<len>/real_time/threads:N  raw decrypt, as BM_RawIpsecMbDecrypt
//
// What runs on each thread: its OWN EspEngine (one IMB_MGR, as one per worker lcore in the
// gateway), its OWN SA (outbound: its own sequence numbers; inbound: its own replay window, as
// each inbound SA has one owner worker, dataplane/sa.hpp) and its OWN burst of 128 mbufs. All of
// it is built before the timing loop; nothing written in the loop is shared between threads, so
// what limits scaling is the machine (cores, SMT siblings, caches, memory bandwidth, turbo),
// not the code sharing state. Per-iteration work is exactly that of the one-thread versions
// (outbound: reset offsets + rewrite the 20-byte inner header, wrap seq; inbound: copy the
// template outer packets back + empty the replay window; the same OutboundBurst / InboundBurst
// of esp_fixture.hpp run both), so threads:1 here should match BM_EspOutbound / BM_EspInbound
// of the same combo and length.
//
// How to read it (scripts/lib/scaling_report.py prints all of this from --benchmark_format=json):
//  - items_per_second (packets/s) is the AGGREGATE over the N threads (items are summed over
//    threads and divided by wall time: UseRealTime). Per-thread rate = aggregate / N.
//  - scaling efficiency = rate(N threads) / (N x rate(1 thread)); 1.0 is perfect linear scaling.
//    Expect < 1 once N exceeds the physical cores (SMT siblings share AES/SHA units) or when
//    turbo drops with more busy cores.
//  - ours/raw = BM_ScaleEspOutbound / BM_ScaleRawIpsecMb (and Inbound / RawIpsecMbDecrypt) at
//    the same N, combo and length: the data path's own overhead at that core count. If it falls
//    as N grows, the data path scales worse than the crypto (e.g. memory traffic of the copies).
//
// Threads and CPUs. EAL runs with "-l 0", which pins the main thread to CPU 0 and every thread
// it creates (Google Benchmark's included) inherits that. So each benchmark thread first sets
// its own affinity, and restores the previous one when done (thread 0 is the main thread):
//  - IPSECGW_BENCH_PIN unset: the affinity the process started with (before EAL; taskset's
//    mask), i.e. unpinned, left to the scheduler.
//  - IPSECGW_BENCH_PIN=S: thread t on one CPU, the (k+t)-th CPU of that start mask (cyclic),
//    where k is the first CPU >= S in it. Never outside what taskset allowed; with more threads
//    than CPUs, threads share CPUs (and the figures say so).
// mbufs come from this file's own mempool (no per-lcore cache: benchmark threads are non-EAL
// threads, for which rte_pktmbuf_alloc_bulk goes straight to the thread-safe ring).
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/esp_fixture.hpp"
#include "benchmarks/raw_crypto.hpp"

namespace ipsecgw::bench {
namespace {

using namespace ipsecgw::dp;

constexpr int kMaxThreads = 16;

// ---- CPU affinity ----

// The CPUs this process may run on as it started: read during static initialisation, i.e.
// before main() runs rte_eal_init and narrows the main thread to lcore 0. Read-only afterwards.
std::vector<int> startup_cpu_list() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}
const std::vector<int> g_startup_cpus = startup_cpu_list();

// Sets the calling thread's affinity for benchmark thread `t` (see the header comment) and puts
// the previous affinity back when destroyed. Returns the CPU pinned to, or -1 (unpinned).
class ThreadAffinity {
 public:
  explicit ThreadAffinity(int t) {
    saved_ok_ = pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_) == 0;
    if (g_startup_cpus.empty()) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    const char* pin = std::getenv("IPSECGW_BENCH_PIN");
    if (pin != nullptr && *pin != '\0') {
      const int start = std::atoi(pin);
      std::size_t k = 0;  // first allowed CPU >= start, else the first allowed CPU
      while (k < g_startup_cpus.size() && g_startup_cpus[k] < start) ++k;
      if (k == g_startup_cpus.size()) k = 0;
      cpu_ = g_startup_cpus[(k + static_cast<std::size_t>(t)) % g_startup_cpus.size()];
      CPU_SET(cpu_, &set);
    } else {
      for (int c : g_startup_cpus) CPU_SET(c, &set);
    }
    set_ok_ = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
  }
  ~ThreadAffinity() {
    if (saved_ok_) pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_);
  }
  ThreadAffinity(const ThreadAffinity&) = delete;
  ThreadAffinity& operator=(const ThreadAffinity&) = delete;
  bool ok() const noexcept { return set_ok_ || g_startup_cpus.empty(); }

 private:
  cpu_set_t saved_;
  bool saved_ok_ = false;
  bool set_ok_ = false;
  int cpu_ = -1;
};

// ---- mbufs ----

// 16 threads x 128 mbufs x 2 (inbound holds its working burst and, during setup, a template
// burst) x 2 of slack. Created once (C++ magic statics are thread-safe), by whichever benchmark
// thread gets here first; no per-lcore cache, so any thread may allocate from it.
rte_mempool* scale_pool() {
  static rte_mempool* p =
      rte_pktmbuf_pool_create("bench_scale_pool", 2 * kMaxThreads * kBurst * 2 - 1, 0, 0,
                              2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  return p;
}

// Distinct SPI per thread (cosmetic: nothing looks SAs up here).
std::uint32_t thread_spi(const benchmark::State& state) {
  return 0x2000u + static_cast<std::uint32_t>(state.thread_index());
}

void bm_scale_outbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                       std::size_t len) {
  ThreadAffinity aff(state.thread_index());
  OutboundBench bench(scale_pool(), c, a, len, thread_spi(state));
  if (!aff.ok()) {
    state.SkipWithError("setup failed (affinity)");
    return;
  }
  run_esp_bursts(state, bench, len, "outbound dropped packets");
}

void bm_scale_inbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                      std::size_t len) {
  ThreadAffinity aff(state.thread_index());
  InboundBench bench(scale_pool(), c, a, len, thread_spi(state));  // its own templates
  if (!aff.ok()) {
    state.SkipWithError("setup failed (affinity)");
    return;
  }
  run_esp_bursts(state, bench, len, "inbound dropped packets");
}

void bm_scale_raw(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                  std::size_t len, bool decrypt) {
  ThreadAffinity aff(state.thread_index());
  if (!aff.ok()) {
    state.SkipWithError("setup failed (affinity)");
    return;
  }
  RawIpsecMb work(c, a, len, kBurst);  // its own IMB_MGR and buffers
  run_raw_bursts(state, work, decrypt, len);
}

benchmark::internal::Benchmark* threads(benchmark::internal::Benchmark* b) {
  return b->Threads(1)->Threads(2)->Threads(4)->Threads(8)->Threads(kMaxThreads)->UseRealTime();
}

const bool registered = [] {
  for (auto [c, a] : kEspCombos) {
    for (std::size_t len : {64, 1400}) {
      const std::string suffix = combo_name(c, a) + "/" + std::to_string(len);
      threads(benchmark::RegisterBenchmark(("BM_ScaleEspOutbound/" + suffix).c_str(),
                                           bm_scale_outbound, c, a, len));
      threads(benchmark::RegisterBenchmark(("BM_ScaleEspInbound/" + suffix).c_str(),
                                           bm_scale_inbound, c, a, len));
      threads(benchmark::RegisterBenchmark(("BM_ScaleRawIpsecMb/" + suffix).c_str(), bm_scale_raw,
                                           c, a, len, false));
      threads(benchmark::RegisterBenchmark(("BM_ScaleRawIpsecMbDecrypt/" + suffix).c_str(),
                                           bm_scale_raw, c, a, len, true));
    }
  }
  return true;
}();

}  // namespace
}  // namespace ipsecgw::bench
