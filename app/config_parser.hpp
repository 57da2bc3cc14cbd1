// The YAML parser behind app/config.cpp: Parser (typed field readers that record every error
// with its field path and go on), the enum name tables and small string helpers. Private to
// app/config.cpp.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "app/config.hpp"

namespace ipsecgw::app::config_parser {

using Keys = std::initializer_list<std::string_view>;

template <class E>
struct EnumName {
  std::string_view name;
  E value;
};

inline std::string join(Keys keys) {
  std::string s;
  for (auto k : keys) {
    if (!s.empty()) s += ", ";
    s += k;
  }
  return s;
}

template <class E, std::size_t N>
std::string join(const EnumName<E> (&names)[N]) {
  std::string s;
  for (auto& n : names) {
    if (!s.empty()) s += "|";
    s += n.name;
  }
  return s;
}

// Levenshtein distance, for "did you mean" on unknown keys.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

inline std::string quote(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  out += "'";
  return out;
}

inline std::string idx(std::string_view path, std::size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}
inline std::string sub(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

inline bool parse_u64(std::string_view s, std::uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc{} && p == s.data() + s.size();
}

inline std::optional<dp::MacAddr> parse_mac(std::string_view s) {
  dp::MacAddr mac{};
  if (s.size() != 17) return std::nullopt;
  for (int i = 0; i < 6; ++i) {
    if (i > 0 && s[i * 3 - 1] != ':' && s[i * 3 - 1] != '-') return std::nullopt;
    unsigned v = 0;
    auto part = s.substr(i * 3, 2);
    auto [p, ec] = std::from_chars(part.data(), part.data() + 2, v, 16);
    if (ec != std::errc{} || p != part.data() + 2) return std::nullopt;
    mac[i] = static_cast<std::uint8_t>(v);
  }
  return mac;
}

inline bool overlaps(const dp::Ipv4Prefix& a, const dp::Ipv4Prefix& b) {
  return a.contains(b.addr) || b.contains(a.addr);
}

class Parser {
 public:
  std::vector<std::string> errors;
  std::vector<std::string> warnings;  // "<field path>: <message>"; the file is still valid

  // One error line: "<field path>: <message>". The path is made printable (a key may hold any
  // character YAML allows, newlines included: those are written as \xNN), and an empty path
  // (the document itself) reads "(top level)".
  void error(const std::string& path, std::string msg) {
    std::string shown;
    for (unsigned char c : path) {
      if (c < 0x20 || c == 0x7f) {
        static constexpr char kHex[] = "0123456789abcdef";
        shown += "\\x";
        shown += kHex[c >> 4];
        shown += kHex[c & 15];
      } else {
        shown += static_cast<char>(c);
      }
    }
    errors.push_back((shown.empty() ? std::string("(top level)") : shown) + ": " + msg);
  }

  // Reports keys that are not in `allowed` (typos) and duplicate keys. False if not a map.
  bool check_map(const YAML::Node& n, const std::string& path, Keys allowed) {
    if (!n.IsMap()) {
      error(path, "must be a mapping with keys " + join(allowed));
      return false;
    }
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string("?");
      if (!seen.insert(key).second) {
        error(sub(path, key), "duplicate key");
        continue;
      }
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string msg = "unknown key (";
      std::string_view best;
      std::size_t best_d = 3;  // suggest only close matches
      for (auto a : allowed) {
        auto d = edit_distance(key, a);
        if (d < best_d) {
          best_d = d;
          best = a;
        }
      }
      if (!best.empty()) msg += "did you mean '" + std::string(best) + "'? ";
      msg += "allowed: " + join(allowed) + ")";
      error(sub(path, key), msg);
    }
    return true;
  }

  // A scalar child, or nullopt (with an error when required or of the wrong type).
  std::optional<std::string> scalar(const YAML::Node& parent, std::string_view key,
                                    const std::string& path, bool required,
                                    bool secret = false) {
    const YAML::Node n = parent[std::string(key)];
    if (!n || n.IsNull()) {
      if (required) error(sub(path, key), "required");
      return std::nullopt;
    }
    if (!n.IsScalar()) {
      error(sub(path, key), secret ? "must be a string (value not shown)" : "must be a scalar");
      return std::nullopt;
    }
    return n.Scalar();
  }

  std::optional<std::string> string(const YAML::Node& p, std::string_view key,
                                    const std::string& path, bool required) {
    auto s = scalar(p, key, path, required);
    if (s && s->empty()) {
      error(sub(path, key), "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  template <class T>
  T uint(const YAML::Node& p, std::string_view key, const std::string& path, std::uint64_t lo,
         std::uint64_t hi, T def, bool required = false) {
    auto s = scalar(p, key, path, required);
    if (!s) return def;
    std::uint64_t v = 0;
    if (!parse_u64(*s, v)) {
      error(sub(path, key), quote(*s) + " is not a non-negative integer");
      return def;
    }
    if (v < lo || v > hi) {
      error(sub(path, key), msg_out_of_range(*s, lo, hi));
      return def;
    }
    return static_cast<T>(v);
  }

  bool boolean(const YAML::Node& p, std::string_view key, const std::string& path, bool def) {
    auto s = scalar(p, key, path, false);
    if (!s) return def;
    std::string v = *s;
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "true" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "no" || v == "off") return false;
    error(sub(path, key), quote(*s) + " is not a boolean (allowed: true, false)");
    return def;
  }

  template <class E, std::size_t N>
  E enumeration(const YAML::Node& p, std::string_view key, const std::string& path,
                const EnumName<E> (&names)[N], E def, bool required = false) {
    auto s = scalar(p, key, path, required);
    if (!s) return def;
    for (auto& n : names)
      if (n.name == *s) return n.value;
    error(sub(path, key), quote(*s) + " is not allowed (allowed: " + join(names) + ")");
    return def;
  }

  // A fixed-value field Neutron has but we support one value of (e.g. ike_version: v1).
  std::string fixed(const YAML::Node& p, std::string_view key, const std::string& path,
                    const FixedValue& f) {
    auto s = scalar(p, key, path, false);
    if (s && *s != f.only) error(sub(path, key), msg_not_supported(*s, f));
    return std::string(f.only);
  }

  std::optional<dp::Ipv4> ipv4(const YAML::Node& p, std::string_view key,
                               const std::string& path, bool required) {
    auto s = scalar(p, key, path, required);
    if (!s) return std::nullopt;
    auto a = dp::parse_ipv4(*s);
    if (!a) error(sub(path, key), quote(*s) + " is not an IPv4 address (e.g. 192.0.2.1)");
    return a;
  }

  std::optional<dp::Ipv4Prefix> prefix_text(const std::string& s, const std::string& path) {
    auto pfx = dp::parse_prefix(s);
    if (pfx) return pfx;
    auto slash = s.find('/');
    if (slash != std::string::npos && dp::parse_ipv4(s.substr(0, slash))) {
      error(path, quote(s) + " is not a valid CIDR (host bits must be zero, prefix length 0..32, "
                             "e.g. 10.1.0.0/24)");
    } else {
      error(path, quote(s) + " is not an IPv4 CIDR (e.g. 10.1.0.0/24)");
    }
    return std::nullopt;
  }

  std::optional<dp::Ipv4Prefix> prefix(const YAML::Node& p, std::string_view key,
                                       const std::string& path, bool required) {
    auto s = scalar(p, key, path, required);
    if (!s) return std::nullopt;
    return prefix_text(*s, sub(path, key));
  }

  std::vector<dp::Ipv4Prefix> prefix_list(const YAML::Node& p, std::string_view key,
                                          const std::string& path) {
    std::vector<dp::Ipv4Prefix> out;
    const YAML::Node n = p[std::string(key)];
    std::string kp = sub(path, key);
    if (!n.IsSequence()) {
      error(kp, "must be a list of CIDRs, e.g. [10.2.0.0/24]");
      return out;
    }
    if (n.size() == 0) error(kp, "must not be empty");
    for (std::size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        error(idx(kp, i), "must be a CIDR string");
        continue;
      }
      if (auto pfx = prefix_text(n[i].Scalar(), idx(kp, i))) out.push_back(*pfx);
    }
    return out;
  }

  // A secret string; errors never show it.
  crypto::SecureBytes secret(const YAML::Node& p, std::string_view key, const std::string& path,
                             bool required) {
    auto s = scalar(p, key, path, required, /*secret=*/true);
    crypto::SecureBytes out;
    if (!s) return out;
    if (s->empty()) {
      error(sub(path, key), std::string(kMsgPskEmpty));
    } else {
      out = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(s->data()), s->size());
    }
    std::fill(s->begin(), s->end(), '\0');
    return out;
  }

  // A hex key of exactly `want` bytes ("0x" prefix optional); errors never show it.
  crypto::SecureBytes hex_key(const YAML::Node& p, std::string_view key, const std::string& path,
                              std::size_t want, std::string_view alg) {
    auto s = scalar(p, key, path, true, /*secret=*/true);
    crypto::SecureBytes out;
    if (!s) return out;
    std::string_view h = *s;
    if (h.size() >= 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) h.remove_prefix(2);
    bool ok = !h.empty() && h.size() % 2 == 0 &&
              std::all_of(h.begin(), h.end(), [](char c) { return std::isxdigit(
                  static_cast<unsigned char>(c)); });
    if (!ok) {
      error(sub(path, key), "not an even-length hex string (value not shown)");
    } else if (h.size() / 2 != want) {
      error(sub(path, key), std::to_string(h.size() / 2) + " bytes, " + std::string(alg) +
                                " needs " + std::to_string(want) + " (value not shown)");
    } else {
      out = crypto::SecureBytes(want);
      for (std::size_t i = 0; i < want; ++i) {
        unsigned v = 0;
        std::from_chars(h.data() + 2 * i, h.data() + 2 * i + 2, v, 16);
        out[i] = static_cast<std::uint8_t>(v);
      }
    }
    std::fill(s->begin(), s->end(), '\0');
    return out;
  }

  // A list node under `key` (absent -> empty); each element must be a map.
  std::optional<YAML::Node> list(const YAML::Node& p, std::string_view key,
                                 const std::string& path, bool required) {
    const YAML::Node n = p[std::string(key)];
    if (!n || n.IsNull()) {
      if (required) error(sub(path, key), "required (a list)");
      return std::nullopt;
    }
    if (!n.IsSequence()) {
      error(sub(path, key), "must be a list");
      return std::nullopt;
    }
    return n;
  }

  Lifetime lifetime(const YAML::Node& p, const std::string& path) {
    Lifetime lt;
    const YAML::Node n = p["lifetime"];
    if (!n || n.IsNull()) return lt;
    std::string lp = sub(path, "lifetime");
    if (!check_map(n, lp, {"units", "value"})) return lt;
    lt.units = fixed(n, "units", lp, kLifetimeUnits);
    lt.value = uint<std::uint32_t>(n, "value", lp, kLifetimeMin, kLifetimeMax, kLifetimeDefault);
    return lt;
  }
};

constexpr EnumName<AuthAlgorithm> kAuthNames[] = {
    {"sha1", AuthAlgorithm::kSha1}, {"sha256", AuthAlgorithm::kSha256}};
constexpr EnumName<EncryptionAlgorithm> kEncNames[] = {
    {"aes-128", EncryptionAlgorithm::kAes128},
    {"aes-192", EncryptionAlgorithm::kAes192},
    {"aes-256", EncryptionAlgorithm::kAes256}};
constexpr EnumName<PfsGroup> kPfsNames[] = {
    {"group2", PfsGroup::kGroup2}, {"group5", PfsGroup::kGroup5}, {"group14", PfsGroup::kGroup14}};
constexpr EnumName<DpdAction> kDpdNames[] = {
    {"hold", DpdAction::kHold},
    {"clear", DpdAction::kClear},
    {"restart", DpdAction::kRestart},
    {"restart-by-peer", DpdAction::kRestartByPeer},
    {"disabled", DpdAction::kDisabled}};
constexpr EnumName<Initiator> kInitiatorNames[] = {
    {"bi-directional", Initiator::kBiDirectional}, {"response-only", Initiator::kResponseOnly}};
constexpr EnumName<UnmatchedTraffic> kUnmatchedNames[] = {
    {"drop", UnmatchedTraffic::kDrop}, {"forward", UnmatchedTraffic::kForward}};

// The enum tables spell the same values, in the same order, as the rules the REST API's model
// checks (app/model/rules.hpp): one set of allowed values for file and API.
template <class E, std::size_t N, std::size_t M>
constexpr bool same_names(const EnumName<E> (&a)[N], const std::string_view (&b)[M]) {
  if (N != M) return false;
  for (std::size_t i = 0; i < N; ++i)
    if (a[i].name != b[i]) return false;
  return true;
}
static_assert(same_names(kAuthNames, kAuthAlgorithms));
static_assert(same_names(kEncNames, kEncryptionAlgorithms));
static_assert(same_names(kPfsNames, kPfsGroups));
static_assert(same_names(kDpdNames, kDpdActions));
static_assert(same_names(kInitiatorNames, kInitiators));

// The YAML name of enum value `v` in `names`.
template <class E, std::size_t N>
std::string_view name_of(const EnumName<E> (&names)[N], E v) noexcept {
  for (const auto& n : names)
    if (n.value == v) return n.name;
  return "?";
}

}  // namespace ipsecgw::app::config_parser
