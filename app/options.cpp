#include "app/options.hpp"

#include <boost/program_options.hpp>
#include <iostream>
#include <string_view>

#include "app/logging.hpp"

namespace ipsecgw::app {

namespace po = boost::program_options;

namespace {

po::options_description make_options(Options& o) {
  po::options_description d("Options (after `--`)");
  // clang-format off
  d.add_options()
    ("help,h", "print this help and exit (works without EAL, anywhere on the command line)")
    ("config,c", po::value<std::string>(&o.config)->value_name("FILE"),
     "the gateway configuration (YAML, OpenStack Neutron VPNaaS names; see docs/config.md); "
     "required")
    ("check-config", po::bool_switch(&o.check_config),
     "validate the configuration, print a summary and exit: 0 when valid, 1 when not; needs "
     "neither EAL nor hugepages nor ports")
    ("stats-interval", po::value<unsigned>(&o.stats_interval)->value_name("SECONDS"),
     "print port and data-plane counters every SECONDS seconds (0 = off, the default; at most "
     "86400)")
    ("log-level", po::value<std::string>(&o.log_level)->value_name("LEVEL"),
     "log level of the ipsecgw.* log types: emerg, alert, crit, err, warning, notice, info "
     "(default), debug, or 1..8. EAL's own --log-level (before `--`) still applies to DPDK's "
     "log types")
    ("api-listen", po::value<std::string>(&o.api_listen)->value_name("HOST:PORT"),
     "serve the Neutron VPNaaS v2.0 API (docs/api.md) on HOST:PORT, a host socket, never a "
     "DPDK port (default 127.0.0.1:9696; port 0 picks a free one)")
    ("no-api", "do not serve the API: the connections are the configuration file's, fixed")
    ("state-file", po::value<std::string>(&o.state_file)->value_name("FILE"),
     "the API's state file (YAML, mode 0600): every API change is written to it, and when it "
     "exists at start its Neutron resources replace the configuration file's (default: none, "
     "API changes are lost at exit)");
  // clang-format on
  return d;
}

// Options for tests, accepted but not listed by --help.
po::options_description make_hidden_options(Options& o) {
  po::options_description d("Hidden");
  d.add_options()("test-child-soft-packets",
                  po::value<std::uint64_t>(&o.test_child_soft_packets)->value_name("N"),
                  "soft packet limit of IKE-made CHILD SAs (tests)");
  return d;
}

}  // namespace

void print_help(std::ostream& out) {
  Options dummy;
  out << "Usage: " << kProg << " [EAL args] -- [options]\n"
      << "       " << kProg << " --check-config --config FILE\n\n"
      << "A userspace IPsec VPN gateway (IKEv1 / ESP tunnel mode) on DPDK. It forwards between\n"
      << "two DPDK ports: 'unprotected' (the public side holding the VPN service address) and\n"
      << "'protected' (the local subnets), as set in the configuration file.\n\n"
      << "EAL args come first and are handled by DPDK's rte_eal_init; everything after `--`\n"
      << "belongs to " << kProg << ". Frequently used EAL args:\n"
      << "  -l CORES            lcores to use: the first is the control lcore, the others run\n"
      << "                      the data plane workers (at least 2 lcores, e.g. -l 0-2)\n"
      << "  -n CHANNELS         memory channels\n"
      << "  -a PCI_ADDR         allow (use) this NIC; port ids follow the order of -a/--vdev\n"
      << "  --vdev DEVICE       a virtual device, e.g. --vdev=net_af_packet0,iface=eth1\n"
      << "  --no-huge -m MB     run without hugepages (tests, demos)\n"
      << "  --file-prefix NAME  run several DPDK processes side by side\n"
      << "(see DPDK's EAL parameters documentation for all of them)\n\n"
      << make_options(dummy) << "\n"
      << "Examples:\n"
      << "  " << kProg
      << " -l 0-2 -n 4 -a 0000:3b:00.0 -a 0000:3b:00.1 -- --config /etc/ipsecgw/gw.yaml\n"
      << "  " << kProg << " --check-config --config /etc/ipsecgw/gw.yaml\n"
      << "  " << kProg << " --no-huge -m 512 --no-pci -l 0-1 --vdev=net_af_packet0,iface=pub0 \\\n"
      << "      --vdev=net_af_packet1,iface=priv0 -- --config gw.yaml --stats-interval 10\n\n"
      << "SIGINT/SIGTERM send a Delete for every SA to the peers, stop the gateway cleanly and\n"
      << "print its counters (per port, per lcore, per SA, with drop reasons). Exit status: 0 ok,\n"
      << "1 configuration or start-up error, 2 bad command line.\n";
}

namespace {

bool is_app_option(std::string_view a) {
  for (std::string_view o : {"--config", "-c", "--check-config", "--stats-interval",
                             "--api-listen", "--no-api", "--state-file",
                             "--test-child-soft-packets"})
    if (a == o || (a.size() > o.size() && a.substr(0, o.size()) == o && a[o.size()] == '='))
      return true;
  return false;
}

}  // namespace

std::optional<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  auto desc = make_options(o);
  desc.add(make_hidden_options(o));
  po::variables_map vm;
  try {
    auto parsed = po::command_line_parser(args)
                      .options(desc)
                      .style(po::command_line_style::default_style &
                             ~po::command_line_style::allow_guessing)
                      .run();
    for (auto& opt : parsed.options) {
      if (opt.position_key != -1 || opt.string_key.empty())
        throw po::error("unexpected argument '" +
                        (opt.original_tokens.empty() ? std::string("?") : opt.original_tokens[0]) +
                        "' (options are --config, --check-config, --stats-interval, "
                        "--log-level, --api-listen, --no-api, --state-file, --help)");
    }
    po::store(parsed, vm);
    po::notify(vm);
    o.api = vm.count("no-api") == 0;
  } catch (const po::error& e) {
    std::cerr << kProg << ": error: " << e.what() << "\nTry '" << kProg << " --help'.\n";
    return std::nullopt;
  }
  if (o.config.empty()) {
    std::cerr << kProg << ": error: the option '--config' is required (put it after `--`, "
              << "e.g. " << kProg << " -l 0-1 ... -- --config gw.yaml)\nTry '" << kProg
              << " --help'.\n";
    return std::nullopt;
  }
  if (o.stats_interval > kMaxStatsInterval) {
    std::cerr << kProg << ": error: the argument ('" << o.stats_interval
              << "') for option '--stats-interval' is out of range 0.." << kMaxStatsInterval
              << "\n";
    return std::nullopt;
  }
  if (o.api) {
    const auto colon = o.api_listen.rfind(':');
    const std::string port = colon == std::string::npos ? "" : o.api_listen.substr(colon + 1);
    if (colon == 0 || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
      std::cerr << kProg << ": error: the argument ('" << o.api_listen
                << "') for option '--api-listen' is invalid (expected HOST:PORT, e.g. "
                << "127.0.0.1:9696)\n";
      return std::nullopt;
    }
  }
  if (auto level = parse_log_level(o.log_level)) {
    o.rte_log_level = *level;
  } else {
    std::cerr << kProg << ": error: the argument ('" << o.log_level
              << "') for option '--log-level' is invalid (allowed: emerg, alert, crit, err, "
              << "warning, notice, info, debug, 1..8)\n";
    return std::nullopt;
  }
  return o;
}

CommandLine split_command_line(int argc, char** argv) {
  CommandLine cl;
  cl.eal_args.emplace_back(argv[0]);
  int sep = -1;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") cl.help = true;
    if (a == "--" && sep < 0) sep = i;
  }
  if (sep >= 0) {
    cl.eal_args.insert(cl.eal_args.end(), argv + 1, argv + sep);
    cl.app_args.assign(argv + sep + 1, argv + argc);
  } else if (argc > 1 && is_app_option(argv[1])) {
    cl.app_args.assign(argv + 1, argv + argc);
  } else {
    cl.eal_args.insert(cl.eal_args.end(), argv + 1, argv + argc);
  }
  return cl;
}

}  // namespace ipsecgw::app
