// Start-up with many static tunnels: the time to install N tunnels (one inbound
// and one outbound SA each, its own /24 subnet pair), as the control core does at start-up,
// one at a time (batched=0: each outbound install is applied to the SPD at once, as IKE
// installs) and in one batch (batched=1: begin_batch / commit_batch, as the static config
// loads). Includes SA creation (key schedules) and the hash inserts; run once per iteration
// on a fresh installer, which is destroyed outside the timing. The SPD is one hash insert per
// policy either way (dataplane/spd.hpp): time_per_tunnel should not grow with N. (Before, the
// rte_acl SPD was rebuilt per unbatched install: quadratic, 9.8 s CPU at 1,000 tunnels.)
//
// Counter dp_bytes_per_tunnel: the DPDK heap (rte_malloc, all sockets) in use after the installs
// minus before creating the tables, per tunnel: both SAs, the inbound hash and the SPD hash,
// both sized for 2 x capacity (the data plane's memory; the control-side std::maps and the
// PolicySlots are on the libc heap).
#include <benchmark/benchmark.h>
#include <rte_malloc.h>

#include <cstdio>
#include <memory>

#include "dataplane/sa_table.hpp"

namespace ipsecgw::dp {
namespace {

SaSpec tunnel_spec(Direction dir, std::uint32_t i) {
  SaSpec s;
  s.dir = dir;
  s.spi = (dir == Direction::kInbound ? 0x10000000u : 0x20000000u) + i;
  s.conn_id = i + 1;
  s.cipher = crypto::CipherAlg::kAes128Cbc;
  s.integ = crypto::IntegAlg::kHmacSha1_96;
  s.enc_key = crypto::SecureBytes(16);
  s.auth_key = crypto::SecureBytes(20);
  for (unsigned k = 0; k < 16; ++k) s.enc_key[k] = static_cast<std::uint8_t>(i + k);
  for (unsigned k = 0; k < 20; ++k) s.auth_key[k] = static_cast<std::uint8_t>(i * 3 + k);
  s.local_addr = 0xc6336401;  // 198.51.100.1
  s.peer_addr = 0xcb007101;   // 203.0.113.1
  // Tunnel i: 10.a.b.0/24 -> 172.(16 + a).b.0/24.
  s.local_subnet = {0x0a000000u | (i << 8), 24};
  s.peer_subnet = {0xac100000u + (i << 8), 24};
  return s;
}

std::uint64_t dpdk_heap_in_use() {
  std::uint64_t n = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats s{};
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0) n += s.heap_allocsz_bytes;
  }
  return n;
}

void BM_InstallTunnels(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const bool batched = state.range(1) != 0;
  double bytes_per_tunnel = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const std::uint64_t heap0 = dpdk_heap_in_use();
    auto rcu = Rcu::create(1);
    auto inst = DpSaInstaller::create(**rcu, n);
    if (!rcu || !inst) {
      state.SkipWithError("cannot create the tables");
      return;
    }
    state.ResumeTiming();
    if (batched) (*inst)->begin_batch();
    for (std::uint32_t i = 0; i < n; ++i) {
      if (!(*inst)->add_sa(tunnel_spec(Direction::kInbound, i)) ||
          !(*inst)->add_sa(tunnel_spec(Direction::kOutbound, i))) {
        state.SkipWithError("install failed");
        return;
      }
      // As the control loop does (no reader is registered: frees at once what was replaced).
      if (!batched) (*inst)->reclaim();
    }
    if (batched && !(*inst)->commit_batch()) {
      state.SkipWithError("commit failed");
      return;
    }
    state.PauseTiming();
    bytes_per_tunnel = static_cast<double>(dpdk_heap_in_use() - heap0) / n;
    inst->reset();
    rcu->reset();
    state.ResumeTiming();
  }
  state.counters["tunnels"] = n;
  state.counters["dp_bytes_per_tunnel"] = bytes_per_tunnel;
  state.counters["time_per_tunnel"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate |
                                  benchmark::Counter::kInvert);
}

BENCHMARK(BM_InstallTunnels)->ArgsProduct({{1000, 10000}, {0, 1}})->ArgNames({"n", "batched"})
    ->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace ipsecgw::dp
