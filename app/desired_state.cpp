#include "app/desired_state.hpp"

#include <openssl/crypto.h>

#include <filesystem>

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
  auto text = read_secret_file(config_file);
  if (!text.ok()) return make_error(text.error());
  auto s = model::parse_state(*text, env, /*skip_manual_keys=*/true);
  if (!text->empty()) OPENSSL_cleanse(text->data(), text->size());  // it holds PSKs
  if (!s.ok())
    return make_error("the configuration's Neutron sections, read as the API's model:\n" +
                      s.error());
  return DesiredState{std::move(s.value()), "config file " + config_file};
}

}  // namespace ipsecgw::app
