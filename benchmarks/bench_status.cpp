// The control loop's status refresh at many connections (issue #12): one 20 ms IKE tick
// (ike::Daemon::tick, then app::ConnectionStatus::refresh, as app/control_loop.cpp does) with
// N idle connections (response-only, each to its own silent peer). No EAL, no data plane: the
// daemon's sender and installer are stand-ins, its clock advances 20 ms per tick.
//
//   BM_StatusTick/N     one tick; counter rows/tick = rows refresh() read from the daemon
//   BM_StatusAllRows/N  every row read from the daemon (ConnectionStatus::current_row for each
//                       name, the per-row work of the refresh before this change, which read
//                       every row on every tick)
#include <benchmark/benchmark.h>

#include <string>

#include "app/connections.hpp"
#include "ike/daemon.hpp"
#include "tests/app/ike_stubs.hpp"

namespace {

using namespace ipsecgw;
using app::test::NullInstaller;
using app::test::NullSender;

class StepClock final : public ike::Clock {
 public:
  ike::Millis now() const override { return t; }
  ike::Millis t{1000000};
};

struct Gateway {
  explicit Gateway(int n) {
    for (int i = 0; i < n; ++i) {
      ike::ConnectionConfig c;
      c.name = "c" + std::to_string(i);
      c.id = static_cast<std::uint32_t>(i + 1);
      c.local_addr = 0xc0000201;  // 192.0.2.1
      c.peer_addr = 0xcb000000U + 0x10000U + static_cast<dp::Ipv4>(i);
      c.local_subnet = {0x0a000000U + (static_cast<dp::Ipv4>(i) << 8), 24};
      c.peer_subnet = {0xac100000U + (static_cast<dp::Ipv4>(i) << 8), 24};
      const std::string psk = "a-long-enough-secret";
      c.psk = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(psk.data()), psk.size());
      c.initiator = ike::InitiatorMode::kResponseOnly;
      if (!ike.add_connection(std::move(c)).ok()) std::abort();
      conns.add_ike_connection("c" + std::to_string(i), 0xcb000000U + 0x10000U + i);
    }
    for (int i = 0; i < 100; ++i) tick();  // every row seen, every peer ticked once
  }
  void tick() {
    clock.t += ike::Millis{20};
    wall += std::chrono::milliseconds(20);
    ike.tick();
    conns.refresh(ike, &installer, wall);
  }
  NullSender sender;
  NullInstaller installer;
  StepClock clock;
  ike::Daemon ike{sender, installer, clock};
  app::ConnectionStatus conns;
  app::WallClock::time_point wall{std::chrono::seconds(1000)};
};

void BM_StatusTick(benchmark::State& state) {
  Gateway g(static_cast<int>(state.range(0)));
  const std::uint64_t before = g.conns.rows_examined();
  for (auto _ : state) g.tick();
  state.counters["rows/tick"] = benchmark::Counter(
      double(g.conns.rows_examined() - before) / double(state.iterations()));
}
BENCHMARK(BM_StatusTick)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_StatusAllRows(benchmark::State& state) {
  Gateway g(static_cast<int>(state.range(0)));
  const auto names = g.ike.connection_names();
  for (auto _ : state)
    for (const auto& n : names) benchmark::DoNotOptimize(g.conns.current_row(g.ike, n));
}
BENCHMARK(BM_StatusAllRows)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
