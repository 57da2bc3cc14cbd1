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
// each inbound SA has one owner worker, dataplane/sa.hpp) and its OWN burst of 32 mbufs. All of
// it is built before the timing loop; nothing written in the loop is shared between threads, so
// what limits scaling is the machine (cores, SMT siblings, caches, memory bandwidth, turbo),
// not the code sharing state. Per-iteration work is exactly that of the one-thread versions
// (outbound: reset offsets + rewrite the 20-byte inner header, wrap seq; inbound: copy the
// template outer packets back + empty the replay window), so threads:1 here should match
// BM_EspOutbound / BM_EspInbound of the same combo and length.
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
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/raw_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"

namespace ipsecgw::bench {
namespace {

using namespace ipsecgw::dp;

constexpr unsigned kBurst = 32;
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

// ---- mbufs and SAs ----

// 16 threads x 32 mbufs x 2 (inbound holds a template burst and its working burst, though not at
// once) plus slack. Created once (C++ magic statics are thread-safe), by whichever benchmark
// thread gets here first; no per-lcore cache, so any thread may allocate from it.
rte_mempool* scale_pool() {
  static rte_mempool* p =
      rte_pktmbuf_pool_create("bench_scale_pool", 2 * kMaxThreads * kBurst * 2 - 1, 0, 0,
                              2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  return p;
}

SaSpec spec(Direction dir, crypto::CipherAlg c, crypto::IntegAlg a, std::uint32_t spi) {
  SaSpec s;
  s.dir = dir;
  s.spi = spi;
  s.cipher = c;
  s.integ = a;
  std::vector<std::uint8_t> ek(crypto::cipher_key_len(c), 0x42), ak(crypto::integ_key_len(a), 0x24);
  s.enc_key = crypto::SecureBytes(ek.data(), ek.size());
  s.auth_key = crypto::SecureBytes(ak.data(), ak.size());
  s.local_addr = dir == Direction::kOutbound ? 0xC0000201 : 0xC6336402;
  s.peer_addr = dir == Direction::kOutbound ? 0xC6336402 : 0xC0000201;
  s.local_subnet = dir == Direction::kOutbound ? Ipv4Prefix{0x0A010000, 16} : Ipv4Prefix{0x0A020000, 16};
  s.peer_subnet = dir == Direction::kOutbound ? Ipv4Prefix{0x0A020000, 16} : Ipv4Prefix{0x0A010000, 16};
  s.mtu = 1600;
  s.replay_window = 64;
  return s;
}

std::vector<std::uint8_t> inner_packet(std::size_t len) {
  std::vector<std::uint8_t> p(len, 0xab);
  rte_ipv4_hdr hdr{};
  hdr.version_ihl = 0x45;
  hdr.total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(len));
  hdr.time_to_live = 64;
  hdr.next_proto_id = 17;
  hdr.src_addr = rte_cpu_to_be_32(0x0A010005);
  hdr.dst_addr = rte_cpu_to_be_32(0x0A020007);
  hdr.hdr_checksum = rte_ipv4_cksum(&hdr);
  std::memcpy(p.data(), &hdr, sizeof hdr);
  return p;
}

// An SA owned by one benchmark thread.
struct SaOwner {
  Sa* sa = nullptr;
  explicit SaOwner(const SaSpec& s) {
    if (auto r = sa_create(s); r) sa = r.value();
  }
  ~SaOwner() {
    if (sa != nullptr) sa_destroy(sa);
  }
  SaOwner(const SaOwner&) = delete;
  SaOwner& operator=(const SaOwner&) = delete;
};

// One thread's 32 mbufs, allocated once before the timing loop and freed after it. On its own
// cache lines (heap, alignas) so that no two threads write the same line.
struct alignas(64) Burst {
  rte_mbuf* m[kBurst] = {};
  bool ok = false;
  Burst() { ok = scale_pool() != nullptr && rte_pktmbuf_alloc_bulk(scale_pool(), m, kBurst) == 0; }
  ~Burst() {
    if (ok) rte_pktmbuf_free_bulk(m, kBurst);
  }
  Burst(const Burst&) = delete;
  Burst& operator=(const Burst&) = delete;
  void reset(std::size_t len) noexcept {
    for (rte_mbuf* x : m) {
      x->data_off = RTE_PKTMBUF_HEADROOM;
      x->data_len = static_cast<std::uint16_t>(len);
      x->pkt_len = static_cast<std::uint32_t>(len);
    }
  }
  void fill(const std::vector<std::uint8_t>& b) noexcept {
    reset(b.size());
    for (rte_mbuf* x : m) std::memcpy(rte_pktmbuf_mtod(x, void*), b.data(), b.size());
  }
};

// Per-thread state that the loop writes, heap-allocated on its own cache lines.
struct alignas(64) ThreadCtx {
  Sa* sas[kBurst] = {};
  LcoreStats stats;
};

void set_counters(benchmark::State& state, std::size_t len) {
  const auto items = static_cast<std::int64_t>(state.iterations()) * kBurst;
  state.SetItemsProcessed(items);  // summed over threads by Google Benchmark
  state.SetBytesProcessed(items * static_cast<std::int64_t>(len));
}

// Distinct SPI per thread (cosmetic: nothing looks SAs up here).
std::uint32_t thread_spi(const benchmark::State& state) {
  return 0x2000u + static_cast<std::uint32_t>(state.thread_index());
}

void bm_scale_outbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                       std::size_t len) {
  ThreadAffinity aff(state.thread_index());
  auto eng = crypto::EspEngine::create(bench_arch());
  SaOwner sa(spec(Direction::kOutbound, c, a, thread_spi(state)));
  auto b = std::make_unique<Burst>();
  auto ctx = std::make_unique<ThreadCtx>();
  if (!aff.ok() || !eng || sa.sa == nullptr || !b->ok) {
    state.SkipWithError("setup failed (affinity, engine, SA or mbufs)");
    return;
  }
  const auto inner = inner_packet(len);
  b->fill(inner);
  for (auto& s : ctx->sas) s = sa.sa;
  crypto::EspEngine& engine = *eng.value();
  for (auto _ : state) {
    b->reset(len);
    for (rte_mbuf* x : b->m) std::memcpy(rte_pktmbuf_mtod(x, void*), inner.data(), 20);
    if (sa.sa->seq_next.load(std::memory_order_relaxed) > 0x80000000u)
      sa.sa->seq_next.store(1, std::memory_order_relaxed);
    const auto good = esp_outbound(engine, b->m, ctx->sas, ctx->stats);
    if (good != kBurst) {
      state.SkipWithError("outbound dropped packets");
      break;
    }
    benchmark::DoNotOptimize(b->m[0]);
  }
  set_counters(state, len);
}

void bm_scale_inbound(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                      std::size_t len) {
  ThreadAffinity aff(state.thread_index());
  auto eng = crypto::EspEngine::create(bench_arch());
  SaOwner out_sa(spec(Direction::kOutbound, c, a, thread_spi(state)));
  SaOwner in_sa(spec(Direction::kInbound, c, a, thread_spi(state)));
  if (!aff.ok() || !eng || out_sa.sa == nullptr || in_sa.sa == nullptr) {
    state.SkipWithError("setup failed (affinity, engine or SA)");
    return;
  }
  crypto::EspEngine& engine = *eng.value();
  auto ctx = std::make_unique<ThreadCtx>();
  // This thread's 32 outer packets, sequence numbers 1..32, encrypted once with its own SA.
  std::vector<std::vector<std::uint8_t>> outers;
  {
    auto t = std::make_unique<Burst>();
    if (!t->ok) {
      state.SkipWithError("setup failed (mbufs)");
      return;
    }
    t->fill(inner_packet(len));
    for (auto& s : ctx->sas) s = out_sa.sa;
    if (esp_outbound(engine, t->m, ctx->sas, ctx->stats) != kBurst) {
      state.SkipWithError("template encryption failed");
      return;
    }
    for (rte_mbuf* x : t->m) {
      auto* p = rte_pktmbuf_mtod(x, std::uint8_t*);
      outers.emplace_back(p, p + x->pkt_len);
    }
  }
  auto b = std::make_unique<Burst>();
  if (!b->ok) {
    state.SkipWithError("setup failed (mbufs)");
    return;
  }
  for (auto& s : ctx->sas) s = in_sa.sa;
  for (auto _ : state) {
    b->reset(outers[0].size());
    for (unsigned i = 0; i < kBurst; ++i)
      std::memcpy(rte_pktmbuf_mtod(b->m[i], void*), outers[i].data(), outers[i].size());
    in_sa.sa->replay.reset(64);
    const auto good = esp_inbound(engine, b->m, ctx->sas, ctx->stats);
    if (good != kBurst) {
      state.SkipWithError("inbound dropped packets");
      break;
    }
    benchmark::DoNotOptimize(b->m[0]);
  }
  set_counters(state, len);
}

void bm_scale_raw(benchmark::State& state, crypto::CipherAlg c, crypto::IntegAlg a,
                  std::size_t len, bool decrypt) {
  ThreadAffinity aff(state.thread_index());
  if (!aff.ok()) {
    state.SkipWithError("setup failed (affinity)");
    return;
  }
  RawIpsecMb work(c, a, len, kBurst);  // its own IMB_MGR and buffers
  for (auto _ : state) {
    std::size_t done = decrypt ? work.decrypt_burst() : work.encrypt_burst();
    benchmark::DoNotOptimize(done);
    if (done != kBurst) {
      state.SkipWithError("ipsec-mb job failed");
      break;
    }
  }
  set_counters(state, len);
}

benchmark::internal::Benchmark* threads(benchmark::internal::Benchmark* b) {
  return b->Threads(1)->Threads(2)->Threads(4)->Threads(8)->Threads(kMaxThreads)->UseRealTime();
}

const bool registered = [] {
  const std::pair<crypto::CipherAlg, crypto::IntegAlg> combos[] = {
      {crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96},
      {crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128}};
  for (auto [c, a] : combos) {
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
