// ipsecgw-api-server: a TEST AND DEVELOPMENT HARNESS, not the gateway. It serves the Neutron
// VPNaaS v2.0 API (app/api/) over the desired-state model and its state file, with a trivial
// control loop that only drains the API's request queue. No IKE, no data plane: connection
// status is always DOWN. It lets the real OpenStack client be tested against the API until the
// reconciler wires the API into the gateway's control loop (docs/api.md).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "app/api/server.hpp"
#include "app/model/store.hpp"
#include "dataplane/api/types.hpp"

using namespace ipsecgw;

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void usage(std::ostream& o) {
  o << "usage: ipsecgw-api-server --state FILE [--listen HOST:PORT] [--port-file FILE]\n"
       "                          [--subnet NAME=CIDR]... [--router-name NAME]\n"
       "                          [--external-ip IPV4]\n"
       "A test/development harness: the Neutron VPNaaS v2.0 API over a state file, without\n"
       "the gateway (no IKE, no data plane; connection status is DOWN).\n"
       "  --state FILE        YAML state (created on the first change; mode 0600)\n"
       "  --listen HOST:PORT  default 127.0.0.1:9696; port 0 picks a free port\n"
       "  --port-file FILE    write the port listened on to FILE\n"
       "  --subnet NAME=CIDR  a protected subnet the API reports (for vpnservice --subnet and\n"
       "                      endpoint groups of type subnet); repeatable\n"
       "  --router-name NAME  the name of the one router (the gateway); default ipsecgw\n"
       "  --external-ip IPV4  the gateway's public address (vpnservice external_v4_ip)\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string state_path, port_file;
  api::ServerOptions opt;
  model::Environment env;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "ipsecgw-api-server: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--state") {
      state_path = value();
    } else if (a == "--listen") {
      if (auto r = api::parse_listen(value(), opt); !r.ok()) {
        std::cerr << "ipsecgw-api-server: " << r.error() << "\n";
        return 2;
      }
    } else if (a == "--port-file") {
      port_file = value();
    } else if (a == "--subnet") {
      std::string v = value();
      auto eq = v.find('=');
      auto pfx = eq == std::string::npos ? std::nullopt : dp::parse_prefix(v.substr(eq + 1));
      if (!pfx || eq == 0) {
        std::cerr << "ipsecgw-api-server: --subnet '" << v
                  << "': expected NAME=CIDR, e.g. protected=10.1.0.0/24\n";
        return 2;
      }
      std::string name = v.substr(0, eq);
      env.subnets.push_back({model::stable_uuid("subnet:" + name), name, dp::format_prefix(*pfx)});
    } else if (a == "--router-name") {
      env.router_name = value();
    } else if (a == "--external-ip") {
      std::string v = value();
      auto ip = dp::parse_ipv4(v);
      if (!ip) {
        std::cerr << "ipsecgw-api-server: --external-ip '" << v << "' is not an IPv4 address\n";
        return 2;
      }
      env.external_v4_ip = dp::format_ipv4(*ip);
    } else if (a == "-h" || a == "--help") {
      usage(std::cout);
      return 0;
    } else {
      std::cerr << "ipsecgw-api-server: unknown option '" << a << "'\n";
      usage(std::cerr);
      return 2;
    }
  }
  if (state_path.empty()) {
    std::cerr << "ipsecgw-api-server: --state FILE is required\n";
    usage(std::cerr);
    return 2;
  }
  env.router_id = model::stable_uuid("router:" + env.router_name);

  model::Store store(state_path);
  auto loaded = store.load(env);
  if (!loaded.ok()) {
    std::cerr << "ipsecgw-api-server: " << loaded.error() << "\n";
    return 1;
  }
  api::ApiHandler handler(std::move(*loaded), env, &store);
  handler.log_sink([](const std::string& line) { std::cerr << "api: " << line << "\n"; });
  handler.on_change([](const std::vector<model::ConnectionChange>& changes, const model::State&,
                       const model::State&) {
    for (auto& c : changes)
      std::cerr << "api: connection " << c.id << " " << model::to_string(c.kind)
                << (c.kind == model::ConnectionChange::Kind::kUpdated
                        ? (c.sa_changed ? " (renegotiate)" : " (in place)")
                        : "")
                << " -- no reconciler in this harness\n";
  });

  api::ApiServer server(handler, opt);
  if (auto r = server.start(); !r.ok()) {
    std::cerr << "ipsecgw-api-server: " << r.error() << "\n";
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::cerr << "ipsecgw-api-server: listening on http://" << opt.host << ":" << server.port()
            << " (state " << state_path << ", router " << env.router_id << ")\n";
  if (!port_file.empty()) {
    std::ofstream(port_file) << server.port() << "\n";
  }
  // The trivial control loop: drain the API's queue. The gateway's loop will call poll() too.
  while (!g_stop) {
    server.wait_for(std::chrono::milliseconds(100));
    server.poll();
  }
  server.stop();
  std::cerr << "ipsecgw-api-server: stopped\n";
  return 0;
}
