// What the ESP data-path benchmarks (bench_esp.cpp, bench_scaling.cpp, bench_paired.cpp) share:
// the SAs, the inner packet, a burst of 128 mbufs, and the per-burst work of BM_EspOutbound,
// BM_EspInbound and BM_EspInboundPrep, so that every benchmark that says "as BM_EspOutbound"
// runs exactly the same code per burst. Header-only (inline), namespace ipsecgw::bench.
//
// The per-burst work (one Google Benchmark iteration of the one-thread benchmarks):
//  - OutboundBurst::run(): reset the mbuf offsets/lengths, rewrite the 20-byte inner IPv4 header
//    (the payload left from the last burst is ciphertext, which costs the same to encrypt: no
//    payload copy, as the raw baseline ciphers in place), wrap the sequence number well before
//    it runs out, esp_outbound.
//  - InboundBurst::run(): prep() = copy the 32 template outer packets (sequence numbers 1..32,
//    encrypted once at setup) back into the mbufs and empty the replay window, as if RX
//    delivered fresh packets (decryption is in place); then esp_inbound.
//  - InboundPrepBurst::run(): BM_EspInboundPrep's stand-alone copy of one outer-sized template
//    into each mbuf + a replay window reset.
// All of it is noexcept and allocation-free; the constructors allocate.
#pragma once

#include <benchmark/benchmark.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "benchmarks/raw_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"

namespace ipsecgw::bench {

// Packets per burst, on both sides of every comparison.
inline constexpr unsigned kBurst = kGatewayBurst;
static_assert(kBurst == dp::kMaxBurst, "the benchmarks' bursts are the gateway's");

// The two combos of the ESP benchmarks (the raw ones cover more): names "aes128-sha1" and
// "aes256-sha256" (combo_name).
inline constexpr std::array<std::pair<crypto::CipherAlg, crypto::IntegAlg>, 2> kEspCombos = {{
    {crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96},
    {crypto::CipherAlg::kAes256Cbc, crypto::IntegAlg::kHmacSha256_128},
}};

// The mempool of the one-thread ESP benchmarks (bench_esp.cpp, bench_paired.cpp): one pool for
// the whole process (an inline function's static is shared by every translation unit), created
// on first use. No per-lcore cache. nullptr when creation failed.
inline rte_mempool* esp_bench_pool() {
  static rte_mempool* p = rte_pktmbuf_pool_create("bench_esp_pool", 2047, 0, 0,
                                                  2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  return p;
}

// A plain tunnel-mode SA 192.0.2.1 <-> 198.51.100.2 for 10.1/16 <-> 10.2/16, keys 0x42../0x24..
// (the same keys RawIpsecMb uses), MTU 1600, replay window 64.
inline dp::SaSpec esp_sa_spec(dp::Direction dir, crypto::CipherAlg c, crypto::IntegAlg a,
                              std::uint32_t spi = 0x1000) {
  using dp::Direction;
  using dp::Ipv4Prefix;
  dp::SaSpec s;
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

// A `len`-byte inner IPv4/UDP packet 10.1.0.5 -> 10.2.0.7 (inside both SAs' selectors), payload
// 0xab, valid header checksum.
inline std::vector<std::uint8_t> inner_packet(std::size_t len) {
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

// An SA (S = dp::InboundSa or dp::OutboundSa) created from `s` and destroyed with the object;
// sa == nullptr when creation failed.
template <class S>
struct SaOwner {
  S* sa = nullptr;
  explicit SaOwner(const dp::SaSpec& s) {
    if (auto r = dp::sa_create<S>(s); r) sa = r.value();
  }
  ~SaOwner() {
    if (sa != nullptr) dp::sa_destroy(sa);
  }
  SaOwner(const SaOwner&) = delete;
  SaOwner& operator=(const SaOwner&) = delete;
};

// 32 mbufs from `pool`, allocated at construction and freed with the object (ok == false when
// the pool is null or empty). On its own cache lines, so that bursts of different threads never
// share one.
struct alignas(64) Burst {
  rte_mbuf* m[kBurst] = {};
  bool ok = false;
  explicit Burst(rte_mempool* pool) {
    ok = pool != nullptr && rte_pktmbuf_alloc_bulk(pool, m, kBurst) == 0;
  }
  ~Burst() {
    if (ok) rte_pktmbuf_free_bulk(m, kBurst);
  }
  Burst(const Burst&) = delete;
  Burst& operator=(const Burst&) = delete;
  // Points every mbuf at `len` bytes from the default headroom (no copy).
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

// BM_EspOutbound's per-burst work on `b` through `sa` (see the header comment). The SA table of
// the burst and the counters live here, on this object's own cache lines.
class alignas(64) OutboundBurst {
 public:
  OutboundBurst(crypto::EspEngine& engine, dp::OutboundSa* sa, Burst& b, std::size_t len)
      : engine_(engine), sa_(sa), b_(b), len_(len), inner_(inner_packet(len)) {
    b_.fill(inner_);
    for (auto& s : sas_) s = sa_;
  }
  // What run() does before esp_outbound, standing in for RX delivering fresh inner packets:
  // mbuf offsets and lengths reset, the 20-byte inner header rewritten (the last round left
  // ciphertext there), the sequence number kept far from exhaustion.
  void prep() noexcept {
    b_.reset(len_);
    for (rte_mbuf* x : b_.m) std::memcpy(rte_pktmbuf_mtod(x, void*), inner_.data(), 20);
    if (sa_->seq_next.load(std::memory_order_relaxed) > 0x80000000u)
      sa_->seq_next.store(1, std::memory_order_relaxed);
  }
  // Returns the packets esp_outbound reports good (kBurst when all went through).
  unsigned run() noexcept {
    prep();
    return dp::esp_outbound(engine_, b_.m, sas_, stats_);
  }
  rte_mbuf* first() const noexcept { return b_.m[0]; }

 private:
  dp::OutboundSa* sas_[kBurst] = {};
  dp::LcoreStats stats_;
  crypto::EspEngine& engine_;
  dp::OutboundSa* sa_;
  Burst& b_;
  std::size_t len_;
  std::vector<std::uint8_t> inner_;
};

// BM_EspInbound's per-burst work on `b` through `in_sa`: the 32 template outer packets
// (sequence numbers 1..32) are `len`-byte inner packets encrypted once, here, through `out_sa`
// (same keys) on a temporary burst from `pool`. error() is non-null when that setup failed.
class alignas(64) InboundBurst {
 public:
  InboundBurst(crypto::EspEngine& engine, dp::OutboundSa* out_sa, dp::InboundSa* in_sa, Burst& b,
               rte_mempool* pool, std::size_t len)
      : engine_(engine), in_sa_(in_sa), b_(b) {
    {
      Burst t(pool);
      if (!t.ok) {
        error_ = "setup failed (mbufs)";
        return;
      }
      t.fill(inner_packet(len));
      dp::OutboundSa* out_sas[kBurst];
      for (auto& s : out_sas) s = out_sa;
      if (dp::esp_outbound(engine_, t.m, out_sas, stats_) != kBurst) {
        error_ = "template encryption failed";
        return;
      }
      for (rte_mbuf* x : t.m) {
        auto* p = rte_pktmbuf_mtod(x, std::uint8_t*);
        outers_.emplace_back(p, p + x->pkt_len);
      }
    }
    for (auto& s : sas_) s = in_sa_;
  }
  const char* error() const noexcept { return error_; }

  // The copy + replay-window reset that run() does before esp_inbound.
  void prep() noexcept {
    b_.reset(outers_[0].size());
    for (unsigned i = 0; i < kBurst; ++i)
      std::memcpy(rte_pktmbuf_mtod(b_.m[i], void*), outers_[i].data(), outers_[i].size());
    in_sa_->replay.reset(64);
  }
  // Returns the packets esp_inbound reports good (kBurst when all went through).
  unsigned run() noexcept {
    prep();
    return dp::esp_inbound(engine_, b_.m, sas_, stats_);
  }
  // The gateway's path: each packet's outer header parsed once and its layout recorded
  // (esp_inbound_parse, what the worker's RX does), then esp_inbound_recorded, which does not
  // parse again. Returns the good packets (kBurst when all went through).
  unsigned run_recorded() noexcept {
    prep();
    for (rte_mbuf* m : b_.m) {
      dp::EspInboundInfo info;
      if (!dp::esp_inbound_parse(m, &info, nullptr)) return 0;
    }
    return dp::esp_inbound_recorded(engine_, b_.m, sas_, stats_);
  }
  rte_mbuf* first() const noexcept { return b_.m[0]; }
  std::size_t outer_len() const noexcept { return outers_.empty() ? 0 : outers_[0].size(); }

 private:
  dp::InboundSa* sas_[kBurst] = {};
  dp::LcoreStats stats_;
  crypto::EspEngine& engine_;
  dp::InboundSa* in_sa_;
  Burst& b_;
  std::vector<std::vector<std::uint8_t>> outers_;
  const char* error_ = nullptr;
};

// BM_EspInboundPrep's work: one template of the aes-*-sha256 plain-ESP outer size for a
// `len`-byte inner packet (IPv4 + ESP + IV + padded payload + 16-byte ICV) copied into each
// mbuf, and a replay window emptied.
class InboundPrepBurst {
 public:
  static constexpr std::size_t outer_len_for(std::size_t len) noexcept {
    return 20 + 8 + 16 + ((len + 2 + 15) & ~std::size_t{15}) + 16;
  }
  InboundPrepBurst(Burst& b, std::size_t len)
      : b_(b), outer_len_(outer_len_for(len)), t_(outer_len_, 0x5a), w_(64) {}
  void run() noexcept {
    b_.reset(outer_len_);
    for (rte_mbuf* x : b_.m) std::memcpy(rte_pktmbuf_mtod(x, void*), t_.data(), outer_len_);
    w_.reset(64);
  }
  rte_mbuf* first() const noexcept { return b_.m[0]; }
  dp::ReplayWindow& window() noexcept { return w_; }

 private:
  Burst& b_;
  std::size_t outer_len_;
  std::vector<std::uint8_t> t_;
  dp::ReplayWindow w_;
};

// One direction's whole ESP benchmark setup, owned together: an engine (one IMB_MGR), the
// SA(s), a burst of 128 mbufs from `pool` and its per-burst work, the last two on the heap (each
// thread's state on its own cache lines). error() names what failed, nullptr when ready.
class OutboundBench {
 public:
  OutboundBench(rte_mempool* pool, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len,
                std::uint32_t spi = 0x1000, crypto::EngineApi api = bench_api())
      : eng_(crypto::EspEngine::create(bench_arch(), api)),
        sa_(esp_sa_spec(dp::Direction::kOutbound, c, a, spi)),
        b_(std::make_unique<Burst>(pool)) {
    if (!eng_ || sa_.sa == nullptr || !b_->ok) return;
    work_ = std::make_unique<OutboundBurst>(*eng_.value(), sa_.sa, *b_, len);
  }
  const char* error() const noexcept { return work_ ? nullptr : "setup failed (engine, SA or mbufs)"; }
  OutboundBurst& work() noexcept { return *work_; }
  rte_mbuf* first() const noexcept { return b_->m[0]; }

 private:
  Result<std::unique_ptr<crypto::EspEngine>> eng_;
  SaOwner<dp::OutboundSa> sa_;
  std::unique_ptr<Burst> b_;
  std::unique_ptr<OutboundBurst> work_;
};

class InboundBench {
 public:
  InboundBench(rte_mempool* pool, crypto::CipherAlg c, crypto::IntegAlg a, std::size_t len,
               std::uint32_t spi = 0x1000, crypto::EngineApi api = bench_api())
      : eng_(crypto::EspEngine::create(bench_arch(), api)),
        out_sa_(esp_sa_spec(dp::Direction::kOutbound, c, a, spi)),
        in_sa_(esp_sa_spec(dp::Direction::kInbound, c, a, spi)),
        b_(std::make_unique<Burst>(pool)) {
    if (!eng_ || out_sa_.sa == nullptr || in_sa_.sa == nullptr || !b_->ok) {
      error_ = "setup failed (engine, SAs or mbufs)";
      return;
    }
    // The 32 template outer packets, sequence numbers 1..32, encrypted once.
    work_ = std::make_unique<InboundBurst>(*eng_.value(), out_sa_.sa, in_sa_.sa, *b_, pool, len);
    error_ = work_->error();
  }
  const char* error() const noexcept { return error_; }
  InboundBurst& work() noexcept { return *work_; }
  rte_mbuf* first() const noexcept { return b_->m[0]; }

 private:
  Result<std::unique_ptr<crypto::EspEngine>> eng_;
  SaOwner<dp::OutboundSa> out_sa_;
  SaOwner<dp::InboundSa> in_sa_;
  std::unique_ptr<Burst> b_;
  std::unique_ptr<InboundBurst> work_;
  const char* error_ = nullptr;
};

// The ESP benchmarks' loop: one burst of `bench`'s work per iteration, every packet required
// to go through (`what` names the failure otherwise).
template <class Bench>
void run_esp_bursts(benchmark::State& state, Bench& bench, std::size_t len, const char* what) {
  if (const char* e = bench.error(); e != nullptr) {
    state.SkipWithError(e);
    return;
  }
  for (auto _ : state) {
    if (bench.work().run() != kBurst) {
      state.SkipWithError(what);
      break;
    }
    benchmark::DoNotOptimize(bench.first());
  }
  set_burst_counters(state, len, kBurst);
}

}  // namespace ipsecgw::bench
