// Outbound SPD lookups over many tunnels (issue #12, "many tunnels, many flows"):
// DpSaInstaller::lookup_outbound as a worker calls it, bursts of 128 packets (dp::kMaxBurst)
// whose (inner src, inner dst) pairs are drawn at random from N tunnels x 4 flows each, so consecutive packets
// rarely share a pair and, at 10,000 tunnels, the policies and SAs do not stay in L1/L2.
// Tunnel i is 10.a.b.0/24 -> 172.(16 + a).b.0/24 (as bench_install.cpp), flow f of it
// 10.a.b.(1 + f) -> 172.(16 + a).b.(101 + f). Each burst's SAs are then read as a worker
// reads them first (mtu, spi), so the cache misses on the SAs count too.
//
//   BM_SpdLookup/tunnels:N   one iteration = one burst of 128; items_per_second = packets per
//                            CPU second of the thread (so CPU time / 32 = time per packet)
//
//   BM_ManyTunnelsEspOutbound/tunnels:N/len:L   the same traffic through the outbound data path
//       as far as it runs in one process: per burst, the 32 inner packets (L bytes, UDP) get their
//       addresses written into the inner header, lookup_outbound finds each one's SA and
//       esp_outbound encrypts them (AES-128-CBC/HMAC-SHA1-96, ipsec-mb) in place, each packet
//       through its own tunnel's SA: the SA cache misses of the crypto count too. No RX/TX.
//
//   BM_ManyTunnelsEspInbound/tunnels:N/len:L   the inbound twin: N tunnels' inbound SAs
//       (replay window 64), 2^14 ESP packets of their 4N flows in random order, encrypted once at
//       setup through a same-keyed outbound SA per tunnel (so each SA's sequence numbers rise
//       through the stored order). Per burst: 32 stored packets copied into the mbufs (RX
//       delivering them; the copy costs the same at every N), each SPI read from its packet,
//       lookup_inbound finds the SAs, esp_inbound decrypts and checks them (replay window, ICV,
//       selectors). When the stored sequence wraps, the SAs' replay windows are emptied with the
//       timer paused (once per 512 bursts).
//
// Compare N = 1,000 and 10,000 with N = 1 in the same run: the target is a per-core
// rate within 15% of the single-tunnel one.
#include <benchmark/benchmark.h>
#include <rte_byteorder.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "benchmarks/esp_fixture.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/sa_table.hpp"

namespace ipsecgw::dp {
namespace {

SaSpec out_spec(std::uint32_t i) {
  SaSpec s;
  s.dir = Direction::kOutbound;
  s.spi = 0x20000000u + i;
  s.conn_id = i + 1;
  s.cipher = crypto::CipherAlg::kAes128Cbc;
  s.integ = crypto::IntegAlg::kHmacSha1_96;
  s.enc_key = crypto::SecureBytes(16);
  s.auth_key = crypto::SecureBytes(20);
  s.local_addr = 0xc6336401;  // 198.51.100.1
  s.peer_addr = 0xcb007101;   // 203.0.113.1
  s.local_subnet = {0x0a000000u | (i << 8), 24};
  s.peer_subnet = {0xac100000u + (i << 8), 24};
  s.mtu = 1600;
  return s;
}

// The inbound SA of tunnel i: the mirror of out_spec(i), same SPI and keys.
SaSpec in_spec(std::uint32_t i) {
  SaSpec s = out_spec(i);
  s.dir = Direction::kInbound;
  std::swap(s.local_subnet, s.peer_subnet);
  std::swap(s.local_addr, s.peer_addr);
  s.replay_window = 64;
  return s;
}

constexpr unsigned kFlows = 4;
constexpr unsigned kBurst = dp::kMaxBurst;
constexpr unsigned kPackets = 1u << 18;  // the packet sequence (2 MiB of addresses)

// N tunnels installed in one installer, and a random sequence of their 4N flows' addresses.
struct ManyTunnels {
  std::unique_ptr<Rcu> rcu;
  std::unique_ptr<DpSaInstaller> inst;
  std::vector<Ipv4> src, dst;
  const char* error = nullptr;

  explicit ManyTunnels(std::uint32_t n) {
    auto r = Rcu::create(1);
    if (!r) {
      error = "rcu";
      return;
    }
    rcu = std::move(*r);
    auto d = DpSaInstaller::create(*rcu, n);
    if (!d) {
      error = "installer";
      return;
    }
    inst = std::move(*d);
    inst->begin_batch();
    for (std::uint32_t i = 0; i < n; ++i)
      if (!inst->add_sa(out_spec(i))) {
        error = "install failed";
        return;
      }
    if (!inst->commit_batch()) {
      error = "commit failed";
      return;
    }
    std::mt19937 rng(1);
    src.resize(kPackets);
    dst.resize(kPackets);
    for (unsigned k = 0; k < kPackets; ++k) {
      const std::uint32_t i = rng() % n, f = rng() % kFlows;
      src[k] = (0x0a000000u | (i << 8)) + 1 + f;
      dst[k] = (0xac100000u + (i << 8)) + 101 + f;
    }
    rcu->register_thread(0);
    rcu->online(0);
  }
  ~ManyTunnels() {
    if (error == nullptr) {
      rcu->offline(0);
      rcu->unregister_thread(0);
    }
  }
};

void BM_SpdLookup(benchmark::State& state) {
  ManyTunnels t(static_cast<std::uint32_t>(state.range(0)));
  if (t.error != nullptr) {
    state.SkipWithError(t.error);
    return;
  }
  OutboundSa* sas[kBurst];
  PolicySlot* pols[kBurst];
  unsigned off = 0;
  std::uint64_t missed = 0, sink = 0;
  for (auto _ : state) {
    t.inst->lookup_outbound(&t.src[off], &t.dst[off], kBurst, sas, pols);
    for (unsigned j = 0; j < kBurst; ++j) {
      if (sas[j] == nullptr) {
        ++missed;
        continue;
      }
      sink += sas[j]->spi + sas[j]->mtu.load(std::memory_order_relaxed);
    }
    off = (off + kBurst) % kPackets;
    if ((off & 1023) == 0) t.rcu->quiescent(0);
  }
  benchmark::DoNotOptimize(sink);
  if (missed != 0) state.SkipWithError("a packet found no SA");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
  state.counters["tunnels"] = static_cast<double>(state.range(0));
}

void BM_ManyTunnelsEspOutbound(benchmark::State& state) {
  const auto len = static_cast<std::size_t>(state.range(1));
  ManyTunnels t(static_cast<std::uint32_t>(state.range(0)));
  auto eng = crypto::EspEngine::create(bench::bench_arch());
  bench::Burst b(bench::esp_bench_pool());
  if (t.error != nullptr || !eng || !b.ok) {
    state.SkipWithError(t.error != nullptr ? t.error : "engine or mbufs");
    return;
  }
  const std::vector<std::uint8_t> inner = bench::inner_packet(len);
  b.fill(inner);
  LcoreStats stats;
  OutboundSa* sas[kBurst];
  PolicySlot* pols[kBurst];
  unsigned off = 0;
  for (auto _ : state) {
    // RX delivering fresh inner packets: offsets reset, the inner header rewritten with this
    // packet's addresses (the last round left ciphertext there).
    b.reset(len);
    for (unsigned j = 0; j < kBurst; ++j) {
      auto* ip = rte_pktmbuf_mtod(b.m[j], rte_ipv4_hdr*);
      std::memcpy(ip, inner.data(), sizeof *ip);
      ip->src_addr = rte_cpu_to_be_32(t.src[off + j]);
      ip->dst_addr = rte_cpu_to_be_32(t.dst[off + j]);
    }
    t.inst->lookup_outbound(&t.src[off], &t.dst[off], kBurst, sas, pols);
    if (esp_outbound(**eng, b.m, sas, stats) != kBurst) {
      state.SkipWithError("esp_outbound dropped a packet");
      break;
    }
    benchmark::DoNotOptimize(b.m[0]);
    off = (off + kBurst) % kPackets;
    if ((off & 1023) == 0) t.rcu->quiescent(0);
  }
  bench::set_burst_counters(state, len, kBurst);
  state.counters["tunnels"] = static_cast<double>(state.range(0));
}

constexpr unsigned kStored = 1u << 14;  // BM_ManyTunnelsEspInbound's stored ESP packets

// N tunnels' inbound SAs in one installer, and kStored ESP packets (inner `len` bytes) of their
// 4N flows in random order, each encrypted through its tunnel's outbound twin.
struct ManyTunnelsInbound {
  std::unique_ptr<Rcu> rcu;
  std::unique_ptr<DpSaInstaller> inst;
  std::vector<InboundSa*> sas;  // tunnel i's SA, for the replay-window reset
  std::vector<std::uint8_t> store;
  std::size_t outer_len = 0;
  const char* error = nullptr;

  ManyTunnelsInbound(std::uint32_t n, std::size_t len, crypto::EspEngine& eng, rte_mempool* pool) {
    auto r = Rcu::create(1);
    if (!r) {
      error = "rcu";
      return;
    }
    rcu = std::move(*r);
    auto d = DpSaInstaller::create(*rcu, n);
    if (!d) {
      error = "installer";
      return;
    }
    inst = std::move(*d);
    for (std::uint32_t i = 0; i < n; ++i)
      if (!inst->add_sa(in_spec(i))) {
        error = "install failed";
        return;
      }
    rcu->register_thread(0);
    rcu->online(0);
    sas.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint32_t spi = out_spec(i).spi;
      inst->lookup_inbound(&spi, 1, &sas[i]);
      if (sas[i] == nullptr) {
        error = "inbound SA not found";
        return;
      }
    }
    // The outbound twins, only for the encryption here.
    std::vector<OutboundSa*> outs(n, nullptr);
    bench::Burst t(pool);
    std::vector<std::uint8_t> inner = bench::inner_packet(len);
    LcoreStats st;
    std::mt19937 rng(1);
    for (unsigned k = 0; k < kStored && error == nullptr; k += kBurst) {
      OutboundSa* os[kBurst];
      t.fill(inner);
      for (unsigned j = 0; j < kBurst && error == nullptr; ++j) {
        const std::uint32_t i = rng() % n, f = rng() % kFlows;
        if (outs[i] == nullptr) {
          auto o = sa_create<OutboundSa>(out_spec(i));
          if (!o) error = "outbound twin";
          else outs[i] = *o;
        }
        os[j] = outs[i];
        auto* ip = rte_pktmbuf_mtod(t.m[j], rte_ipv4_hdr*);
        ip->src_addr = rte_cpu_to_be_32((0x0a000000u | (i << 8)) + 1 + f);
        ip->dst_addr = rte_cpu_to_be_32((0xac100000u + (i << 8)) + 101 + f);
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);  // esp_inbound checks it
      }
      if (error != nullptr) break;
      if (esp_outbound(eng, t.m, os, st) != kBurst) {
        error = "setup encryption failed";
        break;
      }
      outer_len = t.m[0]->pkt_len;
      if (store.empty()) store.resize(std::size_t{kStored} * outer_len);
      for (unsigned j = 0; j < kBurst; ++j)
        std::memcpy(&store[(k + j) * outer_len], rte_pktmbuf_mtod(t.m[j], void*), outer_len);
    }
    for (OutboundSa* o : outs)
      if (o != nullptr) sa_destroy(o);
  }
  ~ManyTunnelsInbound() {
    if (rcu != nullptr && inst != nullptr) {
      rcu->offline(0);
      rcu->unregister_thread(0);
    }
  }
};

void BM_ManyTunnelsEspInbound(benchmark::State& state) {
  const auto len = static_cast<std::size_t>(state.range(1));
  auto eng = crypto::EspEngine::create(bench::bench_arch());
  bench::Burst b(bench::esp_bench_pool());
  if (!eng || !b.ok) {
    state.SkipWithError("engine or mbufs");
    return;
  }
  ManyTunnelsInbound t(static_cast<std::uint32_t>(state.range(0)), len, **eng,
                       bench::esp_bench_pool());
  if (t.error != nullptr) {
    state.SkipWithError(t.error);
    return;
  }
  LcoreStats stats;
  InboundSa* sas[kBurst];
  std::uint32_t spis[kBurst];
  const std::size_t ol = t.outer_len;
  unsigned off = 0;
  for (auto _ : state) {
    b.reset(ol);
    for (unsigned j = 0; j < kBurst; ++j) {
      auto* p = rte_pktmbuf_mtod(b.m[j], std::uint8_t*);
      std::memcpy(p, &t.store[(off + j) * ol], ol);
      std::uint32_t spi_be;
      std::memcpy(&spi_be, p + sizeof(rte_ipv4_hdr), 4);
      spis[j] = rte_be_to_cpu_32(spi_be);
    }
    t.inst->lookup_inbound(spis, kBurst, sas);
    if (esp_inbound(**eng, b.m, sas, stats) != kBurst) {
      for (unsigned r = 0; r < kDropReasonCount; ++r)
        if (stats.drops[r] != 0)
          std::fprintf(stderr, "drop %s\n",
                       std::string(to_string(static_cast<DropReason>(r))).c_str());
      state.SkipWithError("esp_inbound dropped a packet");
      break;
    }
    benchmark::DoNotOptimize(b.m[0]);
    off += kBurst;
    if ((off & 1023) == 0) t.rcu->quiescent(0);
    if (off == kStored) {
      // The stored sequence numbers come round again: empty the windows (not timed).
      state.PauseTiming();
      for (InboundSa* sa : t.sas) sa->replay.reset(64);
      off = 0;
      state.ResumeTiming();
    }
  }
  bench::set_burst_counters(state, len, kBurst);
  state.counters["tunnels"] = static_cast<double>(state.range(0));
}

BENCHMARK(BM_SpdLookup)->ArgName("tunnels")->Arg(1)->Arg(1000)->Arg(10000);
BENCHMARK(BM_ManyTunnelsEspOutbound)->ArgsProduct({{1, 1000, 10000}, {64, 1400}})
    ->ArgNames({"tunnels", "len"});
BENCHMARK(BM_ManyTunnelsEspInbound)->ArgsProduct({{1, 1000, 10000}, {64, 1400}})
    ->ArgNames({"tunnels", "len"});

}  // namespace
}  // namespace ipsecgw::dp
