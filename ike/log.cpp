#include "ike/log.hpp"

#include <cstdio>

namespace ipsecgw::ike {
namespace {
LogSink g_sink;
LogLevel g_min = LogLevel::kInfo;
const char* name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void set_log_sink(LogSink sink) { g_sink = std::move(sink); }
void set_log_level(LogLevel min) { g_min = min; }

void log(LogLevel lvl, const std::string& line) {
  if (lvl < g_min) return;
  if (g_sink) {
    g_sink(lvl, line);
    return;
  }
  std::fprintf(stderr, "ike %s: %s\n", name(lvl), line.c_str());
}

}  // namespace ipsecgw::ike
