// ipsecgw: `ipsecgw [EAL args] -- [options]`, like the DPDK example applications.
//
// Order of work, so that mistakes cost as little as possible:
//   1. --help / -h anywhere: print help, exit 0 (no EAL, no hugepages needed).
//   2. Parse the application options (after `--`) and load + validate the YAML config.
//      --check-config stops here (exit 0 valid / 1 invalid): config errors never need EAL.
//   3. rte_eal_init with the EAL args (before `--`).
//   4. The gateway with its static SAs (manual_keys) -> the IKE daemon for the other
//      connections -> telemetry -> start -> the control loop (app/control_loop.cpp).
//   5. SIGINT/SIGTERM: stop, print the counters and connections report, destroy (keys wiped),
//      rte_eal_cleanup.
//
// Where the rest lives: app/options.cpp (command line, --help), app/config.cpp (YAML),
// app/logging.cpp (log types and levels), app/runtime.cpp (EAL, gateway, IKE daemon, shutdown),
// app/control_loop.cpp (the control lcore's loop), app/connections.cpp (connection status),
// app/telemetry.cpp (/ipsecgw/connections).
#include <rte_eal.h>
#include <rte_lcore.h>

#include <iostream>
#include <optional>

#include "app/config.hpp"
#include "app/logging.hpp"
#include "app/options.hpp"
#include "app/runtime.hpp"

namespace {

using namespace ipsecgw::app;

// Steps 1 and 2: the options and a valid configuration, or the exit status to return now.
struct Prepared {
  Options opts;
  Config cfg;
};
std::optional<Prepared> prepare(const CommandLine& cl, int& exit_status) {
  if (cl.help) {
    print_help(std::cout);
    exit_status = kExitOk;
    return std::nullopt;
  }
  auto opts = parse_options(cl.app_args);
  if (!opts) {
    exit_status = kExitUsage;
    return std::nullopt;
  }
  // The configuration is loaded and validated before EAL: its errors need no hugepages.
  auto cfg = load_config(opts->config);
  if (!cfg.ok()) {
    std::cerr << kProg << ": " << cfg.error() << "\n";
    exit_status = kExitFailure;
    return std::nullopt;
  }
  for (const auto& w : cfg->warnings) std::cerr << kProg << ": warning: " << w << "\n";
  if (opts->check_config) {
    std::cout << "configuration OK: " << opts->config << "\n" << describe(*cfg);
    exit_status = kExitOk;
    return std::nullopt;
  }
  return Prepared{std::move(*opts), std::move(cfg.value())};
}

// Step 4 and the shutdown of step 5; EAL is up.
int run_gateway(const Prepared& p) {
  Runtime rt(p.cfg, p.opts);
  if (!rt.create_gateway()) return kExitFailure;  // nothing was created: nothing to report
  bool ok = rt.start_ike();
  if (ok) rt.register_telemetry();
  if (ok) ok = rt.run(p.opts.stats_interval);
  rt.shutdown();
  return ok ? kExitOk : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  register_app_log();
  const CommandLine cl = split_command_line(argc, argv);
  int exit_status = kExitOk;
  const auto prepared = prepare(cl, exit_status);
  if (!prepared) return exit_status;

  apply_log_level(prepared->opts.rte_log_level);
  if (!init_eal(cl.eal_args)) return kExitFailure;
  APP_LOG(INFO, "ipsecgw starting: config %s, %u lcores", prepared->opts.config.c_str(),
          rte_lcore_count());

  const int rc = run_gateway(*prepared);
  rte_eal_cleanup();
  return rc;
}
