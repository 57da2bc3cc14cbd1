#include "app/control_loop.hpp"

#include <cstdio>
#include <sstream>
#include <string>
#include <thread>

#include "app/logging.hpp"
#include "app/telemetry.hpp"

namespace ipsecgw::app {
namespace {

constexpr auto kIkeTickEvery = std::chrono::milliseconds(20);
constexpr auto kSaEventsEvery = std::chrono::milliseconds(100);
constexpr auto kIdleSleep = std::chrono::microseconds(200);

std::string stats_line(const dp::Gateway& gw) {
  using dp::DropReason;
  std::ostringstream o;
  auto pu = gw.port_counters(false), pp = gw.port_counters(true);
  auto t = gw.total_stats();
  o << "stats: unprotected rx " << pu.ipackets << " tx " << pu.opackets << " missed "
    << pu.imissed << " | protected rx " << pp.ipackets << " tx " << pp.opackets << " missed "
    << pp.imissed << " | esp out " << t.esp_out_packets << " in " << t.esp_in_packets
    << " | drops";
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < dp::kDropReasonCount; ++i) {
    if (t.drops[i] == 0) continue;
    total += t.drops[i];
    o << " " << to_string(static_cast<DropReason>(i)) << "=" << t.drops[i];
  }
  if (total == 0) o << " 0";
  return o.str();
}

const char* describe(dp::SaEventKind k) {
  switch (k) {
    case dp::SaEventKind::kSeqExhausted: return "sequence numbers exhausted";
    case dp::SaEventKind::kSoftLimit: return "soft limit reached";
    case dp::SaEventKind::kAcquire: return "traffic for a tunnel without SA (acquire)";
    case dp::SaEventKind::kHardLimit: break;
  }
  return "hard limit reached";
}

}  // namespace

ControlLoop::ControlLoop(dp::Gateway& gw, ike::Daemon* ike, ConnectionStatus& conns,
                         std::chrono::seconds stats_interval, api::ApiServer* api)
    : gw_(gw), ike_(ike), conns_(conns), api_(api), stats_interval_(stats_interval) {}

void ControlLoop::run(const volatile std::sig_atomic_t& stop) {
  const auto start = Clock::now();
  next_stats_ = start + stats_interval_;
  next_events_ = start;
  next_ike_ = start;
  refresh_status();
  while (stop == 0) {
    const std::size_t requests = apply_config_changes();
    // The control lcore only serves the slow path: yield the CPU when idle.
    if (iterate() == 0 && requests == 0) std::this_thread::sleep_for(kIdleSleep);
  }
}

unsigned ControlLoop::iterate() {
  const unsigned work = gw_.control_poll();  // also hands IKE datagrams to the daemon
  const auto now = Clock::now();
  tick_ike(now);
  log_sa_events(now);
  print_stats(now);
  return work;
}

std::size_t ControlLoop::apply_config_changes() {
  if (api_ == nullptr) return 0;
  const std::size_t n = api_->poll();
  if (n != 0) refresh_status();
  return n;
}

void ControlLoop::tick_ike(Clock::time_point now) {
  if (ike_ == nullptr || now < next_ike_) return;
  ike_->tick();
  refresh_status();
  publish_ike_counters(ike_->counters());
  next_ike_ = now + kIkeTickEvery;
}

// Every IKE tick (20 ms) and after each API change: the status rows, each change logged, the
// traffic counters read once a second; telemetry gets the rows that changed (only those).
void ControlLoop::refresh_status() {
  if (ike_ != nullptr && conns_.refresh(*ike_, &gw_.installer()))
    conns_.publish(connection_table());
}

// With IKE running, the daemon owns the data plane's events (it polls them in tick() to rekey
// on sequence exhaustion / limits and to negotiate on acquires); taking them here would steal
// them. Without IKE (static SAs only) they are logged here.
void ControlLoop::log_sa_events(Clock::time_point now) {
  if (ike_ != nullptr || now < next_events_) return;
  for (const auto& ev : gw_.installer().poll_events())
    APP_LOG(WARNING, "%s SA spi 0x%08x (connection %u): %s",
            ev.dir == dp::Direction::kInbound ? "inbound" : "outbound", ev.spi, ev.conn_id,
            describe(ev.kind));
  next_events_ = now + kSaEventsEvery;
}

void ControlLoop::print_stats(Clock::time_point now) {
  if (stats_interval_.count() == 0 || now < next_stats_) return;
  std::printf("%s\n", stats_line(gw_).c_str());
  std::fflush(stdout);
  next_stats_ = now + stats_interval_;
}

}  // namespace ipsecgw::app
