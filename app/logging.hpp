// The ipsecgw process's logging: the "ipsecgw.app" rte_log type behind APP_LOG, the level of all
// ipsecgw.* types (--log-level), and the IKE daemon's log lines routed to "ipsecgw.ike".
#pragma once

#include <rte_log.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace ipsecgw::app {

extern int g_app_log;  // the "ipsecgw.app" log type; RTE_LOGTYPE_USER1 until registered

// Registers "ipsecgw.app" (before EAL: rte_log works without it).
void register_app_log();

// --log-level: emerg, alert, crit, err/error, warning, notice, info, debug, or 1..8.
std::optional<std::uint32_t> parse_log_level(std::string_view s);

// Sets `rte_level` for every ipsecgw.* log type, including those registered later by the
// gateway (EAL's own --log-level args, parsed in rte_eal_init, still override it), and sends
// the IKE daemon's log lines to rte_log under "ipsecgw.ike" at the matching level.
void apply_log_level(std::uint32_t rte_level);

}  // namespace ipsecgw::app

#define APP_LOG(level, fmt, ...)                                \
  rte_log(RTE_LOG_##level, ::ipsecgw::app::g_app_log,           \
          "ipsecgw.app: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)
