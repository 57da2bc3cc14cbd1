// YAML -> app::Config with Neutron VPNaaS names, validated field by field. Every error names the
// field path, the offending value (never for secrets) and what is allowed; parsing goes on after
// an error so one run reports all problems.
#include "app/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace ipsecgw::app {

std::string_view to_string(AuthAlgorithm a) noexcept {
  return a == AuthAlgorithm::kSha1 ? "sha1" : "sha256";
}
std::string_view to_string(EncryptionAlgorithm a) noexcept {
  switch (a) {
    case EncryptionAlgorithm::kAes128: return "aes-128";
    case EncryptionAlgorithm::kAes192: return "aes-192";
    case EncryptionAlgorithm::kAes256: return "aes-256";
  }
  return "?";
}
std::string_view to_string(PfsGroup g) noexcept {
  switch (g) {
    case PfsGroup::kGroup2: return "group2";
    case PfsGroup::kGroup5: return "group5";
    case PfsGroup::kGroup14: return "group14";
  }
  return "?";
}
std::string_view to_string(DpdAction a) noexcept {
  switch (a) {
    case DpdAction::kHold: return "hold";
    case DpdAction::kClear: return "clear";
    case DpdAction::kRestart: return "restart";
    case DpdAction::kRestartByPeer: return "restart-by-peer";
    case DpdAction::kDisabled: return "disabled";
  }
  return "?";
}
std::string_view to_string(Initiator i) noexcept {
  return i == Initiator::kBiDirectional ? "bi-directional" : "response-only";
}

crypto::CipherAlg to_cipher(EncryptionAlgorithm a) noexcept {
  switch (a) {
    case EncryptionAlgorithm::kAes128: return crypto::CipherAlg::kAes128Cbc;
    case EncryptionAlgorithm::kAes192: return crypto::CipherAlg::kAes192Cbc;
    case EncryptionAlgorithm::kAes256: return crypto::CipherAlg::kAes256Cbc;
  }
  return crypto::CipherAlg::kAes128Cbc;
}
crypto::IntegAlg to_integ(AuthAlgorithm a) noexcept {
  return a == AuthAlgorithm::kSha1 ? crypto::IntegAlg::kHmacSha1_96
                                   : crypto::IntegAlg::kHmacSha256_128;
}

namespace {

using Keys = std::initializer_list<std::string_view>;

template <class E>
struct EnumName {
  std::string_view name;
  E value;
};

std::string join(Keys keys) {
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
std::size_t edit_distance(std::string_view a, std::string_view b) {
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

std::string quote(std::string_view s) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  out += "'";
  return out;
}

std::string idx(std::string_view path, std::size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}
std::string sub(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc{} && p == s.data() + s.size();
}

std::optional<dp::MacAddr> parse_mac(std::string_view s) {
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

bool overlaps(const dp::Ipv4Prefix& a, const dp::Ipv4Prefix& b) {
  return a.contains(b.addr) || b.contains(a.addr);
}

class Parser {
 public:
  std::vector<std::string> errors;

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
      error(sub(path, key), "must not be empty");
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

void parse_port(Parser& ps, const YAML::Node& ports, std::string_view which,
                const std::string& path, PortSettings& out) {
  const YAML::Node n = ports[std::string(which)];
  std::string pp = sub(path, which);
  if (!n) {
    ps.error(pp, "required (port, address, gateway, mtu)");
    return;
  }
  if (!ps.check_map(n, pp, {"port", "address", "gateway", "mtu"})) return;
  out.port = ps.uint<std::uint16_t>(n, "port", pp, 0, 1023, 0, /*required=*/true);
  if (auto s = ps.scalar(n, "address", pp, true)) {
    auto slash = s->find('/');
    auto addr = slash == std::string::npos ? std::nullopt : dp::parse_ipv4(s->substr(0, slash));
    unsigned len = 0;
    std::uint64_t len64 = 0;
    bool len_ok = slash != std::string::npos && parse_u64(s->substr(slash + 1), len64) &&
                  len64 >= 1 && len64 <= 30;
    len = static_cast<unsigned>(len64);
    if (!addr || !len_ok) {
      ps.error(sub(pp, "address"),
               quote(*s) + " is not an address with prefix length 1..30 (e.g. 192.0.2.1/24)");
    } else {
      dp::Ipv4Prefix pfx{0, static_cast<std::uint8_t>(len)};
      pfx.addr = *addr & pfx.mask();
      if (*addr == pfx.addr || *addr == (pfx.addr | ~pfx.mask())) {
        ps.error(sub(pp, "address"),
                 quote(*s) + " is the network or broadcast address of its subnet");
      }
      out.address = *addr;
      out.subnet = pfx;
    }
  }
  if (auto gw = ps.ipv4(n, "gateway", pp, false)) {
    if (out.address != 0 && !out.subnet.contains(*gw)) {
      ps.error(sub(pp, "gateway"), dp::format_ipv4(*gw) + " is not inside the port's subnet " +
                                       dp::format_prefix(out.subnet));
    } else if (*gw == out.address) {
      ps.error(sub(pp, "gateway"), dp::format_ipv4(*gw) + " is the port's own address");
    }
    out.gateway = *gw;
  }
  out.mtu = ps.uint<std::uint16_t>(n, "mtu", pp, kPortMtuMin, kPortMtuMax, 1500);
}

void parse_vpnservice(Parser& ps, const YAML::Node& root, VpnService& vs) {
  const std::string path = "vpnservice";
  const YAML::Node n = root["vpnservice"];
  if (!n) {
    ps.error(path, "required");
    return;
  }
  if (!ps.check_map(n, path,
                    {"name", "description", "admin_state_up", "external_v4_ip", "subnet",
                     "ports", "neighbors", "routes", "unmatched_traffic"}))
    return;
  vs.name = ps.string(n, "name", path, false).value_or("vpnservice");
  vs.admin_state_up = ps.boolean(n, "admin_state_up", path, true);

  const YAML::Node ports = n["ports"];
  const std::string pp = sub(path, "ports");
  if (!ports) {
    ps.error(pp, "required (unprotected, protected)");
  } else if (ps.check_map(ports, pp, {"unprotected", "protected"})) {
    parse_port(ps, ports, "unprotected", pp, vs.unprotected);
    parse_port(ps, ports, "protected", pp, vs.protected_port);
    if (ports["unprotected"] && ports["protected"]) {
      if (vs.unprotected.port == vs.protected_port.port)
        ps.error(sub(pp, "protected.port"), std::to_string(vs.protected_port.port) +
                                                " is also the unprotected port");
      if (vs.unprotected.address != 0 && vs.protected_port.address != 0 &&
          overlaps(vs.unprotected.subnet, vs.protected_port.subnet))
        ps.error(sub(pp, "protected.address"),
                 dp::format_prefix(vs.protected_port.subnet) +
                     " overlaps the unprotected subnet " + dp::format_prefix(vs.unprotected.subnet));
    }
  }

  if (auto ip = ps.ipv4(n, "external_v4_ip", path, false)) {
    if (vs.unprotected.address != 0 && *ip != vs.unprotected.address)
      ps.error(sub(path, "external_v4_ip"),
               dp::format_ipv4(*ip) + " must be the unprotected port's address (" +
                   dp::format_ipv4(vs.unprotected.address) + ")");
    vs.external_v4_ip = *ip;
  } else {
    vs.external_v4_ip = vs.unprotected.address;
  }
  if (auto s = ps.prefix(n, "subnet", path, false))
    vs.subnet = *s;
  else
    vs.subnet = vs.protected_port.subnet;

  if (auto l = ps.list(n, "neighbors", path, false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      std::string ip = idx(sub(path, "neighbors"), i);
      const YAML::Node e = (*l)[i];
      if (!ps.check_map(e, ip, {"ip", "mac"})) continue;
      Neighbor nb;
      if (auto a = ps.ipv4(e, "ip", ip, true)) {
        nb.ip = *a;
        bool on_link = (vs.unprotected.address && vs.unprotected.subnet.contains(*a)) ||
                       (vs.protected_port.address && vs.protected_port.subnet.contains(*a));
        if (!on_link)
          ps.error(sub(ip, "ip"), dp::format_ipv4(*a) + " is on neither port's subnet");
      }
      if (auto m = ps.scalar(e, "mac", ip, true)) {
        if (auto mac = parse_mac(*m))
          nb.mac = *mac;
        else
          ps.error(sub(ip, "mac"), quote(*m) + " is not a MAC address (e.g. 02:00:00:00:00:01)");
      }
      vs.neighbors.push_back(nb);
    }
  }
  if (auto l = ps.list(n, "routes", path, false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      std::string rp = idx(sub(path, "routes"), i);
      const YAML::Node e = (*l)[i];
      if (!ps.check_map(e, rp, {"destination", "nexthop"})) continue;
      RouteSpec r;
      if (auto d = ps.prefix(e, "destination", rp, true)) r.destination = *d;
      if (auto h = ps.ipv4(e, "nexthop", rp, true)) {
        r.nexthop = *h;
        if (vs.protected_port.address && !vs.protected_port.subnet.contains(*h))
          ps.error(sub(rp, "nexthop"), dp::format_ipv4(*h) +
                                           " is not on the protected subnet " +
                                           dp::format_prefix(vs.protected_port.subnet));
      }
      vs.routes.push_back(r);
    }
  }
  vs.unmatched_traffic = ps.enumeration(n, "unmatched_traffic", path, kUnmatchedNames,
                                        UnmatchedTraffic::kDrop);
}

template <class T>
void check_unique_names(Parser& ps, const std::vector<T>& v, const std::string& path) {
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i].name.empty()) continue;
    auto [it, fresh] = seen.emplace(v[i].name, i);
    if (!fresh)
      ps.error(sub(idx(path, i), "name"),
               quote(v[i].name) + " already used by " + idx(path, it->second));
  }
}

template <class T>
std::optional<std::size_t> find_name(const std::vector<T>& v, const std::string& name) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i].name == name) return i;
  return std::nullopt;
}

template <class T>
std::string names_of(const std::vector<T>& v) {
  std::string s;
  for (auto& e : v) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s.empty() ? std::string("none defined") : s;
}

void parse_connection(Parser& ps, const YAML::Node& n, const std::string& path, Config& cfg,
                      SiteConnection& c) {
  if (!ps.check_map(n, path,
                    {"name", "description", "admin_state_up", "peer_address", "peer_id",
                     "peer_cidrs", "peer_ep_group", "local_ep_group", "psk", "mtu", "initiator",
                     "dpd", "ikepolicy", "ipsecpolicy", "manual_keys"}))
    return;
  c.name = ps.string(n, "name", path, true).value_or("");
  c.admin_state_up = ps.boolean(n, "admin_state_up", path, true);
  if (auto a = ps.ipv4(n, "peer_address", path, true)) {
    c.peer_address = *a;
    if (*a == cfg.vpnservice.unprotected.address && *a != 0)
      ps.error(sub(path, "peer_address"), dp::format_ipv4(*a) + " is our own address");
  }
  c.peer_id = ps.string(n, "peer_id", path, false).value_or(dp::format_ipv4(c.peer_address));

  // Peer side: peer_cidrs (legacy Neutron) or peer_ep_group, exactly one of them.
  const bool has_cidrs = n["peer_cidrs"] && !n["peer_cidrs"].IsNull();
  const bool has_peer_group = n["peer_ep_group"] && !n["peer_ep_group"].IsNull();
  if (has_cidrs && has_peer_group) {
    ps.error(sub(path, "peer_ep_group"), "give either peer_cidrs or peer_ep_group, not both");
  } else if (!has_cidrs && !has_peer_group) {
    ps.error(sub(path, "peer_cidrs"), "required (or peer_ep_group)");
  } else if (has_cidrs) {
    c.peer_cidrs = ps.prefix_list(n, "peer_cidrs", path);
  } else if (auto g = ps.string(n, "peer_ep_group", path, true)) {
    c.peer_ep_group = *g;
    if (auto i = find_name(cfg.endpoint_groups, *g))
      c.peer_cidrs = cfg.endpoint_groups[*i].endpoints;
    else
      ps.error(sub(path, "peer_ep_group"), quote(*g) + " is not an endpoint group (defined: " +
                                               names_of(cfg.endpoint_groups) + ")");
  }
  if (auto g = ps.string(n, "local_ep_group", path, false)) {
    c.local_ep_group = *g;
    if (auto i = find_name(cfg.endpoint_groups, *g))
      c.local_cidrs = cfg.endpoint_groups[*i].endpoints;
    else
      ps.error(sub(path, "local_ep_group"), quote(*g) + " is not an endpoint group (defined: " +
                                                names_of(cfg.endpoint_groups) + ")");
  } else if (cfg.vpnservice.subnet.len != 0 || cfg.vpnservice.subnet.addr != 0) {
    c.local_cidrs = {cfg.vpnservice.subnet};
  }
  // One policy (local subnet, peer subnet) per connection: the data plane's SA selectors.
  if (c.peer_cidrs.size() > 1)
    ps.error(sub(path, has_cidrs ? "peer_cidrs" : "peer_ep_group"),
             std::to_string(c.peer_cidrs.size()) +
                 " peer CIDRs, only one per connection is supported (make one connection each)");
  if (c.local_cidrs.size() > 1)
    ps.error(sub(path, "local_ep_group"),
             std::to_string(c.local_cidrs.size()) +
                 " local CIDRs, only one per connection is supported (make one connection each)");
  for (auto& l : c.local_cidrs)
    for (auto& p : c.peer_cidrs)
      if (overlaps(l, p))
        ps.error(sub(path, has_cidrs ? "peer_cidrs" : "peer_ep_group"),
                 dp::format_prefix(p) + " overlaps the local subnet " + dp::format_prefix(l));

  c.mtu = ps.uint<std::uint16_t>(n, "mtu", path, kConnMtuMin, kConnMtuMax, kConnMtuDefault);
  c.initiator = ps.enumeration(n, "initiator", path, kInitiatorNames, Initiator::kBiDirectional);

  if (const YAML::Node d = n["dpd"]; d && !d.IsNull()) {
    std::string dp = sub(path, "dpd");
    if (ps.check_map(d, dp, {"action", "interval", "timeout"})) {
      c.dpd.action = ps.enumeration(d, "action", dp, kDpdNames, DpdAction::kHold);
      c.dpd.interval =
          ps.uint<std::uint32_t>(d, "interval", dp, 1, kDpdMax, kDpdIntervalDefault);
      bool timeout_given = d["timeout"] && !d["timeout"].IsNull();
      c.dpd.timeout = ps.uint<std::uint32_t>(d, "timeout", dp, 1, kDpdMax, kDpdTimeoutDefault);
      if (c.dpd.timeout <= c.dpd.interval)
        ps.error(sub(dp, "timeout"),
                 std::to_string(c.dpd.timeout) + (timeout_given ? "" : " (default)") +
                     " must be greater than dpd.interval (" + std::to_string(c.dpd.interval) +
                     ")");
    }
  }

  const YAML::Node mk = n["manual_keys"];
  const bool manual = mk && !mk.IsNull();
  c.psk = ps.secret(n, "psk", path, /*required=*/!manual);

  if (auto s = ps.string(n, "ikepolicy", path, !manual)) {
    c.ikepolicy = *s;
    if (auto i = find_name(cfg.ikepolicies, *s))
      c.ikepolicy_index = *i;
    else
      ps.error(sub(path, "ikepolicy"), quote(*s) + " is not an ikepolicy (defined: " +
                                           names_of(cfg.ikepolicies) + ")");
  }
  bool have_ipsecpolicy = false;
  if (auto s = ps.string(n, "ipsecpolicy", path, true)) {
    c.ipsecpolicy = *s;
    if (auto i = find_name(cfg.ipsecpolicies, *s)) {
      c.ipsecpolicy_index = *i;
      have_ipsecpolicy = true;
    } else {
      ps.error(sub(path, "ipsecpolicy"), quote(*s) + " is not an ipsecpolicy (defined: " +
                                             names_of(cfg.ipsecpolicies) + ")");
    }
  }

  if (manual) {
    std::string mp = sub(path, "manual_keys");
    if (!ps.check_map(mk, mp, {"inbound", "outbound", "udp_encap", "replay_window"})) return;
    ManualKeys keys;
    // Key lengths follow the ipsecpolicy's algorithms (RFC 3602 AES key sizes; HMAC keys of
    // the hash output length, RFC 2404 / RFC 4868 §2.1.1).
    auto enc = have_ipsecpolicy ? cfg.ipsecpolicies[c.ipsecpolicy_index].encryption_algorithm
                                : EncryptionAlgorithm::kAes128;
    auto auth = have_ipsecpolicy ? cfg.ipsecpolicies[c.ipsecpolicy_index].auth_algorithm
                                 : AuthAlgorithm::kSha1;
    auto one = [&](std::string_view dir, ManualSa& sa) {
      const YAML::Node s = mk[std::string(dir)];
      std::string sp = sub(mp, dir);
      if (!s) {
        ps.error(sp, "required (spi, encryption_key, auth_key)");
        return;
      }
      if (!ps.check_map(s, sp, {"spi", "encryption_key", "auth_key"})) return;
      sa.spi = ps.uint<std::uint32_t>(s, "spi", sp, kMinSpi, 0xffffffffu, 0, true);
      if (!have_ipsecpolicy) return;  // key lengths unknown; the policy error is reported
      sa.encryption_key =
          ps.hex_key(s, "encryption_key", sp, crypto::cipher_key_len(to_cipher(enc)),
                     to_string(enc));
      sa.auth_key =
          ps.hex_key(s, "auth_key", sp, crypto::integ_key_len(to_integ(auth)), to_string(auth));
    };
    one("inbound", keys.inbound);
    one("outbound", keys.outbound);
    keys.udp_encap = ps.boolean(mk, "udp_encap", mp, false);
    keys.replay_window = ps.uint<std::uint32_t>(mk, "replay_window", mp, 0, kReplayWindowMax,
                                                kReplayWindowDefault);
    c.manual_keys = std::move(keys);
  }
}

Config parse_root(Parser& ps, const YAML::Node& root) {
  Config cfg;
  if (!ps.check_map(root, "",
                    {"vpnservice", "ikepolicies", "ipsecpolicies", "endpoint_groups",
                     "ipsec_site_connections", "dataplane"})) {
    return cfg;
  }
  parse_vpnservice(ps, root, cfg.vpnservice);
  if (const YAML::Node d = root["dataplane"]; d && !d.IsNull()) {
    auto& dp = cfg.dataplane;
    if (ps.check_map(d, "dataplane",
                     {"sa_capacity", "mbufs", "rx_desc", "tx_desc", "idle_sleep_us",
                      "telemetry"})) {
      dp.sa_capacity = ps.uint<unsigned>(d, "sa_capacity", "dataplane", 16, 1u << 20, 4096);
      dp.mbufs = ps.uint<unsigned>(d, "mbufs", "dataplane", 0, 1u << 24, 0);
      dp.rx_desc = ps.uint<unsigned>(d, "rx_desc", "dataplane", 64, 16384, 1024);
      dp.tx_desc = ps.uint<unsigned>(d, "tx_desc", "dataplane", 64, 16384, 1024);
      dp.idle_sleep_us = ps.uint<unsigned>(d, "idle_sleep_us", "dataplane", 0, 100000, 0);
      dp.telemetry = ps.boolean(d, "telemetry", "dataplane", true);
    }
  }

  if (auto l = ps.list(root, "ikepolicies", "", false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      std::string p = idx("ikepolicies", i);
      const YAML::Node n = (*l)[i];
      IkePolicy pol;
      if (ps.check_map(n, p,
                       {"name", "description", "auth_algorithm", "encryption_algorithm",
                        "ike_version", "phase1_negotiation_mode", "pfs", "lifetime"})) {
        pol.name = ps.string(n, "name", p, true).value_or("");
        pol.auth_algorithm = ps.enumeration(n, "auth_algorithm", p, kAuthNames,
                                            AuthAlgorithm::kSha1);
        pol.encryption_algorithm = ps.enumeration(n, "encryption_algorithm", p, kEncNames,
                                                  EncryptionAlgorithm::kAes128);
        pol.ike_version = ps.fixed(n, "ike_version", p, kIkeVersion);
        pol.phase1_negotiation_mode = ps.fixed(n, "phase1_negotiation_mode", p, kPhase1Mode);
        pol.pfs = ps.enumeration(n, "pfs", p, kPfsNames, PfsGroup::kGroup5);
        pol.lifetime = ps.lifetime(n, p);
      }
      cfg.ikepolicies.push_back(std::move(pol));
    }
    check_unique_names(ps, cfg.ikepolicies, "ikepolicies");
  }
  if (auto l = ps.list(root, "ipsecpolicies", "", false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      std::string p = idx("ipsecpolicies", i);
      const YAML::Node n = (*l)[i];
      IpsecPolicy pol;
      if (ps.check_map(n, p,
                       {"name", "description", "transform_protocol", "encapsulation_mode",
                        "auth_algorithm", "encryption_algorithm", "pfs", "lifetime"})) {
        pol.name = ps.string(n, "name", p, true).value_or("");
        pol.transform_protocol =
            ps.fixed(n, "transform_protocol", p, kTransformProtocol);
        pol.encapsulation_mode =
            ps.fixed(n, "encapsulation_mode", p, kEncapsulationMode);
        pol.auth_algorithm = ps.enumeration(n, "auth_algorithm", p, kAuthNames,
                                            AuthAlgorithm::kSha1);
        pol.encryption_algorithm = ps.enumeration(n, "encryption_algorithm", p, kEncNames,
                                                  EncryptionAlgorithm::kAes128);
        pol.pfs = ps.enumeration(n, "pfs", p, kPfsNames, PfsGroup::kGroup5);
        pol.lifetime = ps.lifetime(n, p);
      }
      cfg.ipsecpolicies.push_back(std::move(pol));
    }
    check_unique_names(ps, cfg.ipsecpolicies, "ipsecpolicies");
  }
  if (auto l = ps.list(root, "endpoint_groups", "", false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      std::string p = idx("endpoint_groups", i);
      const YAML::Node n = (*l)[i];
      EndpointGroup g;
      if (ps.check_map(n, p, {"name", "description", "type", "endpoints"})) {
        g.name = ps.string(n, "name", p, true).value_or("");
        g.type = ps.fixed(n, "type", p, {"cidr", "subnet ids do not exist outside Neutron"});
        if (!n["endpoints"])
          ps.error(sub(p, "endpoints"), "required (a list of CIDRs)");
        else
          g.endpoints = ps.prefix_list(n, "endpoints", p);
      }
      cfg.endpoint_groups.push_back(std::move(g));
    }
    check_unique_names(ps, cfg.endpoint_groups, "endpoint_groups");
  }
  if (auto l = ps.list(root, "ipsec_site_connections", "", false)) {
    for (std::size_t i = 0; i < l->size(); ++i) {
      SiteConnection c;
      parse_connection(ps, (*l)[i], idx("ipsec_site_connections", i), cfg, c);
      cfg.ipsec_site_connections.push_back(std::move(c));
    }
    auto& conns = cfg.ipsec_site_connections;
    check_unique_names(ps, conns, "ipsec_site_connections");
    // Cross-connection checks: distinct selectors (the outbound policy key) and SPIs.
    for (std::size_t i = 0; i < conns.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        const auto &a = conns[i], &b = conns[j];
        if (!a.local_cidrs.empty() && !a.peer_cidrs.empty() && a.local_cidrs == b.local_cidrs &&
            a.peer_cidrs == b.peer_cidrs)
          ps.error(idx("ipsec_site_connections", i),
                   "same local and peer subnets as " + idx("ipsec_site_connections", j));
        if (a.manual_keys && b.manual_keys) {
          if (a.manual_keys->inbound.spi >= kMinSpi &&
              a.manual_keys->inbound.spi == b.manual_keys->inbound.spi)
            ps.error(sub(idx("ipsec_site_connections", i), "manual_keys.inbound.spi"),
                     std::to_string(a.manual_keys->inbound.spi) + " already used by " +
                         idx("ipsec_site_connections", j));
          if (a.peer_address == b.peer_address && a.manual_keys->outbound.spi >= kMinSpi &&
              a.manual_keys->outbound.spi == b.manual_keys->outbound.spi)
            ps.error(sub(idx("ipsec_site_connections", i), "manual_keys.outbound.spi"),
                     std::to_string(a.manual_keys->outbound.spi) +
                         " already used towards the same peer by " +
                         idx("ipsec_site_connections", j));
        }
      }
      if (conns[i].local_cidrs.empty() && conns[i].local_ep_group.empty())
        ps.error(sub(idx("ipsec_site_connections", i), "local_ep_group"),
                 "required when vpnservice.subnet is not set");
    }
  }
  return cfg;
}

}  // namespace

Result<Config> parse_config(std::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports position and problem, not the offending text.
    return make_error("YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                      ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (!root || root.IsNull()) return make_error("empty configuration (vpnservice is required)");
  Parser ps;
  Config cfg;
  try {
    cfg = parse_root(ps, root);
  } catch (const YAML::Exception& e) {
    ps.error("(config)", std::string("unexpected YAML structure: ") + e.msg);
  }
  if (!ps.errors.empty()) {
    std::string msg;
    for (auto& e : ps.errors) {
      if (!msg.empty()) msg += "\n";
      msg += e;
    }
    return make_error(std::move(msg));
  }
  return cfg;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("cannot open config file '" + path + "': " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  auto r = parse_config(ss.str());
  if (!r.ok()) return make_error("invalid configuration in " + path + ":\n" + r.error());
  return r;
}

dp::GatewayConfig to_gateway_config(const Config& cfg) {
  const auto& vs = cfg.vpnservice;
  dp::GatewayConfig g;
  g.unprotected = {vs.unprotected.port, vs.unprotected.subnet, vs.unprotected.address,
                   vs.unprotected.gateway, vs.unprotected.mtu};
  g.protected_port = {vs.protected_port.port, vs.protected_port.subnet,
                      vs.protected_port.address, vs.protected_port.gateway,
                      vs.protected_port.mtu};
  for (auto& r : vs.routes) g.protected_routes.push_back({r.destination, r.nexthop});
  for (auto& n : vs.neighbors) g.neighbors.push_back({n.ip, n.mac});
  g.unmatched = vs.unmatched_traffic == UnmatchedTraffic::kForward ? dp::UnmatchedPolicy::kForward
                                                                   : dp::UnmatchedPolicy::kDrop;
  g.sa_capacity = cfg.dataplane.sa_capacity;
  g.mbufs = cfg.dataplane.mbufs;
  g.rx_desc = cfg.dataplane.rx_desc;
  g.tx_desc = cfg.dataplane.tx_desc;
  g.idle_sleep_us = cfg.dataplane.idle_sleep_us;
  g.telemetry = cfg.dataplane.telemetry;
  return g;
}

std::vector<dp::SaSpec> manual_sa_specs(const Config& cfg) {
  std::vector<dp::SaSpec> out;
  if (!cfg.vpnservice.admin_state_up) return out;
  for (std::size_t i = 0; i < cfg.ipsec_site_connections.size(); ++i) {
    const auto& c = cfg.ipsec_site_connections[i];
    if (!c.admin_state_up || !c.manual_keys || c.local_cidrs.empty() || c.peer_cidrs.empty())
      continue;
    const auto& pol = cfg.ipsecpolicy_of(c);
    const auto& mk = *c.manual_keys;
    for (auto dir : {dp::Direction::kInbound, dp::Direction::kOutbound}) {
      const ManualSa& m = dir == dp::Direction::kInbound ? mk.inbound : mk.outbound;
      dp::SaSpec s;
      s.dir = dir;
      s.spi = m.spi;
      s.conn_id = static_cast<std::uint32_t>(i + 1);
      s.cipher = to_cipher(pol.encryption_algorithm);
      s.integ = to_integ(pol.auth_algorithm);
      s.enc_key = m.encryption_key.clone();
      s.auth_key = m.auth_key.clone();
      s.local_addr = cfg.vpnservice.external_v4_ip;
      s.peer_addr = c.peer_address;
      s.udp_encap = mk.udp_encap;
      s.local_subnet = c.local_cidrs.front();
      s.peer_subnet = c.peer_cidrs.front();
      s.replay_window = mk.replay_window;
      // The outer packet must fit both the connection's MTU and the public link's.
      s.mtu = std::min<std::uint16_t>(c.mtu, cfg.vpnservice.unprotected.mtu);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string describe(const Config& cfg) {
  std::ostringstream o;
  const auto& vs = cfg.vpnservice;
  auto port = [&](const char* name, const PortSettings& p) {
    o << "  " << name << ": port " << p.port << ", " << dp::format_ipv4(p.address) << "/"
      << unsigned(p.subnet.len);
    if (p.gateway) o << ", gateway " << dp::format_ipv4(p.gateway);
    o << ", mtu " << p.mtu << "\n";
  };
  o << "vpnservice " << vs.name << (vs.admin_state_up ? "" : " (admin down)")
    << ": external_v4_ip " << dp::format_ipv4(vs.external_v4_ip) << ", subnet "
    << dp::format_prefix(vs.subnet) << ", unmatched traffic "
    << (vs.unmatched_traffic == UnmatchedTraffic::kDrop ? "drop" : "forward") << "\n";
  port("unprotected", vs.unprotected);
  port("protected", vs.protected_port);
  for (auto& r : vs.routes)
    o << "  route " << dp::format_prefix(r.destination) << " via " << dp::format_ipv4(r.nexthop)
      << "\n";
  for (auto& n : vs.neighbors) {
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", n.mac[0], n.mac[1], n.mac[2],
                  n.mac[3], n.mac[4], n.mac[5]);
    o << "  neighbor " << dp::format_ipv4(n.ip) << " at " << mac << "\n";
  }
  for (auto& c : cfg.ipsec_site_connections) {
    const auto& esp = cfg.ipsecpolicy_of(c);
    o << "connection " << c.name << (c.admin_state_up ? "" : " (admin down)") << ": peer "
      << dp::format_ipv4(c.peer_address) << " (id " << c.peer_id << "), ";
    for (auto& l : c.local_cidrs) o << dp::format_prefix(l) << " ";
    o << "<=> ";
    for (auto& p : c.peer_cidrs) o << dp::format_prefix(p) << " ";
    o << "mtu " << c.mtu << "\n";
    o << "  esp: " << to_string(esp.encryption_algorithm) << "/" << to_string(esp.auth_algorithm)
      << " (ipsecpolicy " << esp.name << ")";
    if (c.manual_keys) {
      o << ", manual keys (value not shown), spi in 0x" << std::hex << c.manual_keys->inbound.spi
        << " out 0x" << c.manual_keys->outbound.spi << std::dec
        << (c.manual_keys->udp_encap ? ", ESP in UDP 4500" : ", ESP (IP proto 50)")
        << ", replay window " << c.manual_keys->replay_window << "\n";
    } else {
      const auto& ike = cfg.ikepolicy_of(c);
      o << ", pfs " << to_string(esp.pfs) << ", lifetime " << esp.lifetime.value << " s\n";
      o << "  ike: v1 main mode " << to_string(ike.encryption_algorithm) << "/"
        << to_string(ike.auth_algorithm) << "/" << to_string(ike.pfs) << ", lifetime "
        << ike.lifetime.value << " s (ikepolicy " << ike.name << "), psk (set), initiator "
        << to_string(c.initiator) << ", dpd " << to_string(c.dpd.action) << " "
        << c.dpd.interval << "/" << c.dpd.timeout << " s\n";
    }
  }
  return o.str();
}

}  // namespace ipsecgw::app
