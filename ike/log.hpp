// A small logging interface for the control plane (stderr by default). Lines carry cookies and
// SPIs so one exchange can be followed; key material and PSKs are never logged.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace ipsecgw::ike {

enum class LogLevel : std::uint8_t { kDebug, kInfo, kWarn, kError };
using LogSink = std::function<void(LogLevel, std::string_view)>;

// Replaces the sink (nullptr restores stderr). Not thread-safe: call at start-up.
void set_log_sink(LogSink sink);
void set_log_level(LogLevel min);
void log(LogLevel lvl, const std::string& line);

}  // namespace ipsecgw::ike
