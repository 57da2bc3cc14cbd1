// Validation rules shared by the YAML config file (app/config.cpp) and the desired-state model
// behind the REST API (app/model/model.cpp): ranges, defaults, allowed values, the values
// Neutron knows that ipsecgw does not support (and why), and the wording of the errors.
// docs/config.md and docs/api.md document the same numbers.
// Header-only, no DPDK, no YAML, no HTTP.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace ipsecgw::app {

// Limits (docs/config.md).
inline constexpr std::uint32_t kLifetimeMin = 60, kLifetimeMax = 86400, kLifetimeDefault = 3600;
// A connection's mtu bounds its outer ESP packets. Below 576 (RFC 791: the size every host
// must accept) no SA can be created (dataplane/sa.cpp refuses it, and the ESP overhead leaves
// no room for a minimal inner packet): refused here, before any negotiation. Neutron's own
// floor (68) is lower.
inline constexpr std::uint32_t kConnMtuMin = 576, kConnMtuMax = 9000, kConnMtuDefault = 1500;
inline constexpr std::uint32_t kPortMtuMin = 576, kPortMtuMax = 9000;
inline constexpr std::uint32_t kDpdIntervalDefault = 30, kDpdTimeoutDefault = 120;
inline constexpr std::uint32_t kDpdMax = 86400;
inline constexpr std::uint32_t kReplayWindowMax = 4096, kReplayWindowDefault = 64;
// (local, peer) CIDR pairs of one connection, a CHILD SA each (ike::kMaxPairs).
inline constexpr std::size_t kMaxSubnetPairs = 64;
inline constexpr std::uint32_t kMinSpi = 256;  // 1..255 reserved by IANA (RFC 4303 §2.1)

// A pre-shared key: an empty one is refused (docs/config.md); one shorter than
// kPskRecommendedMin bytes is accepted with a warning: a captured Main Mode exchange lets
// anyone test guesses offline, so a short PSK is only as good as a password.
inline constexpr std::size_t kPskRecommendedMin = 16;
inline constexpr std::string_view kMsgPskEmpty = "must not be empty";
inline std::string msg_psk_short(std::size_t len) {
  return std::to_string(len) + " bytes, shorter than the recommended " +
         std::to_string(kPskRecommendedMin) + " (value not shown): a captured Main Mode "
         "exchange lets a short key be guessed offline";
}

// Allowed values of the enumerated Neutron fields, in the order the errors list them.
inline constexpr std::string_view kAuthAlgorithms[] = {"sha1", "sha256"};
inline constexpr std::string_view kEncryptionAlgorithms[] = {"aes-128", "aes-192", "aes-256"};
inline constexpr std::string_view kPfsGroups[] = {"group2", "group5", "group14"};
inline constexpr std::string_view kDpdActions[] = {"hold", "clear", "restart", "restart-by-peer",
                                                   "disabled"};
inline constexpr std::string_view kInitiators[] = {"bi-directional", "response-only"};
inline constexpr std::string_view kAuthAlgorithmDefault = "sha1";
inline constexpr std::string_view kEncryptionAlgorithmDefault = "aes-128";
inline constexpr std::string_view kPfsDefault = "group5";
inline constexpr std::string_view kDpdActionDefault = "hold";
inline constexpr std::string_view kInitiatorDefault = "bi-directional";

// A Neutron field of which ipsecgw supports one value only.
struct FixedValue {
  std::string_view only;
  std::string_view why;  // why the other values Neutron knows are refused
};
inline constexpr FixedValue kLifetimeUnits{"seconds", "volume lifetimes are not supported"};
inline constexpr FixedValue kIkeVersion{"v1", "IKEv2 is not implemented"};
inline constexpr FixedValue kPhase1Mode{"main", "aggressive mode is not implemented"};
inline constexpr FixedValue kTransformProtocol{"esp", "AH is not implemented"};
inline constexpr FixedValue kEncapsulationMode{"tunnel", "transport mode is not implemented"};
inline constexpr FixedValue kAuthMode{"psk", "certificate authentication is not implemented"};
inline constexpr FixedValue kRouteMode{"static", "only static routing is supported"};

// Error wording, "<field>: <this>" (config.cpp and the model prefix the field path).
inline std::string quote_value(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  out += "'";
  return out;
}
inline std::string msg_out_of_range(std::string_view shown, std::uint64_t lo, std::uint64_t hi) {
  return std::string(shown) + " out of range " + std::to_string(lo) + ".." + std::to_string(hi);
}
template <std::size_t N>
std::string join_allowed(const std::string_view (&names)[N]) {
  std::string s;
  for (auto n : names) {
    if (!s.empty()) s += "|";
    s += n;
  }
  return s;
}
template <std::size_t N>
std::string msg_not_allowed(std::string_view value, const std::string_view (&names)[N]) {
  return quote_value(value) + " is not allowed (allowed: " + join_allowed(names) + ")";
}
inline std::string msg_not_supported(std::string_view value, const FixedValue& f) {
  return quote_value(value) + " is not supported (allowed: " + std::string(f.only) + "; " +
         std::string(f.why) + ")";
}

}  // namespace ipsecgw::app
