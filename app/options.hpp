// The ipsecgw command line: `ipsecgw [EAL args] -- [options]`, like the DPDK example
// applications. EAL args go to rte_eal_init untouched; the options after `--` are ours.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace ipsecgw::app {

inline constexpr const char* kProg = "ipsecgw";
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // invalid config, EAL/gateway start-up failure
inline constexpr int kExitUsage = 2;    // bad command line

inline constexpr unsigned kMaxStatsInterval = 86400;

struct Options {
  std::string config;
  bool check_config = false;
  unsigned stats_interval = 0;  // seconds, 0 = off
  std::string log_level = "info";
  std::uint32_t rte_log_level = 0;  // log_level as an RTE_LOG_* value, set by parse_options
  // The Neutron VPNaaS v2.0 API (docs/api.md): on unless --no-api; HOST:PORT, on the host's
  // sockets (never on the DPDK ports).
  bool api = true;
  std::string api_listen = "127.0.0.1:9696";
  std::string state_file;  // "" = API changes are not persisted
  // Hidden, for tests: the soft packet limit of IKE-made CHILD SAs (0 = the default,
  // ike::kChildSoftPackets).
  std::uint64_t test_child_soft_packets = 0;
};

// argv split at the first `--`: EAL args before (argv[0] first), ours after. Without `--`, a
// command line that starts with one of our options (e.g. `ipsecgw --check-config --config
// gw.yaml`) is all ours. `help`: --help or -h appeared anywhere.
struct CommandLine {
  std::vector<std::string> eal_args;
  std::vector<std::string> app_args;
  bool help = false;
};
CommandLine split_command_line(int argc, char** argv);

void print_help(std::ostream& out);

// Parses and checks the application options; on error prints a message naming the option to
// stderr and returns nullopt.
std::optional<Options> parse_options(const std::vector<std::string>& args);

}  // namespace ipsecgw::app
