// Outbound SPD lookups over many tunnels (issue #12, "many tunnels, many flows"):
// DpSaInstaller::lookup_outbound as a worker calls it, bursts of 32 packets whose (inner src,
// inner dst) pairs are drawn at random from N tunnels x 4 flows each, so consecutive packets
// rarely share a pair and, at 10,000 tunnels, the policies and SAs do not stay in L1/L2.
// Tunnel i is 10.a.b.0/24 -> 172.(16 + a).b.0/24 (as bench_install.cpp), flow f of it
// 10.a.b.(1 + f) -> 172.(16 + a).b.(101 + f). Each burst's SAs are then read as a worker
// reads them first (mtu, spi), so the cache misses on the SAs count too.
//
//   BM_SpdLookup/tunnels:N   one iteration = one burst of 32; items_per_second = packets per
//                            CPU second of the thread (so CPU time / 32 = time per packet)
//
// Compare N = 1,000 and 10,000 with N = 1 in the same run: the target is a per-core
// rate within 15% of the single-tunnel one.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

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
  return s;
}

void BM_SpdLookup(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  constexpr unsigned kFlows = 4;
  constexpr unsigned kBurst = 32;
  constexpr unsigned kPackets = 1u << 18;  // the packet sequence (2 MiB of addresses)
  auto rcu = Rcu::create(1);
  if (!rcu) {
    state.SkipWithError("rcu");
    return;
  }
  auto inst = DpSaInstaller::create(**rcu, n);
  if (!inst) {
    state.SkipWithError("installer");
    return;
  }
  (*inst)->begin_batch();
  for (std::uint32_t i = 0; i < n; ++i)
    if (!(*inst)->add_sa(out_spec(i))) {
      state.SkipWithError("install failed");
      return;
    }
  if (!(*inst)->commit_batch()) {
    state.SkipWithError("commit failed");
    return;
  }
  std::mt19937 rng(1);
  std::vector<Ipv4> src(kPackets), dst(kPackets);
  for (unsigned k = 0; k < kPackets; ++k) {
    const std::uint32_t i = rng() % n, f = rng() % kFlows;
    src[k] = (0x0a000000u | (i << 8)) + 1 + f;
    dst[k] = (0xac100000u + (i << 8)) + 101 + f;
  }
  (*rcu)->register_thread(0);
  (*rcu)->online(0);
  OutboundSa* sas[kBurst];
  PolicySlot* pols[kBurst];
  unsigned off = 0;
  std::uint64_t missed = 0, sink = 0;
  for (auto _ : state) {
    (*inst)->lookup_outbound(&src[off], &dst[off], kBurst, sas, pols);
    for (unsigned j = 0; j < kBurst; ++j) {
      if (sas[j] == nullptr) {
        ++missed;
        continue;
      }
      sink += sas[j]->spi + sas[j]->mtu.load(std::memory_order_relaxed);
    }
    off = (off + kBurst) % kPackets;
    if ((off & 1023) == 0) (*rcu)->quiescent(0);
  }
  benchmark::DoNotOptimize(sink);
  (*rcu)->offline(0);
  (*rcu)->unregister_thread(0);
  if (missed != 0) state.SkipWithError("a packet found no SA");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kBurst);
  state.counters["tunnels"] = n;
}

BENCHMARK(BM_SpdLookup)->ArgName("tunnels")->Arg(1)->Arg(1000)->Arg(10000);

}  // namespace
}  // namespace ipsecgw::dp
