// The control lcore's loop while the gateway runs: the data plane's slow path
// (Gateway::control_poll), the IKE daemon's timers and the connections' status, SA events when
// no IKE daemon takes them, and the periodic stats line. Runs on the main lcore until a stop
// signal.
#pragma once

#include <chrono>
#include <csignal>

#include "app/api/server.hpp"
#include "app/connections.hpp"
#include "dataplane/gateway.hpp"
#include "ike/daemon.hpp"

namespace ipsecgw::app {

class ControlLoop {
 public:
  using Clock = std::chrono::steady_clock;

  // `ike` may be null (static SAs only). stats_interval 0 = no stats lines. `api` (null:
  // --no-api) is polled every iteration: its requests run here, on the control thread.
  ControlLoop(dp::Gateway& gw, ike::Daemon* ike, ConnectionStatus& conns,
              std::chrono::seconds stats_interval, api::ApiServer* api = nullptr);

  // Iterates until `stop` is non-zero (set by the SIGINT/SIGTERM handler).
  void run(const volatile std::sig_atomic_t& stop);

 private:
  // The slow path, then whatever timer is due; returns the slow-path work done (0 = idle).
  unsigned iterate();

  // Changes to the running configuration, between two iterations on the control lcore (the
  // thread that owns the SA tables and the IKE daemon): the API's queued requests, each
  // committed change applied by the reconciler (app/reconciler.*). Returns the requests run.
  std::size_t apply_config_changes();

  void tick_ike(Clock::time_point now);      // retransmits, DPD, (re)initiation; status rows
  void refresh_status();                     // status rows: log changes, publish them
  void log_sa_events(Clock::time_point now);  // without IKE only: the daemon owns the events
  void print_stats(Clock::time_point now);

  dp::Gateway& gw_;
  ike::Daemon* ike_;
  ConnectionStatus& conns_;
  api::ApiServer* api_;
  std::chrono::seconds stats_interval_;
  Clock::time_point next_ike_, next_events_, next_stats_;
};

}  // namespace ipsecgw::app
