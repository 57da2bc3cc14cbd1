#include "app/runtime.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "app/control_loop.hpp"
#include "app/desired_state.hpp"
#include "app/ike_config.hpp"
#include "app/logging.hpp"
#include "app/options.hpp"
#include "app/status_json.hpp"
#include "app/telemetry.hpp"
#include "dataplane/sa_table.hpp"

namespace ipsecgw::app {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Checks that EAL gave what the configuration needs; errors name the config field.
bool check_eal_resources(const Config& cfg) {
  const auto& vs = cfg.vpnservice;
  bool ok = true;
  const unsigned nports = rte_eth_dev_count_avail();
  for (auto [field, id] : {std::pair{"vpnservice.ports.unprotected.port", vs.unprotected.port},
                           std::pair{"vpnservice.ports.protected.port", vs.protected_port.port}}) {
    if (!rte_eth_dev_is_valid_port(id)) {
      APP_LOG(ERR,
              "%s: port %u does not exist: EAL found %u port(s); ports are numbered in the order "
              "of -a/--vdev on the EAL command line",
              field, unsigned(id), nports);
      ok = false;
      continue;
    }
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    rte_eth_dev_get_name_by_port(id, name);
    APP_LOG(INFO, "%s: port %u is %s", field, unsigned(id), name);
  }
  if (rte_lcore_count() < 2) {
    APP_LOG(ERR,
            "needs at least 2 lcores (one control lcore + workers), EAL gave %u: use e.g. -l 0-1",
            rte_lcore_count());
    ok = false;
  }
  return ok;
}

}  // namespace

bool init_eal(std::vector<std::string> eal_args) {
  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  eal_argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(eal_args.size()), eal_argv.data()) < 0) {
    std::cerr << kProg << ": EAL initialisation failed: " << rte_strerror(rte_errno)
              << " (without hugepages use --no-huge -m 512; ports come from -a/--vdev)\n";
    return false;
  }
  return true;
}

bool Runtime::create_gateway() {
  if (!check_eal_resources(cfg_)) return false;
  auto g = dp::Gateway::create(to_gateway_config(cfg_));
  if (!g.ok()) {
    APP_LOG(ERR, "cannot create the gateway: %s", g.error().c_str());
    return false;
  }
  gw_ = std::move(g.value());
  // Installed before start, inbound before outbound (the order manual_sa_specs gives), so no
  // packet meets a missing SA. One batch: the SPD is built once, not once per SA.
  gw_->tables().begin_batch();
  for (auto& spec : manual_sa_specs(cfg_)) {
    const auto& conn = cfg_.ipsec_site_connections.at(spec.conn_id - 1);
    const char* dir = spec.dir == dp::Direction::kInbound ? "inbound" : "outbound";
    const std::uint32_t spi = spec.spi;
    if (auto r = gw_->installer().add_sa(std::move(spec)); !r.ok()) {
      APP_LOG(ERR, "connection %s: cannot install %s SA spi 0x%08x: %s", conn.name.c_str(), dir,
              spi, r.error().c_str());
      return false;
    }
    APP_LOG(INFO, "connection %s: %s SA spi 0x%08x installed (manual keys)", conn.name.c_str(),
            dir, spi);
  }
  if (auto r = gw_->tables().commit_batch(); !r.ok()) {
    APP_LOG(ERR, "cannot build the SPD of the static SAs: %s", r.error().c_str());
    return false;
  }
  return true;
}

// Connections without manual_keys are negotiated by the IKE daemon (ike/): each enabled one
// mapped by app/ike_config onto ike::ConnectionConfig, SAs installed through the gateway's
// installer, IKE datagrams (UDP 500/4500, punted by the data plane) in through
// set_datagram_handler before start, out through datagram_sender(). Its timers run from the
// control loop.
bool Runtime::start_ike() {
  bool ok = true;
  conns_.add_static_connections(cfg_);
  if (opts_.api) return start_api();
  auto confs = ike_connection_configs(cfg_);
  if (!confs.empty()) {
    ike_ = std::make_unique<ike::Daemon>(gw_->datagram_sender(), gw_->installer(), ike_clock_);
    apply_test_options();
    for (auto& k : confs) {
      const std::string name = k.name;
      const dp::Ipv4 peer = k.peer_addr;
      const bool initiates = k.initiator == ike::InitiatorMode::kBidirectional;
      if (auto r = ike_->add_connection(std::move(k)); !r.ok()) {
        APP_LOG(ERR, "connection %s: IKE rejects it: %s", name.c_str(), r.error().c_str());
        ok = false;
        break;
      }
      APP_LOG(INFO, "connection %s: IKEv1 with peer %s, %s", name.c_str(),
              dp::format_ipv4(peer).c_str(),
              initiates ? "initiator (bi-directional)" : "response-only");
      conns_.add_ike_connection(name, peer);
    }
    if (ok) gw_->set_datagram_handler(ike_.get());
  }
  conns_.publish_all(connection_table(), ike_.get());
  return ok;
}

void Runtime::apply_test_options() {
  if (opts_.test_child_soft_packets == 0) return;
  APP_LOG(WARNING, "test option: CHILD SA soft packet limit %llu",
          static_cast<unsigned long long>(opts_.test_child_soft_packets));
  ike_->set_child_soft_packets(opts_.test_child_soft_packets);
}

bool Runtime::start_api() {
  const model::Environment env = gateway_environment(cfg_);
  auto desired = load_desired_state(opts_.config, opts_.state_file, env);
  if (!desired.ok()) {
    APP_LOG(ERR, "%s", desired.error().c_str());
    return false;
  }
  APP_LOG(INFO, "desired state from the %s: %zu connection(s)", desired->source.c_str(),
          desired->state.ipsec_site_connections.size());
  ike_ = std::make_unique<ike::Daemon>(gw_->datagram_sender(), gw_->installer(), ike_clock_);
  apply_test_options();
  gw_->set_datagram_handler(ike_.get());
  const IkeGatewayParams gwp{cfg_.vpnservice.external_v4_ip, cfg_.vpnservice.unprotected.mtu};
  // The data plane's conn_ids 1..N are the configuration's (static SAs); the API's follow.
  const auto first_id = static_cast<std::uint32_t>(cfg_.ipsec_site_connections.size() + 1);
  reconciler_ = std::make_unique<Reconciler>(*ike_, gw_->installer(), conns_, env, gwp, first_id);
  reconciler_->apply(model::diff(model::State{}, desired->state, env), desired->state);

  if (!opts_.state_file.empty()) store_ = std::make_unique<model::Store>(opts_.state_file);
  else APP_LOG(WARNING, "no --state-file: changes made through the API are lost at exit");
  handler_ = std::make_unique<api::ApiHandler>(std::move(desired->state), env, store_.get());
  handler_->log_sink([](const std::string& line) { APP_LOG(INFO, "api: %s", line.c_str()); });
  handler_->on_change([this](const std::vector<model::ConnectionChange>& changes,
                             const model::State&, const model::State& next) {
    reconciler_->apply(changes, next);
  });
  handler_->status_source([this](const std::string& id) { return reconciler_->status(id); });
  handler_->detail_source(
      [this](const std::string& id) { return status_detail_json(reconciler_->row(id)); });
  api::ServerOptions so;
  if (auto r = api::parse_listen(opts_.api_listen, so); !r.ok()) {
    APP_LOG(ERR, "--api-listen: %s", r.error().c_str());
    return false;
  }
  api_ = std::make_unique<api::ApiServer>(*handler_, so);
  if (auto r = api_->start(); !r.ok()) {
    APP_LOG(ERR, "cannot serve the API on %s: %s (--api-listen to change, --no-api to go without)",
            opts_.api_listen.c_str(), r.error().c_str());
    return false;
  }
  APP_LOG(INFO, "Neutron VPNaaS v2.0 API on http://%s:%d", so.host.c_str(), api_->port());
  conns_.publish_all(connection_table(), ike_.get());
  return true;
}

void Runtime::register_telemetry() const {
  if (cfg_.dataplane.telemetry) app::register_telemetry();
}

bool Runtime::run(unsigned stats_interval_s) {
  install_stop_handlers();
  if (auto r = gw_->start(); !r.ok()) {
    APP_LOG(ERR, "cannot start the gateway: %s", r.error().c_str());
    return false;
  }
  APP_LOG(INFO, "ipsecgw running (SIGINT/SIGTERM to stop)");
  ControlLoop loop(*gw_, ike_.get(), conns_, std::chrono::seconds(stats_interval_s), api_.get());
  loop.run(g_stop_signal);
  APP_LOG(INFO, "signal %d: stopping", static_cast<int>(g_stop_signal));
  send_deletes();
  return true;
}

// While the ports still run: a Delete for every CHILD SA to the peers, kDeleteSpacing of
// control polling, the ISAKMP SAs' Deletes, then kShutdownDrain of control polling so the
// datagrams leave (sent from the control lcore; one waiting for an ARP answer goes when it
// comes). The spacing: a peer that handles two datagrams arriving together in either order
// (strongSwan: one job each on its thread pool) would otherwise sometimes drop the ISAKMP SA
// first and then ignore the ESP Delete it can no longer decrypt.
void Runtime::send_deletes() {
  if (!ike_) return;
  if (ike_->delete_all_child_sas() == 0) return;
  drain(kDeleteSpacing);
  const std::size_t n = ike_->delete_all_sas();
  APP_LOG(INFO, "sent Delete for the SAs of %zu ISAKMP SA(s) to the peers", n);
  drain(kShutdownDrain);
}

void Runtime::drain(std::chrono::milliseconds how_long) {
  const auto until = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < until)
    if (gw_->control_poll() == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

void Runtime::shutdown() {
  if (api_) api_->stop();  // no request reaches the handler from here on
  api_.reset();
  if (!gw_) return;
  gw_->stop();
  std::printf("=== ipsecgw counters ===\n%s", gw_->report().c_str());
  if (ike_ || conns_.has_static_connections()) {
    std::printf("=== ipsecgw connections ===\n");
    for (const ConnRow& r : conns_.current_rows(ike_.get()))
      std::printf("%s\n", describe_row(r).c_str());
  }
  std::fflush(stdout);
  connection_table().clear();
  gw_->set_datagram_handler(nullptr);
  handler_.reset();
  reconciler_.reset();
  ike_.reset();  // before the gateway: it holds the gateway's sender and installer
  gw_.reset();   // frees the SAs and wipes their keys
}

}  // namespace ipsecgw::app
