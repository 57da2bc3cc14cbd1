// The gateway's desired state at start (docs/api.md): the state file when it exists (it holds
// every change made through the API), else the configuration file's Neutron sections
// (connections with manual_keys stay the config file's static SAs and are not in the model).
// And the model's Environment: the gateway itself as the one router ("ipsecgw"), its protected
// subnet (named "protected") and its external address. DPDK-free.
#pragma once

#include <string>

#include "app/config.hpp"
#include "app/model/model.hpp"
#include "common/result.hpp"

namespace ipsecgw::app {

inline constexpr const char* kRouterName = "ipsecgw";
inline constexpr const char* kProtectedSubnetName = "protected";

model::Environment gateway_environment(const Config& cfg);

struct DesiredState {
  model::State state;
  std::string source;  // "state file PATH" or "config file PATH"
};
// state_file "" = none.
Result<DesiredState> load_desired_state(const std::string& config_file,
                                        const std::string& state_file,
                                        const model::Environment& env);

}  // namespace ipsecgw::app
