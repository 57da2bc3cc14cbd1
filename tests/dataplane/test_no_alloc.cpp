// Zero heap allocation per packet: malloc, calloc, realloc, free, posix_memalign,
// aligned_alloc and memalign (and so operator new/delete) are interposed in this executable and
// counted while armed; so are rte_malloc, rte_zmalloc, rte_calloc, rte_realloc (and their
// _socket forms) and rte_free, interposed over DPDK's shared librte_eal (forwarded with
// dlsym(RTLD_NEXT); the heap statistics cannot show an allocation freed again in the same
// window: their alloc_count is what is in use). After a warm-up, bursts through esp_outbound,
// esp_inbound and the whole gateway worker (net_ring ports, GatewayTest) must allocate nothing.
//
// Direct ESP calls count on the calling thread only; the gateway counts on worker lcores only
// (the test's own thread builds frames and reads the TX rings with std::vector meanwhile).
#include <gtest/gtest.h>
#include <dlfcn.h>
#include <malloc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "dataplane/esp.hpp"
#include "gateway_test.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// The sanitizers own malloc: their allocator's hooks count instead of interposed functions.
#define IPSECGW_SANITIZER_MALLOC 1
// From the sanitizer runtime (compiler-rt's allocator_interface.h; gcc ships no such header).
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, std::size_t), void (*free_hook)(const volatile void*));
#endif

namespace {

enum class Scope : int { kOff, kThisThread, kWorkers };
std::atomic<int> g_scope{static_cast<int>(Scope::kOff)};
std::atomic<std::uint64_t> g_allocs{0}, g_rte_allocs{0};
thread_local bool t_counted = false;  // kThisThread: the arming thread

inline void note_alloc(std::atomic<std::uint64_t>& counter = g_allocs) noexcept {
  const auto s = static_cast<Scope>(g_scope.load(std::memory_order_relaxed));
  if (s == Scope::kOff) return;
  if (s == Scope::kThisThread && !t_counted) return;
  if (s == Scope::kWorkers) {
    const unsigned id = rte_lcore_id();
    if (id == LCORE_ID_ANY || id == rte_get_main_lcore()) return;
  }
  counter.fetch_add(1, std::memory_order_relaxed);
}

template <class F>
F next_symbol(const char* name) {
  void* p = dlsym(RTLD_NEXT, name);
  if (p == nullptr) std::abort();
  return reinterpret_cast<F>(p);
}

}  // namespace

#ifdef IPSECGW_SANITIZER_MALLOC
namespace {
void on_sanitizer_malloc(const volatile void*, std::size_t) { note_alloc(); }
void on_sanitizer_free(const volatile void*) { note_alloc(); }
// Installed before main(): every allocation and free from then on goes through them.
const int g_hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(on_sanitizer_malloc, on_sanitizer_free);
}  // namespace
extern "C" {
#else
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) {
  note_alloc();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  note_alloc();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  note_alloc();
  return __libc_realloc(p, n);
}
void free(void* p) {
  if (p != nullptr) note_alloc();
  __libc_free(p);
}
void* memalign(std::size_t al, std::size_t n) {
  note_alloc();
  return __libc_memalign(al, n);
}
void* aligned_alloc(std::size_t al, std::size_t n) {
  note_alloc();
  return __libc_memalign(al, n);
}
int posix_memalign(void** out, std::size_t al, std::size_t n) {
  note_alloc();
  void* p = __libc_memalign(al, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
#endif  // IPSECGW_SANITIZER_MALLOC

// DPDK's heap, counted and forwarded to librte_eal.
#define IPSECGW_RTE_HOOK(ret, name, params, args)                 \
  ret name params {                                                \
    static const auto next = next_symbol<ret(*) params>(#name);    \
    note_alloc(g_rte_allocs);                                      \
    return next args;                                              \
  }
IPSECGW_RTE_HOOK(void*, rte_malloc, (const char* t, size_t n, unsigned a), (t, n, a))
IPSECGW_RTE_HOOK(void*, rte_zmalloc, (const char* t, size_t n, unsigned a), (t, n, a))
IPSECGW_RTE_HOOK(void*, rte_calloc, (const char* t, size_t k, size_t n, unsigned a), (t, k, n, a))
IPSECGW_RTE_HOOK(void*, rte_realloc, (void* p, size_t n, unsigned a), (p, n, a))
IPSECGW_RTE_HOOK(void*, rte_malloc_socket, (const char* t, size_t n, unsigned a, int s),
                 (t, n, a, s))
IPSECGW_RTE_HOOK(void*, rte_zmalloc_socket, (const char* t, size_t n, unsigned a, int s),
                 (t, n, a, s))
IPSECGW_RTE_HOOK(void*, rte_calloc_socket, (const char* t, size_t k, size_t n, unsigned a, int s),
                 (t, k, n, a, s))
IPSECGW_RTE_HOOK(void*, rte_realloc_socket, (void* p, size_t n, unsigned a, int s), (p, n, a, s))
void rte_free(void* p) {
  static const auto next = next_symbol<void (*)(void*)>("rte_free");
  if (p != nullptr) note_alloc(g_rte_allocs);
  next(p);
}
}  // extern "C"

namespace ipsecgw::dp {
namespace {

std::string drops(const LcoreStats& st) {
  std::string s;
  for (unsigned r = 0; r < kDropReasonCount; ++r)
    if (st.drops[r] != 0)
      s += std::string(to_string(static_cast<DropReason>(r))) + "=" + std::to_string(st.drops[r]) + " ";
  return s;
}

// Counts heap allocations (libc and rte_malloc) between construction and stop().
class AllocCounter {
 public:
  explicit AllocCounter(Scope s) {
    g_allocs.store(0);
    g_rte_allocs.store(0);
    t_counted = true;
    g_scope.store(static_cast<int>(s));
  }
  ~AllocCounter() { stop(); }
  void stop() {
    if (stopped_) return;
    g_scope.store(static_cast<int>(Scope::kOff));
    t_counted = false;
    libc_ = g_allocs.load();
    rte_ = g_rte_allocs.load();
    stopped_ = true;
  }
  std::uint64_t libc() const { return libc_; }
  std::uint64_t rte() const { return rte_; }

 private:
  std::uint64_t libc_ = 0, rte_ = 0;
  bool stopped_ = false;
};

class NoAlloc : public GatewayTest {
 protected:
  void SetUp() override {
#ifdef IPSECGW_SANITIZER_MALLOC
    ASSERT_NE(g_hooks_installed, 0) << "the sanitizer's allocator hooks were not installed";
#endif
    ASSERT_NO_FATAL_FAILURE(GatewayTest::SetUp());
  }
  // n mbufs holding `frame` (outside the counted window).
  std::vector<rte_mbuf*> mbufs(const Bytes& frame, unsigned n) {
    std::vector<rte_mbuf*> v;
    for (unsigned i = 0; i < n; ++i) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool_);
      EXPECT_NE(m, nullptr);
      if (m == nullptr) break;
      std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size())), frame.data(),
                  frame.size());
      v.push_back(m);
    }
    return v;
  }
  static void free_all(std::vector<rte_mbuf*>& v) {
    for (rte_mbuf* m : v) rte_pktmbuf_free(m);
    v.clear();
  }
};

// esp_outbound then esp_inbound on full bursts (an SA pair: what one encrypts the other
// decrypts), 64 and 1400 bytes, both crypto suites of the fixed engine paths and the
// generic one (AES-192).
TEST_F(NoAlloc, EspOutboundAndInboundBurstsAllocateNothing) {
  for (const Combo& c : kCombos) {
    // Our outbound SA and the receiver of its packets (make_spec's pair).
    OutSaPtr tx = create_sa<OutboundSa>(make_spec(Direction::kOutbound, c, false, 0x3000));
    InSaPtr rx = create_sa<InboundSa>(make_spec(Direction::kInbound, c, false, 0x3000));
    ASSERT_TRUE(tx && rx);
    for (std::size_t payload : {36u, 1372u}) {
      const Bytes inner = make_inner(payload, kLocalHost, kPeerHost);
      std::uint64_t out_libc = 0, out_rte = 0, in_libc = 0, in_rte = 0, good = 0;
      LcoreStats st;
      for (unsigned round = 0; round < 20; ++round) {
        std::vector<rte_mbuf*> v = mbufs(inner, kMaxBurst);
        std::vector<OutboundSa*> osas(v.size(), tx.get());
        std::vector<InboundSa*> isas(v.size(), rx.get());
        const bool warm = round >= 2;
        AllocCounter co(warm ? Scope::kThisThread : Scope::kOff);
        const std::uint16_t n_out = esp_outbound(*engine_, std::span<rte_mbuf*>(v),
                                                 std::span<OutboundSa* const>(osas), st);
        co.stop();
        AllocCounter ci(warm ? Scope::kThisThread : Scope::kOff);
        const std::uint16_t n_in = esp_inbound(*engine_, std::span<rte_mbuf*>(v.data(), n_out),
                                               std::span<InboundSa* const>(isas.data(), n_out), st);
        ci.stop();
        if (warm) {
          out_libc += co.libc(), out_rte += co.rte(), in_libc += ci.libc(), in_rte += ci.rte();
          good += n_in;
        }
        free_all(v);
      }
      const std::string what = combo_name(c, false) + " " + std::to_string(payload);
      EXPECT_EQ(good, 18u * kMaxBurst) << what << ": " << drops(st);
      EXPECT_EQ(out_libc, 0u) << what << ": esp_outbound malloc/free per burst";
      EXPECT_EQ(out_rte, 0u) << what << ": esp_outbound rte_malloc per burst";
      EXPECT_EQ(in_libc, 0u) << what << ": esp_inbound malloc/free per burst";
      EXPECT_EQ(in_rte, 0u) << what << ": esp_inbound rte_malloc per burst";
    }
  }
}

// The counter sees what it must: an allocation on the counted thread, and none from another.
TEST_F(NoAlloc, CounterSeesAnAllocationOnTheCountedThreadOnly) {
  AllocCounter c(Scope::kThisThread);
  std::thread([] { delete new int(1); }).join();
  void* volatile p = std::malloc(16);
  std::free(p);
  c.stop();
  EXPECT_GE(c.libc(), 2u);
  AllocCounter r(Scope::kThisThread);
  void* q = rte_malloc(nullptr, 64, 0);
  rte_free(q);
  r.stop();
  EXPECT_GE(r.rte(), 2u);  // rte_malloc (and the rte_malloc_socket it calls) and rte_free
}

// The gateway's worker, outbound and inbound traffic through the net_ring ports: after a
// warm-up round, rounds of bursts allocate nothing on the worker lcore (libc) or anywhere
// (rte_malloc; the control loop is not polled while counting).
TEST_F(NoAlloc, GatewayWorkerBurstsAllocateNothing) {
  boot();
  install_tunnel();
  const Bytes out_frame = eth(p_.mac, kHostMac, 0x0800, make_inner(64, kLocalHost, kPeerHost));
  // Inbound frames carry the peer's sequence numbers 1.. (replay window): a fresh peer SA per
  // frame would repeat seq 1, so one peer SA encrypts them all up front.
  OutSaPtr peer = peer_tx_sa();
  std::vector<Bytes> in_frames;
  for (unsigned i = 0; i < 6 * 64; ++i)
    in_frames.push_back(eth(u_.mac, kUnprotGwMac, 0x0800,
                            encrypt(peer.get(), make_inner(64, kPeerHost, kLocalHost))));
  unsigned next_in = 0;
  auto round = [&](Scope s) {
    AllocCounter c(s);
    for (unsigned i = 0; i < 64; ++i) {
      EXPECT_TRUE(try_inject(p_, 0, out_frame));
      EXPECT_TRUE(try_inject(u_, 0, in_frames[next_in++]));
    }
    // Until both ports transmitted the 64 frames (rte_ring_count: no allocation here).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while ((rte_ring_count(u_.tx) < 64 || rte_ring_count(p_.tx) < 64) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    c.stop();
    return std::pair{c.libc(), c.rte()};
  };
  (void)round(Scope::kOff);  // warm-up
  EXPECT_EQ(take_tx(u_).size(), 64u);
  EXPECT_EQ(take_tx(p_).size(), 64u);
  std::uint64_t libc = 0, rte = 0;
  for (int r = 0; r < 5; ++r) {
    const auto [l, x] = round(Scope::kWorkers);
    libc += l;
    rte += x;
    EXPECT_EQ(take_tx(u_).size(), 64u);
    EXPECT_EQ(take_tx(p_).size(), 64u);
  }
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.esp_out_packets, 6u * 64) << drops(t);
  EXPECT_EQ(t.esp_in_packets, 6u * 64) << drops(t);
  EXPECT_EQ(libc, 0u) << "malloc/free on the worker lcore while forwarding";
  EXPECT_EQ(rte, 0u) << "rte_malloc while forwarding";
}

}  // namespace
}  // namespace ipsecgw::dp
