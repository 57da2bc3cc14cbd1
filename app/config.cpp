// YAML -> app::Config with Neutron VPNaaS names, validated field by field. Every error names the
// field path, the offending value (never for secrets) and what is allowed; parsing goes on after
// an error so one run reports all problems.
#include "app/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "app/config_parser.hpp"
#include "app/scan_steps.hpp"
#include "app/model/yaml_wipe.hpp"

namespace ipsecgw::app {

using namespace config_parser;

std::string_view to_string(AuthAlgorithm a) noexcept { return name_of(kAuthNames, a); }
std::string_view to_string(EncryptionAlgorithm a) noexcept { return name_of(kEncNames, a); }
std::string_view to_string(PfsGroup g) noexcept { return name_of(kPfsNames, g); }
std::string_view to_string(DpdAction a) noexcept { return name_of(kDpdNames, a); }
std::string_view to_string(Initiator i) noexcept { return name_of(kInitiatorNames, i); }

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

using model::load_yaml_and_wipe;
using model::wipe_scalars;
using model::wipe_text;

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

// Name -> index of the first item with that name, for the lists connections refer to (built
// once they are read): a connection's references cost a hash lookup, not a scan of a list that
// may hold an endpoint group per connection.
class NameIndex {
 public:
  template <class T>
  explicit NameIndex(const std::vector<T>& v) {
    map_.reserve(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) map_.emplace(v[i].name, i);
  }
  std::optional<std::size_t> find(const std::string& name) const {
    count_scan_steps();
    const auto it = map_.find(name);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::unordered_map<std::string, std::size_t> map_;
};

struct ConfigNames {
  NameIndex endpoint_groups, ikepolicies, ipsecpolicies;
  explicit ConfigNames(const Config& cfg)
      : endpoint_groups(cfg.endpoint_groups),
        ikepolicies(cfg.ikepolicies),
        ipsecpolicies(cfg.ipsecpolicies) {}
};

template <class T>
std::string names_of(const std::vector<T>& v) {
  std::string s;
  for (auto& e : v) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s.empty() ? std::string("none defined") : s;
}

// The connection's selectors: the peer side (peer_cidrs or peer_ep_group) and the local side
// (local_ep_group, else vpnservice.subnet); one subnet each, not overlapping.
void parse_selectors(Parser& ps, const YAML::Node& n, const std::string& path, const Config& cfg,
                     const ConfigNames& names, SiteConnection& c) {
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
    if (auto i = names.endpoint_groups.find(*g))
      c.peer_cidrs = cfg.endpoint_groups[*i].endpoints;
    else
      ps.error(sub(path, "peer_ep_group"), quote(*g) + " is not an endpoint group (defined: " +
                                               names_of(cfg.endpoint_groups) + ")");
  }
  if (auto g = ps.string(n, "local_ep_group", path, false)) {
    c.local_ep_group = *g;
    if (auto i = names.endpoint_groups.find(*g))
      c.local_cidrs = cfg.endpoint_groups[*i].endpoints;
    else
      ps.error(sub(path, "local_ep_group"), quote(*g) + " is not an endpoint group (defined: " +
                                                names_of(cfg.endpoint_groups) + ")");
  } else if (cfg.vpnservice.subnet.len != 0 || cfg.vpnservice.subnet.addr != 0) {
    c.local_cidrs = {cfg.vpnservice.subnet};
  }
  // IKE: a CHILD SA per (local, peer) pair; manual_keys: one SA pair, so one of each (checked
  // with manual_keys).
  if (c.peer_cidrs.size() * c.local_cidrs.size() > kMaxSubnetPairs)
    ps.error(sub(path, has_cidrs ? "peer_cidrs" : "peer_ep_group"),
             std::to_string(c.local_cidrs.size()) + " local x " +
                 std::to_string(c.peer_cidrs.size()) + " peer CIDRs: at most " +
                 std::to_string(kMaxSubnetPairs) + " pairs (a CHILD SA each) per connection");
  for (auto& l : c.local_cidrs)
    for (auto& p : c.peer_cidrs)
      if (overlaps(l, p))
        ps.error(sub(path, has_cidrs ? "peer_cidrs" : "peer_ep_group"),
                 dp::format_prefix(p) + " overlaps the local subnet " + dp::format_prefix(l));
}

void parse_dpd(Parser& ps, const YAML::Node& n, const std::string& path, SiteConnection& c) {
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
}

// manual_keys: static SAs whose key lengths follow the connection's ipsecpolicy (when it
// exists; `have_ipsecpolicy` false: only the SPIs are read).
void parse_manual_keys(Parser& ps, const YAML::Node& mk, const std::string& path,
                       const Config& cfg, bool have_ipsecpolicy, SiteConnection& c) {
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

void parse_connection(Parser& ps, const YAML::Node& n, const std::string& path, Config& cfg,
                      const ConfigNames& names, SiteConnection& c) {
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

  parse_selectors(ps, n, path, cfg, names, c);
  c.mtu = ps.uint<std::uint16_t>(n, "mtu", path, kConnMtuMin, kConnMtuMax, kConnMtuDefault);
  c.initiator = ps.enumeration(n, "initiator", path, kInitiatorNames, Initiator::kBiDirectional);

  parse_dpd(ps, n, path, c);

  const YAML::Node mk = n["manual_keys"];
  const bool manual = mk && !mk.IsNull();
  if (manual && (c.peer_cidrs.size() > 1 || c.local_cidrs.size() > 1))
    ps.error(sub(path, "manual_keys"), std::to_string(c.local_cidrs.size()) + " local and " +
                                           std::to_string(c.peer_cidrs.size()) +
                                           " peer CIDRs: manual_keys take one of each");
  c.psk = ps.secret(n, "psk", path, /*required=*/!manual);
  if (!c.psk.empty() && c.psk.size() < kPskRecommendedMin)
    ps.warnings.push_back(sub(path, "psk") + ": " + msg_psk_short(c.psk.size()));

  if (auto s = ps.string(n, "ikepolicy", path, !manual)) {
    c.ikepolicy = *s;
    if (auto i = names.ikepolicies.find(*s))
      c.ikepolicy_index = *i;
    else
      ps.error(sub(path, "ikepolicy"), quote(*s) + " is not an ikepolicy (defined: " +
                                           names_of(cfg.ikepolicies) + ")");
  }
  bool have_ipsecpolicy = false;
  if (auto s = ps.string(n, "ipsecpolicy", path, true)) {
    c.ipsecpolicy = *s;
    if (auto i = names.ipsecpolicies.find(*s)) {
      c.ipsecpolicy_index = *i;
      have_ipsecpolicy = true;
    } else {
      ps.error(sub(path, "ipsecpolicy"), quote(*s) + " is not an ipsecpolicy (defined: " +
                                             names_of(cfg.ipsecpolicies) + ")");
    }
  }

  if (manual) parse_manual_keys(ps, mk, path, cfg, have_ipsecpolicy, c);
}

void parse_dataplane(Parser& ps, const YAML::Node& root, DataplaneSettings& dp) {
  const YAML::Node d = root["dataplane"];
  if (!d || d.IsNull()) return;
  if (!ps.check_map(d, "dataplane",
                    {"sa_capacity", "mbufs", "rx_desc", "tx_desc", "idle_sleep_us", "telemetry"}))
    return;
  dp.sa_capacity = ps.uint<unsigned>(d, "sa_capacity", "dataplane", 16, 1u << 20, 4096);
  dp.mbufs = ps.uint<unsigned>(d, "mbufs", "dataplane", 0, 1u << 24, 0);
  dp.rx_desc = ps.uint<unsigned>(d, "rx_desc", "dataplane", 64, 16384, 1024);
  dp.tx_desc = ps.uint<unsigned>(d, "tx_desc", "dataplane", 64, 16384, 1024);
  dp.idle_sleep_us = ps.uint<unsigned>(d, "idle_sleep_us", "dataplane", 0, 100000, 0);
  dp.telemetry = ps.boolean(d, "telemetry", "dataplane", true);
}

// A list section of named items (ikepolicies, ipsecpolicies, endpoint_groups): each item read
// by parse_one(ps, node, path, item), then the names checked for duplicates.
template <class T>
void parse_named_list(Parser& ps, const YAML::Node& root, const char* key, std::vector<T>& out,
                      void (*parse_one)(Parser&, const YAML::Node&, const std::string&, T&)) {
  auto l = ps.list(root, key, "", false);
  if (!l) return;
  for (std::size_t i = 0; i < l->size(); ++i) {
    T item;
    parse_one(ps, (*l)[i], idx(key, i), item);
    out.push_back(std::move(item));
  }
  check_unique_names(ps, out, key);
}

void parse_ikepolicy(Parser& ps, const YAML::Node& n, const std::string& p, IkePolicy& pol) {
  if (!ps.check_map(n, p,
                    {"name", "description", "auth_algorithm", "encryption_algorithm",
                     "ike_version", "phase1_negotiation_mode", "pfs", "lifetime"}))
    return;
  pol.name = ps.string(n, "name", p, true).value_or("");
  pol.auth_algorithm = ps.enumeration(n, "auth_algorithm", p, kAuthNames, AuthAlgorithm::kSha1);
  pol.encryption_algorithm =
      ps.enumeration(n, "encryption_algorithm", p, kEncNames, EncryptionAlgorithm::kAes128);
  pol.ike_version = ps.fixed(n, "ike_version", p, kIkeVersion);
  pol.phase1_negotiation_mode = ps.fixed(n, "phase1_negotiation_mode", p, kPhase1Mode);
  pol.pfs = ps.enumeration(n, "pfs", p, kPfsNames, PfsGroup::kGroup5);
  pol.lifetime = ps.lifetime(n, p);
}

void parse_ipsecpolicy(Parser& ps, const YAML::Node& n, const std::string& p, IpsecPolicy& pol) {
  if (!ps.check_map(n, p,
                    {"name", "description", "transform_protocol", "encapsulation_mode",
                     "auth_algorithm", "encryption_algorithm", "pfs", "lifetime"}))
    return;
  pol.name = ps.string(n, "name", p, true).value_or("");
  pol.transform_protocol = ps.fixed(n, "transform_protocol", p, kTransformProtocol);
  pol.encapsulation_mode =
      ps.fixed(n, "encapsulation_mode", p, kEncapsulationMode);
  pol.auth_algorithm = ps.enumeration(n, "auth_algorithm", p, kAuthNames, AuthAlgorithm::kSha1);
  pol.encryption_algorithm =
      ps.enumeration(n, "encryption_algorithm", p, kEncNames, EncryptionAlgorithm::kAes128);
  pol.pfs = ps.enumeration(n, "pfs", p, kPfsNames, PfsGroup::kGroup5);
  pol.lifetime = ps.lifetime(n, p);
}

void parse_endpoint_group(Parser& ps, const YAML::Node& n, const std::string& p,
                          EndpointGroup& g) {
  if (!ps.check_map(n, p, {"name", "description", "type", "endpoints"})) return;
  g.name = ps.string(n, "name", p, true).value_or("");
  g.type = ps.fixed(n, "type", p, {"cidr", "subnet ids do not exist outside Neutron"});
  if (!n["endpoints"])
    ps.error(sub(p, "endpoints"), "required (a list of CIDRs)");
  else
    g.endpoints = ps.prefix_list(n, "endpoints", p);
}

// Checks across connections: distinct names, selectors (the outbound policy key) and SPIs;
// IKE connections to one peer share its ISAKMP SA, so its PSK, ike policy and peer_id.
//
// Only the earlier connections that can clash with connection i are compared with it: those
// sharing one of its (local, peer) subnet pairs, its peer address or its inbound SPI, found in
// hash maps (a 64-bit key; a collision only adds a candidate, the comparison below decides).
// So N distinct connections cost O(N), not N^2 / 2 comparisons.
std::uint64_t prefix_key(const dp::Ipv4Prefix& p) { return std::uint64_t{p.addr} << 8 | p.len; }

void check_connections(Parser& ps, const Config& cfg) {
  const auto& conns = cfg.ipsec_site_connections;
  check_unique_names(ps, conns, "ipsec_site_connections");
  using Seen = std::unordered_map<std::uint64_t, std::vector<std::size_t>>;
  Seen by_pair, by_peer, by_spi_in;
  by_peer.reserve(conns.size());
  by_spi_in.reserve(conns.size());
  by_pair.reserve(conns.size());
  auto pair_key = [](const dp::Ipv4Prefix& l, const dp::Ipv4Prefix& p) {
    return prefix_key(l) * 0x9e3779b97f4a7c15ULL ^ prefix_key(p);
  };
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < conns.size(); ++i) {
    const auto& ci = conns[i];
    candidates.clear();
    auto take = [&](const Seen& m, std::uint64_t key) {
      if (auto it = m.find(key); it != m.end())
        candidates.insert(candidates.end(), it->second.begin(), it->second.end());
    };
    for (const auto& l : ci.local_cidrs)
      for (const auto& p : ci.peer_cidrs) take(by_pair, pair_key(l, p));
    take(by_peer, ci.peer_address);
    if (ci.manual_keys) take(by_spi_in, ci.manual_keys->inbound.spi);
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    for (std::size_t j : candidates) {
      count_scan_steps();
      const auto &a = conns[i], &b = conns[j];
      bool shared = false;  // a (local, peer) pair in both
      for (const auto& l : a.local_cidrs)
        for (const auto& p : a.peer_cidrs)
          shared |= std::find(b.local_cidrs.begin(), b.local_cidrs.end(), l) !=
                        b.local_cidrs.end() &&
                    std::find(b.peer_cidrs.begin(), b.peer_cidrs.end(), p) != b.peer_cidrs.end();
      if (shared)
        ps.error(idx("ipsec_site_connections", i),
                 "same local and peer subnets as " + idx("ipsec_site_connections", j));
      if (a.peer_address == b.peer_address && !a.manual_keys && !b.manual_keys) {
        const std::string both = " differs from that of " + idx("ipsec_site_connections", j) +
                                 " (" + b.name + "), which has the same peer " +
                                 dp::format_ipv4(a.peer_address) +
                                 " (connections to one peer share its ISAKMP SA)";
        if (!(a.psk == b.psk))
          ps.error(sub(idx("ipsec_site_connections", i), "psk"), "the psk" + both);
        if (a.ikepolicy_index != b.ikepolicy_index && a.ikepolicy_index < cfg.ikepolicies.size() &&
            b.ikepolicy_index < cfg.ikepolicies.size()) {
          IkePolicy x = cfg.ikepolicy_of(a), y = cfg.ikepolicy_of(b);
          x.name = y.name;
          if (!(x == y))
            ps.error(sub(idx("ipsec_site_connections", i), "ikepolicy"),
                     "ikepolicy " + quote(a.ikepolicy) + both);
        }
        if (a.peer_id != b.peer_id)
          ps.error(sub(idx("ipsec_site_connections", i), "peer_id"), "the peer_id" + both);
      }
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
    for (const auto& l : ci.local_cidrs)
      for (const auto& p : ci.peer_cidrs) by_pair[pair_key(l, p)].push_back(i);
    by_peer[ci.peer_address].push_back(i);
    if (ci.manual_keys) by_spi_in[ci.manual_keys->inbound.spi].push_back(i);
  }
}

void parse_connections(Parser& ps, const YAML::Node& root, Config& cfg) {
  if (auto l = ps.list(root, "ipsec_site_connections", "", false)) {
    const ConfigNames names(cfg);
    cfg.ipsec_site_connections.reserve(l->size());
    for (std::size_t i = 0; i < l->size(); ++i) {
      SiteConnection c;
      parse_connection(ps, (*l)[i], idx("ipsec_site_connections", i), cfg, names, c);
      cfg.ipsec_site_connections.push_back(std::move(c));
    }
    check_connections(ps, cfg);
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
  parse_dataplane(ps, root, cfg.dataplane);
  parse_named_list(ps, root, "ikepolicies", cfg.ikepolicies, parse_ikepolicy);
  parse_named_list(ps, root, "ipsecpolicies", cfg.ipsecpolicies, parse_ipsecpolicy);
  parse_named_list(ps, root, "endpoint_groups", cfg.endpoint_groups, parse_endpoint_group);
  parse_connections(ps, root, cfg);
  return cfg;
}

}  // namespace

Result<Config> parse_config(std::string_view yaml_text) {
  std::string text(yaml_text);
  return parse_config_and_wipe(text);
}

Result<Config> parse_config_and_wipe(std::string& text) {
  auto loaded = load_yaml_and_wipe(text);
  if (!loaded.ok()) return make_error(loaded.error());
  YAML::Node root = *loaded;
  if (!root || root.IsNull()) return make_error("empty configuration (vpnservice is required)");
  Parser ps;
  Config cfg;
  try {
    cfg = parse_root(ps, root);
  } catch (const YAML::Exception& e) {
    ps.error("(config)", std::string("unexpected YAML structure: ") + e.msg);
  }
  wipe_scalars(root);
  cfg.warnings = std::move(ps.warnings);
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

Result<void> check_secret_file_mode(const std::string& path, unsigned mode) {
  if ((mode & 077) == 0) return {};
  char m[8];
  std::snprintf(m, sizeof m, "%04o", mode & 07777);
  return make_error("config file '" + path + "' has mode " + m +
                    ": it holds pre-shared keys and must not be readable or writable by group "
                    "or others (fix: chmod 600 '" + path + "')");
}

Result<std::string> read_secret_file(const std::string& path) {
  // One descriptor for the mode check and the read (no window to swap the file between them);
  // read() straight into our buffer, so no stream buffer keeps a copy of the text.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open config file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return make_error("cannot stat config file '" + path + "': " + std::strerror(e));
  }
  if (auto r = check_secret_file_mode(path, st.st_mode); !r.ok()) {
    ::close(fd);
    return make_error(r.error());
  }
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size) + 1);
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  const int e = errno;
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  if (n < 0) {
    wipe_text(text);
    return make_error("cannot read config file '" + path + "': " + std::strerror(e));
  }
  return text;
}

Result<Config> load_config(const std::string& path) {
  auto text = read_secret_file(path);
  if (!text.ok()) return make_error(text.error());
  auto r = parse_config_and_wipe(*text);
  if (!r.ok()) return make_error("invalid configuration in " + path + ":\n" + r.error());
  return r;
}

}  // namespace ipsecgw::app
