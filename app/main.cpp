// ipsecgw: `ipsecgw [EAL args] -- [options]`, like the DPDK example applications.
//
// Order of work, so that mistakes cost as little as possible:
//   1. --help / -h anywhere: print help, exit 0 (no EAL, no hugepages needed).
//   2. Parse the application options (after `--`) and load + validate the YAML config.
//      --check-config stops here (exit 0 valid / 1 invalid): config errors never need EAL.
//   3. rte_eal_init with the EAL args (before `--`), check ports and lcores.
//   4. Gateway::create -> static SAs (manual_keys) -> IKE daemon for the other connections ->
//      start -> control loop (slow path, IKE timers, SA events, connection status log).
//   5. SIGINT/SIGTERM: stop, print the counters and connections report, destroy (keys wiped),
//      rte_eal_cleanup.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_telemetry.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/config.hpp"
#include "app/ike_config.hpp"
#include "dataplane/gateway.hpp"
#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace po = boost::program_options;

namespace {

constexpr const char* kProg = "ipsecgw";
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // invalid config, EAL/gateway start-up failure
constexpr int kExitUsage = 2;    // bad command line

int g_log = RTE_LOGTYPE_USER1;  // replaced by the registered "ipsecgw.app" type

#define APP_LOG(level, fmt, ...) \
  rte_log(RTE_LOG_##level, g_log, "ipsecgw.app: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

struct Options {
  std::string config;
  bool check_config = false;
  unsigned stats_interval = 0;  // seconds, 0 = off
  std::string log_level = "info";
};

constexpr unsigned kMaxStatsInterval = 86400;

struct LogLevelName {
  std::string_view name;
  std::uint32_t level;
};
constexpr LogLevelName kLogLevels[] = {
    {"emerg", RTE_LOG_EMERG},     {"alert", RTE_LOG_ALERT}, {"crit", RTE_LOG_CRIT},
    {"err", RTE_LOG_ERR},         {"error", RTE_LOG_ERR},   {"warning", RTE_LOG_WARNING},
    {"notice", RTE_LOG_NOTICE},   {"info", RTE_LOG_INFO},   {"debug", RTE_LOG_DEBUG},
};

std::optional<std::uint32_t> parse_log_level(std::string_view s) {
  for (auto& l : kLogLevels)
    if (l.name == s) return l.level;
  if (s.size() == 1 && s[0] >= '1' && s[0] <= '8') return static_cast<std::uint32_t>(s[0] - '0');
  return std::nullopt;
}

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
     "log types");
  // clang-format on
  return d;
}

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
      << "SIGINT/SIGTERM stop the gateway cleanly and print its counters (per port, per lcore,\n"
      << "per SA, with drop reasons). Exit status: 0 ok, 1 configuration or start-up error,\n"
      << "2 bad command line.\n";
}

bool is_app_option(std::string_view a) {
  for (std::string_view o : {"--config", "-c", "--check-config", "--stats-interval"})
    if (a == o || (a.size() > o.size() && a.substr(0, o.size()) == o && a[o.size()] == '='))
      return true;
  return false;
}

// Parses the application options; on error prints a message naming the option.
std::optional<Options> parse_options(const std::vector<std::string>& args) {
  Options o;
  auto desc = make_options(o);
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
                        "--log-level, --help)");
    }
    po::store(parsed, vm);
    po::notify(vm);
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
  if (!parse_log_level(o.log_level)) {
    std::cerr << kProg << ": error: the argument ('" << o.log_level
              << "') for option '--log-level' is invalid (allowed: emerg, alert, crit, err, "
              << "warning, notice, info, debug, 1..8)\n";
    return std::nullopt;
  }
  return o;
}

std::string stats_line(const ipsecgw::dp::Gateway& gw) {
  using ipsecgw::dp::DropReason;
  std::ostringstream o;
  auto pu = gw.port_counters(false), pp = gw.port_counters(true);
  auto t = gw.total_stats();
  o << "stats: unprotected rx " << pu.ipackets << " tx " << pu.opackets << " missed "
    << pu.imissed << " | protected rx " << pp.ipackets << " tx " << pp.opackets << " missed "
    << pp.imissed << " | esp out " << t.esp_out_packets << " in " << t.esp_in_packets
    << " | drops";
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < ipsecgw::dp::kDropReasonCount; ++i) {
    if (t.drops[i] == 0) continue;
    total += t.drops[i];
    o << " " << to_string(static_cast<DropReason>(i)) << "=" << t.drops[i];
  }
  if (total == 0) o << " 0";
  return o.str();
}

// Checks that EAL gave what the configuration needs; errors name the config field.
bool check_eal_resources(const ipsecgw::app::Config& cfg) {
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

// ---- IKE connections: status log, exit report, /ipsecgw/connections telemetry ----

constexpr auto kIkeTickEvery = std::chrono::milliseconds(20);

int g_ike_log = RTE_LOGTYPE_USER2;  // replaced by the registered "ipsecgw.ike" type

// The IKE daemon's log lines go to rte_log under "ipsecgw.ike" (the daemon never logs keys).
void route_ike_log(std::uint32_t rte_level) {
  g_ike_log = rte_log_register_type_and_pick_level("ipsecgw.ike", RTE_LOG_INFO);
  if (g_ike_log < 0) g_ike_log = RTE_LOGTYPE_USER2;
  using ipsecgw::ike::LogLevel;
  ipsecgw::ike::set_log_level(rte_level >= RTE_LOG_DEBUG  ? LogLevel::kDebug
                              : rte_level >= RTE_LOG_INFO ? LogLevel::kInfo
                              : rte_level >= RTE_LOG_WARNING ? LogLevel::kWarn
                                                             : LogLevel::kError);
  ipsecgw::ike::set_log_sink([](LogLevel lvl, std::string_view line) {
    const std::uint32_t l = lvl == LogLevel::kDebug  ? RTE_LOG_DEBUG
                            : lvl == LogLevel::kInfo ? RTE_LOG_INFO
                            : lvl == LogLevel::kWarn ? RTE_LOG_WARNING
                                                     : RTE_LOG_ERR;
    rte_log(l, g_ike_log, "ipsecgw.ike: %.*s\n", static_cast<int>(line.size()), line.data());
  });
}

struct ConnRow {
  std::string name;
  std::string peer;
  std::string state;  // DOWN / PENDING / ACTIVE / ERROR, or STATIC (manual keys)
  std::string reason;
  std::uint32_t spi_in = 0, spi_out = 0;
  bool udp_encap = false;
  friend bool operator==(const ConnRow&, const ConnRow&) = default;
};

std::string describe_row(const ConnRow& r) {
  std::ostringstream o;
  o << "connection " << r.name << " (peer " << r.peer << "): " << r.state;
  if (!r.reason.empty()) o << " (" << r.reason << ")";
  if (r.spi_in != 0 || r.spi_out != 0) {
    char spis[64];
    std::snprintf(spis, sizeof spis, " spi_in 0x%08x spi_out 0x%08x", r.spi_in, r.spi_out);
    o << spis << (r.udp_encap ? " esp-in-udp" : " esp");
  }
  return o.str();
}

// The control lcore writes the rows, the telemetry thread reads them.
std::mutex g_conn_mu;
std::vector<ConnRow> g_conn_rows;

// Columns, like /ipsecgw/sa (DPDK 22.11 telemetry nests only arrays in dicts, and dict keys
// must be plain names, which connection names need not be): row i of every array is one
// connection.
int tel_connections(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lk(g_conn_mu);
  std::vector<ConnRow> rows = g_conn_rows;
  if (rows.size() > RTE_TEL_MAX_ARRAY_ENTRIES) rows.resize(RTE_TEL_MAX_ARRAY_ENTRIES);
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "count", rows.size());
  auto add_str = [&](const char* name, auto get) {
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return;
    rte_tel_data_start_array(a, RTE_TEL_STRING_VAL);
    for (const ConnRow& r : rows) rte_tel_data_add_array_string(a, get(r).c_str());
    if (rte_tel_data_add_dict_container(d, name, a, 0) != 0) rte_tel_data_free(a);
  };
  auto add_u64 = [&](const char* name, auto get) {
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return;
    rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
    for (const ConnRow& r : rows) rte_tel_data_add_array_u64(a, get(r));
    if (rte_tel_data_add_dict_container(d, name, a, 0) != 0) rte_tel_data_free(a);
  };
  add_str("name", [](const ConnRow& r) { return r.name; });
  add_str("peer", [](const ConnRow& r) { return r.peer; });
  add_str("state", [](const ConnRow& r) { return r.state; });
  add_str("reason", [](const ConnRow& r) { return r.reason; });
  add_u64("spi_in", [](const ConnRow& r) { return std::uint64_t{r.spi_in}; });
  add_u64("spi_out", [](const ConnRow& r) { return std::uint64_t{r.spi_out}; });
  add_u64("udp_encap", [](const ConnRow& r) { return std::uint64_t{r.udp_encap}; });
  return 0;
}

ConnRow ike_row(const ipsecgw::ike::Daemon& ike, const ipsecgw::ike::ConnectionConfig& c) {
  const auto st = ike.status(c.name);
  ConnRow r{c.name, ipsecgw::dp::format_ipv4(c.peer_addr), ipsecgw::ike::to_string(st.state),
            st.reason};
  if (st.child && st.state == ipsecgw::ike::ConnState::kActive) {
    r.spi_in = st.child->spi_in;
    r.spi_out = st.child->spi_out;
    r.udp_encap = st.child->udp_encap;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  g_log = rte_log_register_type_and_pick_level("ipsecgw.app", RTE_LOG_INFO);
  if (g_log < 0) g_log = RTE_LOGTYPE_USER1;

  // Split at the first `--`: EAL args before, ours after. Without `--`, a command line that
  // starts with one of our options (e.g. `ipsecgw --check-config --config gw.yaml`) is all ours.
  std::vector<std::string> eal_args{argv[0]}, app_args;
  {
    int sep = -1;
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "--help" || a == "-h") {
        print_help(std::cout);
        return kExitOk;
      }
      if (a == "--" && sep < 0) sep = i;
    }
    if (sep >= 0) {
      eal_args.insert(eal_args.end(), argv + 1, argv + sep);
      app_args.assign(argv + sep + 1, argv + argc);
    } else if (argc > 1 && is_app_option(argv[1])) {
      app_args.assign(argv + 1, argv + argc);
    } else {
      eal_args.insert(eal_args.end(), argv + 1, argv + argc);
    }
  }

  auto opts = parse_options(app_args);
  if (!opts) return kExitUsage;

  // The configuration is loaded and validated before EAL: its errors need no hugepages.
  auto cfg = ipsecgw::app::load_config(opts->config);
  if (!cfg.ok()) {
    std::cerr << kProg << ": " << cfg.error() << "\n";
    return kExitFailure;
  }
  if (opts->check_config) {
    std::cout << "configuration OK: " << opts->config << "\n" << ipsecgw::app::describe(*cfg);
    return kExitOk;
  }

  // Our log level for every ipsecgw.* type, including those registered later by the gateway;
  // EAL's --log-level args (parsed in rte_eal_init) still override it.
  rte_log_set_level_pattern("ipsecgw.*", *parse_log_level(opts->log_level));
  route_ike_log(*parse_log_level(opts->log_level));

  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  eal_argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(eal_args.size()), eal_argv.data()) < 0) {
    std::cerr << kProg << ": EAL initialisation failed: " << rte_strerror(rte_errno)
              << " (without hugepages use --no-huge -m 512; ports come from -a/--vdev)\n";
    return kExitFailure;
  }
  APP_LOG(INFO, "ipsecgw starting: config %s, %u lcores", opts->config.c_str(),
          rte_lcore_count());

  int rc = kExitOk;
  {
    std::unique_ptr<ipsecgw::dp::Gateway> gw;
    if (!check_eal_resources(*cfg)) {
      rc = kExitFailure;
    } else if (auto g = ipsecgw::dp::Gateway::create(ipsecgw::app::to_gateway_config(*cfg));
               !g.ok()) {
      APP_LOG(ERR, "cannot create the gateway: %s", g.error().c_str());
      rc = kExitFailure;
    } else {
      gw = std::move(g.value());
    }

    // Static SAs (manual_keys): installed before start, inbound before outbound (the order
    // manual_sa_specs gives), so no packet meets a missing SA.
    if (gw) {
      for (auto& spec : ipsecgw::app::manual_sa_specs(*cfg)) {
        const auto& conn = cfg->ipsec_site_connections.at(spec.conn_id - 1);
        const bool in = spec.dir == ipsecgw::dp::Direction::kInbound;
        const std::uint32_t spi = spec.spi;
        if (auto r = gw->installer().add_sa(std::move(spec)); !r.ok()) {
          APP_LOG(ERR, "connection %s: cannot install %s SA spi 0x%08x: %s", conn.name.c_str(),
                  in ? "inbound" : "outbound", spi, r.error().c_str());
          rc = kExitFailure;
          break;
        }
        APP_LOG(INFO, "connection %s: %s SA spi 0x%08x installed (manual keys)",
                conn.name.c_str(), in ? "inbound" : "outbound", spi);
      }
    }

    // ---- IKE --------------------------------------------------------------------------------
    // Connections without manual_keys are negotiated by the IKE daemon (ike/): each enabled one
    // mapped by app/ike_config onto ike::ConnectionConfig, SAs installed through the gateway's
    // installer, IKE datagrams (UDP 500/4500, punted by the data plane) in through
    // set_datagram_handler before start(), out through datagram_sender(). Its timers run from
    // the control loop below. Rows of static connections show STATE "STATIC".
    ipsecgw::ike::SteadyClock ike_clock;
    std::unique_ptr<ipsecgw::ike::Daemon> ike;
    std::vector<ipsecgw::ike::ConnectionConfig> ike_conns;  // names/peers for status rows
    std::vector<ConnRow> static_rows;
    if (gw && rc == kExitOk) {
      for (const auto& c : cfg->ipsec_site_connections)
        if (c.manual_keys && c.admin_state_up)
          static_rows.push_back({c.name, ipsecgw::dp::format_ipv4(c.peer_address), "STATIC",
                                 "manual keys", c.manual_keys->inbound.spi,
                                 c.manual_keys->outbound.spi, c.manual_keys->udp_encap});
      auto confs = ipsecgw::app::ike_connection_configs(*cfg);
      if (!confs.empty()) {
        ike = std::make_unique<ipsecgw::ike::Daemon>(gw->datagram_sender(), gw->installer(),
                                                     ike_clock);
        for (auto& k : confs) {
          ipsecgw::ike::ConnectionConfig shown;  // the same without the PSK
          shown.name = k.name;
          shown.peer_addr = k.peer_addr;
          const std::string name = k.name;
          const bool initiates = k.initiator == ipsecgw::ike::InitiatorMode::kBidirectional;
          if (auto r = ike->add_connection(std::move(k)); !r.ok()) {
            APP_LOG(ERR, "connection %s: IKE rejects it: %s", name.c_str(), r.error().c_str());
            rc = kExitFailure;
            break;
          }
          APP_LOG(INFO, "connection %s: IKEv1 with peer %s, %s", name.c_str(),
                  ipsecgw::dp::format_ipv4(shown.peer_addr).c_str(),
                  initiates ? "initiator (bi-directional)" : "response-only");
          ike_conns.push_back(std::move(shown));
        }
        if (rc == kExitOk) gw->set_datagram_handler(ike.get());
      }
      std::lock_guard lk(g_conn_mu);
      g_conn_rows = static_rows;
      for (const auto& k : ike_conns) g_conn_rows.push_back(ike_row(*ike, k));
    }
    if (gw && rc == kExitOk && cfg->dataplane.telemetry) {
      static bool registered = false;
      if (!registered)
        rte_telemetry_register_cmd("/ipsecgw/connections", tel_connections,
                                   "Site connections: state (DOWN/PENDING/ACTIVE/ERROR/STATIC), "
                                   "reason, SPIs. No parameters");
      registered = true;
    }
    // Logs each IKE connection's status change and refreshes the telemetry rows.
    std::vector<ConnRow> last_rows(ike_conns.size());
    auto refresh_status = [&] {
      if (!ike) return;
      bool changed = false;
      for (std::size_t i = 0; i < ike_conns.size(); ++i) {
        ConnRow r = ike_row(*ike, ike_conns[i]);
        if (r == last_rows[i]) continue;
        changed = true;
        if (r.state == "ERROR")
          APP_LOG(WARNING, "%s", describe_row(r).c_str());
        else
          APP_LOG(NOTICE, "%s", describe_row(r).c_str());
        last_rows[i] = std::move(r);
      }
      if (changed) {
        std::lock_guard lk(g_conn_mu);
        g_conn_rows = static_rows;
        g_conn_rows.insert(g_conn_rows.end(), last_rows.begin(), last_rows.end());
      }
    };

    if (gw && rc == kExitOk) {
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);

      if (auto r = gw->start(); !r.ok()) {
        APP_LOG(ERR, "cannot start the gateway: %s", r.error().c_str());
        rc = kExitFailure;
      } else {
        APP_LOG(INFO, "ipsecgw running (SIGINT/SIGTERM to stop)");
        using clock = std::chrono::steady_clock;
        const auto stats_every = std::chrono::seconds(opts->stats_interval);
        auto next_stats = clock::now() + stats_every;
        auto next_events = clock::now();
        auto next_ike = clock::now();
        refresh_status();
        while (!g_stop_signal) {
          const unsigned work = gw->control_poll();  // also hands IKE datagrams to the daemon
          const auto now = clock::now();
          if (ike && now >= next_ike) {  // IKE timers: retransmits, DPD, (re)initiation
            ike->tick();
            refresh_status();
            next_ike = now + kIkeTickEvery;
          }
          // With IKE running, the daemon owns the data plane's events (it polls them in tick()
          // to rekey on sequence exhaustion / limits and to negotiate on acquires); taking them
          // here would steal them. Without IKE (static SAs only) they are logged here.
          if (!ike && now >= next_events) {
            for (const auto& ev : gw->installer().poll_events()) {
              const char* what = ev.kind == ipsecgw::dp::SaEventKind::kSeqExhausted
                                     ? "sequence numbers exhausted"
                                 : ev.kind == ipsecgw::dp::SaEventKind::kSoftLimit
                                     ? "soft limit reached"
                                 : ev.kind == ipsecgw::dp::SaEventKind::kAcquire
                                     ? "traffic for a tunnel without SA (acquire)"
                                     : "hard limit reached";
              APP_LOG(WARNING, "%s SA spi 0x%08x (connection %u): %s",
                      ev.dir == ipsecgw::dp::Direction::kInbound ? "inbound" : "outbound",
                      ev.spi, ev.conn_id, what);
            }
            next_events = now + std::chrono::milliseconds(100);
          }
          if (opts->stats_interval != 0 && now >= next_stats) {
            std::printf("%s\n", stats_line(*gw).c_str());
            std::fflush(stdout);
            next_stats = now + stats_every;
          }
          // The control lcore only serves the slow path: yield the CPU when idle.
          if (work == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        APP_LOG(INFO, "signal %d: stopping", static_cast<int>(g_stop_signal));
      }
    }

    if (gw) {
      gw->stop();
      std::printf("=== ipsecgw counters ===\n%s", gw->report().c_str());
      if (ike || !static_rows.empty()) {
        std::printf("=== ipsecgw connections ===\n");
        for (const auto& r : static_rows) std::printf("%s\n", describe_row(r).c_str());
        for (const auto& k : ike_conns) std::printf("%s\n", describe_row(ike_row(*ike, k)).c_str());
      }
      std::fflush(stdout);
      {
        std::lock_guard lk(g_conn_mu);
        g_conn_rows.clear();
      }
      gw->set_datagram_handler(nullptr);
      ike.reset();  // before the gateway: it holds the gateway's sender and installer
      gw.reset();   // frees the SAs and wipes their keys
    }
  }
  rte_eal_cleanup();
  return rc;
}
