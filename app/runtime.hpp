// The ipsecgw process once its configuration is valid: EAL, then the gateway with its static
// SAs, the IKE daemon, telemetry, the control loop, and the orderly shutdown — each a step that
// app/main.cpp calls in order. A step that fails logs why and returns false; shutdown() then
// undoes whatever the earlier steps built.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "app/api/server.hpp"
#include "app/config.hpp"
#include "app/connections.hpp"
#include "app/model/store.hpp"
#include "app/options.hpp"
#include "app/reconciler.hpp"
#include "dataplane/gateway.hpp"
#include "ike/daemon.hpp"
#include "ike/ike_sa.hpp"

namespace ipsecgw::app {

// rte_eal_init with the EAL args (argv[0] first); prints the reason to stderr on failure.
bool init_eal(std::vector<std::string> eal_args);

class Runtime {
 public:
  Runtime(const Config& cfg, const Options& opts) : cfg_(cfg), opts_(opts) {}
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  ~Runtime() { shutdown(); }

  // Checks that EAL gave the ports and lcores the configuration names, creates the gateway
  // and installs the static SAs (manual_keys), inbound before outbound.
  bool create_gateway();
  // An IKE daemon for the enabled connections without manual_keys, fed the IKE datagrams the
  // data plane punts; publishes the connections' first status rows.
  bool start_ike();
  // With the API (opts.api): the IKE daemon's connections come from the desired-state model
  // (app/desired_state.*) through the reconciler instead of the configuration alone, and the
  // Neutron VPNaaS API is served on opts.api_listen; false when the model does not load or
  // the API cannot listen. Called by start_ike().
  bool start_api();
  // Registers /ipsecgw/connections when the configuration enables telemetry.
  void register_telemetry() const;
  // Installs the SIGINT/SIGTERM handlers, starts the workers and runs the control loop until
  // a signal; false when the gateway does not start.
  bool run(unsigned stats_interval_s);
  // Stops the workers, prints the counters and the connections, destroys the IKE daemon and
  // then the gateway (SAs freed, keys wiped). Idempotent; nothing to do without a gateway.
  void shutdown();

 private:
  // At shutdown, how long the control lcore keeps polling between the CHILD SAs' Deletes and
  // the ISAKMP SAs' (so the peer has handled the first before the second arrives), and after.
  static constexpr std::chrono::milliseconds kDeleteSpacing{100};
  static constexpr std::chrono::milliseconds kShutdownDrain{300};
  void send_deletes();
  void drain(std::chrono::milliseconds how_long);
  // The hidden --test-* options that reach the IKE daemon (right after it is created).
  void apply_test_options();

  const Config& cfg_;
  const Options& opts_;
  std::unique_ptr<dp::Gateway> gw_;
  ike::SteadyClock ike_clock_;
  std::unique_ptr<ike::Daemon> ike_;  // null when every connection has manual keys (no API)
  ConnectionStatus conns_;
  // The API (opts_.api): the state file, the request handler, its HTTP server, and the
  // reconciler applying each change to ike_.
  std::unique_ptr<model::Store> store_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<api::ApiHandler> handler_;
  std::unique_ptr<api::ApiServer> api_;
};

}  // namespace ipsecgw::app
