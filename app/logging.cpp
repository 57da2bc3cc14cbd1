#include "app/logging.hpp"

#include "ike/log.hpp"

namespace ipsecgw::app {
namespace {

struct LogLevelName {
  std::string_view name;
  std::uint32_t level;
};
constexpr LogLevelName kLogLevels[] = {
    {"emerg", RTE_LOG_EMERG},     {"alert", RTE_LOG_ALERT}, {"crit", RTE_LOG_CRIT},
    {"err", RTE_LOG_ERR},         {"error", RTE_LOG_ERR},   {"warning", RTE_LOG_WARNING},
    {"notice", RTE_LOG_NOTICE},   {"info", RTE_LOG_INFO},   {"debug", RTE_LOG_DEBUG},
};

int g_ike_log = RTE_LOGTYPE_USER2;  // replaced by the registered "ipsecgw.ike" type

// The IKE daemon's log lines go to rte_log under "ipsecgw.ike" (the daemon never logs keys).
void route_ike_log(std::uint32_t rte_level) {
  g_ike_log = rte_log_register_type_and_pick_level("ipsecgw.ike", RTE_LOG_INFO);
  if (g_ike_log < 0) g_ike_log = RTE_LOGTYPE_USER2;
  using ike::LogLevel;
  ike::set_log_level(rte_level >= RTE_LOG_DEBUG     ? LogLevel::kDebug
                     : rte_level >= RTE_LOG_INFO    ? LogLevel::kInfo
                     : rte_level >= RTE_LOG_WARNING ? LogLevel::kWarn
                                                    : LogLevel::kError);
  ike::set_log_sink([](LogLevel lvl, std::string_view line) {
    const std::uint32_t l = lvl == LogLevel::kDebug  ? RTE_LOG_DEBUG
                            : lvl == LogLevel::kInfo ? RTE_LOG_INFO
                            : lvl == LogLevel::kWarn ? RTE_LOG_WARNING
                                                     : RTE_LOG_ERR;
    rte_log(l, g_ike_log, "ipsecgw.ike: %.*s\n", static_cast<int>(line.size()), line.data());
  });
}

}  // namespace

int g_app_log = RTE_LOGTYPE_USER1;

void register_app_log() {
  g_app_log = rte_log_register_type_and_pick_level("ipsecgw.app", RTE_LOG_INFO);
  if (g_app_log < 0) g_app_log = RTE_LOGTYPE_USER1;
}

std::optional<std::uint32_t> parse_log_level(std::string_view s) {
  for (auto& l : kLogLevels)
    if (l.name == s) return l.level;
  if (s.size() == 1 && s[0] >= '1' && s[0] <= '8') return static_cast<std::uint32_t>(s[0] - '0');
  return std::nullopt;
}

void apply_log_level(std::uint32_t rte_level) {
  rte_log_set_level_pattern("ipsecgw.*", rte_level);
  route_ike_log(rte_level);
}

}  // namespace ipsecgw::app
