#include "app/desired_state.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/model/store.hpp"

namespace ipsecgw::app {

model::Environment gateway_environment(const Config& cfg) {
  model::Environment env;
  env.router_name = kRouterName;
  env.router_id = model::stable_uuid(std::string("router:") + kRouterName);
  env.external_v4_ip = dp::format_ipv4(cfg.vpnservice.external_v4_ip);
  env.subnets.push_back({model::stable_uuid(std::string("subnet:") + kProtectedSubnetName),
                         kProtectedSubnetName, dp::format_prefix(cfg.vpnservice.subnet)});
  return env;
}

Result<DesiredState> load_desired_state(const std::string& config_file,
                                        const std::string& state_file,
                                        const model::Environment& env) {
  std::error_code ec;
  if (!state_file.empty() && std::filesystem::exists(state_file, ec)) {
    auto s = model::Store(state_file).load(env);
    if (!s.ok()) return make_error(s.error());
    return DesiredState{std::move(s.value()), "state file " + state_file};
  }
  std::ifstream f(config_file, std::ios::binary);
  if (!f) return make_error("cannot read " + config_file);
  std::stringstream ss;
  ss << f.rdbuf();
  auto s = model::parse_state(ss.str(), env, /*skip_manual_keys=*/true);
  if (!s.ok())
    return make_error("the configuration's Neutron sections, read as the API's model:\n" +
                      s.error());
  return DesiredState{std::move(s.value()), "config file " + config_file};
}

}  // namespace ipsecgw::app
