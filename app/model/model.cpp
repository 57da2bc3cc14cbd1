// The desired-state model: field validation (rules.hpp), referential integrity, Neutron's JSON.
#include "app/model/model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <random>
#include <set>

#include "app/model/rules.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::model {

using app::FixedValue;

namespace {

constexpr KindInfo kInfo[] = {
    {"ikepolicy", "ikepolicies", "ikepolicies", "IKEPolicy", "IKEPolicyNotFound",
     "IKEPolicyInUse"},
    {"ipsecpolicy", "ipsecpolicies", "ipsecpolicies", "IPsecPolicy", "IPsecPolicyNotFound",
     "IPsecPolicyInUse"},
    {"vpnservice", "vpnservices", "vpnservices", "VPNService", "VPNServiceNotFound",
     "VPNServiceInUse"},
    {"endpoint_group", "endpoint_groups", "endpoint-groups", "VPNEndpointGroup",
     "VPNEndpointGroupNotFound", "EndpointGroupInUse"},
    {"ipsec_site_connection", "ipsec_site_connections", "ipsec-site-connections",
     "IPsecSiteConnection", "IPsecSiteConnectionNotFound", ""},
};

constexpr std::size_t kMaxName = 255;  // Neutron's NAME_FIELD_SIZE / DESCRIPTION_FIELD_SIZE

template <class T>
const T* find_in(const std::vector<T>& v, std::string_view id) {
  for (auto& e : v)
    if (e.id == id) return &e;
  return nullptr;
}
template <class T>
T* find_in(std::vector<T>& v, std::string_view id) {
  for (auto& e : v)
    if (e.id == id) return &e;
  return nullptr;
}

// Errors of one request. Each line is "<path>.<field>: <message>" (path may be empty).
struct Ctx {
  std::string path;
  std::vector<std::string> errors;
  std::optional<Error> hard;  // a 404 (a referenced object does not exist)

  std::string field(std::string_view f) const {
    return path.empty() ? std::string(f) : path + "." + std::string(f);
  }
  void err(std::string_view f, std::string msg) { errors.push_back(field(f) + ": " + msg); }
  void not_found(Kind k, std::string_view f, std::string_view id) {
    if (!hard)
      hard = Error{ErrorKind::kNotFound, std::string(info(k).not_found),
                   field(f) + ": " + std::string(info(k).neutron) + " " + std::string(id) +
                       " could not be found"};
  }
};

std::string shown(const json& v) {
  if (v.is_string()) return app::quote_value(v.get<std::string>());
  return app::quote_value(v.dump());
}

bool present(const json& in, std::string_view key) {
  return in.contains(std::string(key));
}
const json& at(const json& in, std::string_view key) { return in.at(std::string(key)); }

std::optional<std::string> read_string(const json& in, std::string_view key, Ctx& c,
                                       bool nonempty = false, bool secret = false) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  if (!v.is_string()) {
    c.err(key, secret ? "must be a string (value not shown)" : shown(v) + " is not a string");
    return std::nullopt;
  }
  auto s = v.get<std::string>();
  if (nonempty && s.empty()) {
    c.err(key, "must not be empty");
    return std::nullopt;
  }
  if (s.size() > kMaxName) {
    c.err(key, std::to_string(s.size()) + " characters, at most " + std::to_string(kMaxName) +
                   (secret ? " (value not shown)" : ""));
    return std::nullopt;
  }
  return s;
}

// An unsigned integer: a JSON number or a string of digits (the client sends mtu as "1400").
std::optional<std::uint32_t> read_uint(const json& in, std::string_view key, std::uint64_t lo,
                                       std::uint64_t hi, Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  std::uint64_t n = 0;
  std::string text;
  if (v.is_number_unsigned()) {
    n = v.get<std::uint64_t>();
    text = std::to_string(n);
  } else if (v.is_number_integer()) {  // signed: negative, or built from a C++ int
    if (v.get<std::int64_t>() < 0) {
      c.err(key, v.dump() + " out of range " + std::to_string(lo) + ".." + std::to_string(hi));
      return std::nullopt;
    }
    n = static_cast<std::uint64_t>(v.get<std::int64_t>());
    text = std::to_string(n);
  } else if (v.is_string() && !v.get<std::string>().empty() &&
             v.get<std::string>().size() <= 19 &&
             std::all_of(v.get_ref<const std::string&>().begin(),
                         v.get_ref<const std::string&>().end(),
                         [](unsigned char ch) { return std::isdigit(ch); })) {
    text = v.get<std::string>();
    n = std::stoull(text);
  } else {
    c.err(key, shown(v) + " is not a non-negative integer");
    return std::nullopt;
  }
  if (n < lo || n > hi) {
    c.err(key, app::msg_out_of_range(text, lo, hi));
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(n);
}

// A boolean: JSON true/false or the strings Neutron's convert_to_boolean takes.
std::optional<bool> read_bool(const json& in, std::string_view key, Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
    if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  }
  c.err(key, shown(v) + " is not a boolean (allowed: true, false)");
  return std::nullopt;
}

template <std::size_t N>
std::optional<std::string> read_choice(const json& in, std::string_view key,
                                       const std::string_view (&names)[N], Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  if (v.is_string())
    for (auto n : names)
      if (n == v.get<std::string>()) return std::string(n);
  c.err(key, app::msg_not_allowed(v.is_string() ? v.get<std::string>() : v.dump(), names));
  return std::nullopt;
}

// A field of which one value is supported: others are refused saying so.
std::optional<std::string> read_fixed(const json& in, std::string_view key, const FixedValue& f,
                                      Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  if (v.is_string() && v.get<std::string>() == f.only) return std::string(f.only);
  c.err(key, app::msg_not_supported(v.is_string() ? v.get<std::string>() : v.dump(), f));
  return std::nullopt;
}

// An optional reference id: a string, or null/"" for none.
std::optional<std::string> read_ref(const json& in, std::string_view key, Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  if (v.is_null()) return std::string();
  if (!v.is_string()) {
    c.err(key, shown(v) + " is not an id (a string)");
    return std::nullopt;
  }
  return v.get<std::string>();
}

std::optional<std::string> canonical_cidr(const std::string& s, const std::string& field,
                                          Ctx& c) {
  if (auto p = dp::parse_prefix(s)) return dp::format_prefix(*p);
  auto slash = s.find('/');
  if (slash != std::string::npos && dp::parse_ipv4(s.substr(0, slash)))
    c.err(field, app::quote_value(s) +
                     " is not a valid CIDR (host bits must be zero, prefix length 0..32, "
                     "e.g. 10.1.0.0/24)");
  else
    c.err(field, app::quote_value(s) + " is not an IPv4 CIDR (e.g. 10.1.0.0/24)");
  return std::nullopt;
}

// A list of strings; a single string is taken as a one-element list (the client sends
// --peer-cidr as "peer_cidrs": "10.9.0.0/24", and Neutron converts it the same way).
std::optional<std::vector<std::string>> read_list(const json& in, std::string_view key, Ctx& c) {
  if (!present(in, key)) return std::nullopt;
  const json& v = at(in, key);
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
    return out;
  }
  if (!v.is_array()) {
    c.err(key, shown(v) + " is not a list of strings");
    return std::nullopt;
  }
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      c.err(std::string(key) + "[" + std::to_string(i) + "]", shown(v[i]) + " is not a string");
      return std::nullopt;
    }
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

bool check_keys(const json& in, std::initializer_list<std::string_view> allowed, Ctx& c,
                std::string_view where = {}) {
  if (!in.is_object()) {
    c.err(where.empty() ? "(body)" : where, "must be a JSON object");
    return false;
  }
  bool ok = true;
  for (auto it = in.begin(); it != in.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) != allowed.end()) continue;
    std::string f = where.empty() ? it.key() : std::string(where) + "." + it.key();
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    c.err(f, "unrecognized attribute (allowed: " + list + ")");
    ok = false;
  }
  return ok;
}

// Keys a client may not send: on create those the server sets, on update the read-only ones.
void refuse_keys(const json& in, std::initializer_list<std::string_view> keys, bool update,
                 Ctx& c) {
  for (auto k : keys)
    if (present(in, k))
      c.err(k, update ? "cannot update read-only attribute" : "attribute not allowed in POST");
}

void read_lifetime(const json& in, Lifetime& lt, Ctx& c) {
  if (!present(in, "lifetime")) return;
  const json& v = at(in, "lifetime");
  if (!v.is_object()) {
    c.err("lifetime", shown(v) + " is not a dict {units, value}");
    return;
  }
  Ctx sub{c.field("lifetime"), {}, {}};
  check_keys(v, {"units", "value"}, sub);
  if (auto u = read_fixed(v, "units", app::kLifetimeUnits, sub)) lt.units = *u;
  if (auto n = read_uint(v, "value", app::kLifetimeMin, app::kLifetimeMax, sub)) lt.value = *n;
  c.errors.insert(c.errors.end(), sub.errors.begin(), sub.errors.end());
}

void read_common(const json& in, std::string& name, std::string& description,
                 std::string& tenant_id, bool update, Ctx& c) {
  if (auto s = read_string(in, "name", c)) name = *s;
  if (auto s = read_string(in, "description", c)) description = *s;
  if (!update) {
    if (auto s = read_string(in, "tenant_id", c)) tenant_id = *s;
    if (auto s = read_string(in, "project_id", c)) tenant_id = *s;
  }
}

#define IPSECGW_COMMON_KEYS "id", "name", "description", "tenant_id", "project_id", "status"

void fields_ike(const json& in, IkePolicy& p, bool update, Ctx& c) {
  check_keys(in, {IPSECGW_COMMON_KEYS, "auth_algorithm", "encryption_algorithm", "ike_version",
                  "phase1_negotiation_mode", "pfs", "lifetime"}, c);
  read_common(in, p.name, p.description, p.tenant_id, update, c);
  if (auto v = read_choice(in, "auth_algorithm", app::kAuthAlgorithms, c)) p.auth_algorithm = *v;
  if (auto v = read_choice(in, "encryption_algorithm", app::kEncryptionAlgorithms, c))
    p.encryption_algorithm = *v;
  if (auto v = read_fixed(in, "ike_version", app::kIkeVersion, c)) p.ike_version = *v;
  if (auto v = read_fixed(in, "phase1_negotiation_mode", app::kPhase1Mode, c))
    p.phase1_negotiation_mode = *v;
  if (auto v = read_choice(in, "pfs", app::kPfsGroups, c)) p.pfs = *v;
  read_lifetime(in, p.lifetime, c);
}

void fields_ipsec(const json& in, IpsecPolicy& p, bool update, Ctx& c) {
  check_keys(in, {IPSECGW_COMMON_KEYS, "auth_algorithm", "encryption_algorithm",
                  "transform_protocol", "encapsulation_mode", "pfs", "lifetime"}, c);
  read_common(in, p.name, p.description, p.tenant_id, update, c);
  if (auto v = read_choice(in, "auth_algorithm", app::kAuthAlgorithms, c)) p.auth_algorithm = *v;
  if (auto v = read_choice(in, "encryption_algorithm", app::kEncryptionAlgorithms, c))
    p.encryption_algorithm = *v;
  if (auto v = read_fixed(in, "transform_protocol", app::kTransformProtocol, c))
    p.transform_protocol = *v;
  if (auto v = read_fixed(in, "encapsulation_mode", app::kEncapsulationMode, c))
    p.encapsulation_mode = *v;
  if (auto v = read_choice(in, "pfs", app::kPfsGroups, c)) p.pfs = *v;
  read_lifetime(in, p.lifetime, c);
}

void fields_service(const json& in, VpnService& v, bool update, const Environment& env,
                    Ctx& c) {
  check_keys(in, {IPSECGW_COMMON_KEYS, "router_id", "subnet_id", "flavor_id", "admin_state_up",
                  "external_v4_ip", "external_v6_ip"}, c);
  read_common(in, v.name, v.description, v.tenant_id, update, c);
  if (update) refuse_keys(in, {"router_id", "subnet_id", "flavor_id"}, true, c);
  refuse_keys(in, {"external_v4_ip", "external_v6_ip"}, update, c);
  if (auto b = read_bool(in, "admin_state_up", c)) v.admin_state_up = *b;
  if (update) return;
  if (present(in, "flavor_id") && !at(in, "flavor_id").is_null())
    c.err("flavor_id", shown(at(in, "flavor_id")) +
                           " is not supported (allowed: null; service flavors are not supported)");
  if (auto r = read_ref(in, "router_id", c); !r || r->empty()) {
    if (!r && present(in, "router_id")) {
      // read_ref reported it
    } else {
      c.err("router_id", "required (the gateway's router, " + env.router_id + ")");
    }
  } else if (*r != env.router_id) {
    if (!c.hard)
      c.hard = Error{ErrorKind::kNotFound, "RouterNotFound",
                     c.field("router_id") + ": Router " + *r + " could not be found"};
  } else {
    v.router_id = *r;
  }
  if (auto s = read_ref(in, "subnet_id", c)) {
    if (!s->empty() && !env.subnet(*s)) {
      if (!c.hard)
        c.hard = Error{ErrorKind::kNotFound, "SubnetNotFound",
                       c.field("subnet_id") + ": Subnet " + *s + " could not be found"};
    }
    v.subnet_id = *s;
  }
}

void fields_group(const json& in, EndpointGroup& g, bool update, const Environment& env,
                  Ctx& c) {
  check_keys(in, {IPSECGW_COMMON_KEYS, "type", "endpoints"}, c);
  read_common(in, g.name, g.description, g.tenant_id, update, c);
  if (update) {
    refuse_keys(in, {"type", "endpoints"}, true, c);
    return;
  }
  static constexpr std::string_view kTypes[] = {"cidr", "subnet"};
  if (present(in, "type")) {
    const json& t = at(in, "type");
    std::string tv = t.is_string() ? t.get<std::string>() : t.dump();
    if (tv == "router" || tv == "network" || tv == "vlan")
      c.err("type", app::quote_value(tv) +
                        " is not supported (allowed: cidr|subnet; ipsecgw is the only router and "
                        "has no Neutron networks)");
    else if (auto v = read_choice(in, "type", kTypes, c))
      g.type = *v;
  } else {
    c.err("type", "required (cidr|subnet)");
  }
  auto eps = read_list(in, "endpoints", c);
  if (!eps) {
    if (!present(in, "endpoints")) c.err("endpoints", "required (a list)");
    return;
  }
  if (eps->empty()) c.err("endpoints", "must not be empty");
  g.endpoints.clear();
  std::set<std::string> seen;
  for (std::size_t i = 0; i < eps->size(); ++i) {
    std::string f = "endpoints[" + std::to_string(i) + "]";
    const std::string& e = (*eps)[i];
    std::string value = e;
    if (g.type == "cidr") {
      auto cidr = canonical_cidr(e, f, c);
      if (!cidr) continue;
      value = *cidr;
    } else if (!env.subnet(e)) {
      std::string known;
      for (auto& s : env.subnets) known += (known.empty() ? "" : ", ") + s.id + " (" + s.name + ")";
      c.err(f, app::quote_value(e) + " is not a subnet of this gateway (known: " +
                   (known.empty() ? "none" : known) + ")");
      continue;
    }
    if (!seen.insert(value).second) c.err(f, app::quote_value(e) + " is listed twice");
    g.endpoints.push_back(value);
  }
}

void fields_connection(const json& in, SiteConnection& x, bool update, Ctx& c) {
  check_keys(in, {IPSECGW_COMMON_KEYS, "vpnservice_id", "ikepolicy_id", "ipsecpolicy_id",
                  "local_ep_group_id", "peer_ep_group_id", "peer_address", "peer_id", "local_id",
                  "peer_cidrs", "psk", "mtu", "initiator", "dpd", "auth_mode", "route_mode",
                  "admin_state_up"}, c);
  read_common(in, x.name, x.description, x.tenant_id, update, c);
  if (update) refuse_keys(in, {"vpnservice_id", "ikepolicy_id", "ipsecpolicy_id"}, true, c);
  for (auto k : {"vpnservice_id", "ikepolicy_id", "ipsecpolicy_id"}) {
    if (update) break;
    auto r = read_ref(in, k, c);
    if (!r || r->empty()) {
      if (!present(in, k) || r) c.err(k, "required");
      continue;
    }
    std::string_view key = k;
    (key == "vpnservice_id" ? x.vpnservice_id : key == "ikepolicy_id" ? x.ikepolicy_id
                                                                        : x.ipsecpolicy_id) = *r;
  }
  if (auto r = read_ref(in, "local_ep_group_id", c)) x.local_ep_group_id = *r;
  if (auto r = read_ref(in, "peer_ep_group_id", c)) x.peer_ep_group_id = *r;
  if (auto a = read_string(in, "peer_address", c, true)) {
    if (auto ip = dp::parse_ipv4(*a)) {
      std::string canon = dp::format_ipv4(*ip);
      // peer_id defaults to the address on create; an update of the address keeps it, as
      // Neutron does.
      if (!present(in, "peer_id") && x.peer_id.empty()) x.peer_id = canon;
      x.peer_address = canon;
    } else {
      c.err("peer_address", app::quote_value(*a) +
                                " is not an IPv4 address (FQDN and IPv6 peers are not supported)");
    }
  } else if (!update && !present(in, "peer_address")) {
    c.err("peer_address", "required");
  }
  if (auto s = read_string(in, "peer_id", c, true)) x.peer_id = *s;
  if (auto s = read_string(in, "local_id", c)) x.local_id = *s;
  if (auto l = read_list(in, "peer_cidrs", c)) {
    x.peer_cidrs.clear();
    for (std::size_t i = 0; i < l->size(); ++i)
      if (auto cidr = canonical_cidr((*l)[i], "peer_cidrs[" + std::to_string(i) + "]", c))
        x.peer_cidrs.push_back(*cidr);
  }
  if (auto s = read_string(in, "psk", c, true, /*secret=*/true)) {
    x.psk = *s;
  } else if (!update && !present(in, "psk")) {
    c.err("psk", "required (auth_mode psk)");
  }
  if (auto n = read_uint(in, "mtu", app::kConnMtuMin, app::kConnMtuMax, c)) x.mtu = *n;
  if (auto v = read_choice(in, "initiator", app::kInitiators, c)) x.initiator = *v;
  if (auto v = read_fixed(in, "auth_mode", app::kAuthMode, c)) x.auth_mode = *v;
  if (auto v = read_fixed(in, "route_mode", app::kRouteMode, c)) x.route_mode = *v;
  if (auto b = read_bool(in, "admin_state_up", c)) x.admin_state_up = *b;
  if (present(in, "dpd")) {
    const json& d = at(in, "dpd");
    if (!d.is_object()) {
      c.err("dpd", shown(d) + " is not a dict {action, interval, timeout}");
    } else {
      Ctx sub{c.field("dpd"), {}, {}};
      check_keys(d, {"action", "interval", "timeout"}, sub);
      if (auto v = read_choice(d, "action", app::kDpdActions, sub)) x.dpd.action = *v;
      if (auto n = read_uint(d, "interval", 1, app::kDpdMax, sub)) x.dpd.interval = *n;
      if (auto n = read_uint(d, "timeout", 1, app::kDpdMax, sub)) x.dpd.timeout = *n;
      c.errors.insert(c.errors.end(), sub.errors.begin(), sub.errors.end());
    }
  }
  if (x.dpd.timeout <= x.dpd.interval)
    c.err("dpd.timeout", std::to_string(x.dpd.timeout) + " must be greater than dpd.interval (" +
                             std::to_string(x.dpd.interval) + ")");
}

std::string label(const SiteConnection& c) {
  return "ipsec_site_connection " + (c.name.empty() ? c.id : "'" + c.name + "' (" + c.id + ")");
}

bool overlaps(const dp::Ipv4Prefix& a, const dp::Ipv4Prefix& b) {
  return a.contains(b.addr) || b.contains(a.addr);
}

// The checks of one connection that need the rest of the state.
void check_connection(const State& s, const Environment& env, const SiteConnection& x, Ctx& c) {
  const VpnService* svc = s.vpnservice(x.vpnservice_id);
  if (!svc) c.not_found(Kind::kVpnService, "vpnservice_id", x.vpnservice_id);
  if (!s.ikepolicy(x.ikepolicy_id)) c.not_found(Kind::kIkePolicy, "ikepolicy_id", x.ikepolicy_id);
  if (!s.ipsecpolicy(x.ipsecpolicy_id))
    c.not_found(Kind::kIpsecPolicy, "ipsecpolicy_id", x.ipsecpolicy_id);
  const EndpointGroup* lg = nullptr;
  const EndpointGroup* pg = nullptr;
  if (!x.local_ep_group_id.empty() && !(lg = s.endpoint_group(x.local_ep_group_id)))
    c.not_found(Kind::kEndpointGroup, "local_ep_group_id", x.local_ep_group_id);
  if (!x.peer_ep_group_id.empty() && !(pg = s.endpoint_group(x.peer_ep_group_id)))
    c.not_found(Kind::kEndpointGroup, "peer_ep_group_id", x.peer_ep_group_id);
  if (c.hard) return;

  if (!env.external_v4_ip.empty() && x.peer_address == env.external_v4_ip)
    c.err("peer_address", x.peer_address + " is our own address");
  // Peer side: peer_cidrs or peer_ep_group_id, exactly one.
  if (!x.peer_cidrs.empty() && pg)
    c.err("peer_ep_group_id", "give either peer_cidrs or peer_ep_group_id, not both");
  else if (x.peer_cidrs.empty() && !pg)
    c.err("peer_cidrs", "required (or peer_ep_group_id with local_ep_group_id)");
  if (pg && pg->type != "cidr")
    c.err("peer_ep_group_id", "endpoint group " + pg->id + " has type " + pg->type +
                                  "; the peer side needs type cidr");
  // Local side: local_ep_group_id, else the vpnservice's subnet.
  if (!lg && svc && svc->subnet_id.empty())
    c.err("local_ep_group_id", "required when the vpnservice has no subnet_id");
  auto locals = local_cidrs(s, env, x);
  auto peers = peer_cidrs(s, x);
  // One policy (local subnet, peer subnet) per connection: the data plane's SA selectors.
  std::string peer_field = pg ? "peer_ep_group_id" : "peer_cidrs";
  if (peers.size() > 1)
    c.err(peer_field, std::to_string(peers.size()) +
                          " peer CIDRs, only one per connection is supported (make one "
                          "connection each)");
  if (locals.size() > 1)
    c.err("local_ep_group_id", std::to_string(locals.size()) +
                                   " local CIDRs, only one per connection is supported (make one "
                                   "connection each)");
  for (auto& l : locals)
    for (auto& p : peers) {
      auto lp = dp::parse_prefix(l), pp = dp::parse_prefix(p);
      if (lp && pp && overlaps(*lp, *pp))
        c.err(peer_field, p + " overlaps the local subnet " + l);
    }
}

// Checks between connection x and the others.
void check_pairs(const State& s, const Environment& env, const SiteConnection& x, Ctx& c) {
  auto locals = local_cidrs(s, env, x);
  auto peers = peer_cidrs(s, x);
  const IkePolicy* ike = s.ikepolicy(x.ikepolicy_id);
  for (auto& o : s.ipsec_site_connections) {
    if (o.id == x.id) continue;
    if (!locals.empty() && !peers.empty() && local_cidrs(s, env, o) == locals &&
        peer_cidrs(s, o) == peers)
      c.err("peer_cidrs", "same local and peer subnets as " + label(o));
    if (o.peer_address == x.peer_address) {
      // One ISAKMP SA per peer: connections to one peer share its PSK and IKE policy.
      if (o.psk != x.psk)
        c.err("psk", "differs from the psk of " + label(o) + ", which has the same peer " +
                         x.peer_address + " (value not shown)");
      const IkePolicy* oi = s.ikepolicy(o.ikepolicy_id);
      if (ike && oi && o.ikepolicy_id != x.ikepolicy_id) {
        IkePolicy a = *ike, b = *oi;
        a.id = b.id, a.name = b.name, a.description = b.description, a.tenant_id = b.tenant_id;
        if (!(a == b))
          c.err("ikepolicy_id", "ikepolicy " + x.ikepolicy_id + " differs from ikepolicy " +
                                    o.ikepolicy_id + " of " + label(o) +
                                    ", which has the same peer " + x.peer_address);
      }
    }
  }
}

std::optional<Error> to_error(Ctx& c) {
  if (c.hard) return c.hard;
  if (c.errors.empty()) return std::nullopt;
  std::string msg;
  for (auto& e : c.errors) msg += (msg.empty() ? "" : "\n") + e;
  return Error{ErrorKind::kBadRequest, "InvalidInput", msg};
}

// Which connections use object `id` of kind k.
std::vector<const SiteConnection*> users(const State& s, Kind k, std::string_view id) {
  std::vector<const SiteConnection*> out;
  for (auto& c : s.ipsec_site_connections) {
    bool uses = false;
    switch (k) {
      case Kind::kIkePolicy: uses = c.ikepolicy_id == id; break;
      case Kind::kIpsecPolicy: uses = c.ipsecpolicy_id == id; break;
      case Kind::kVpnService: uses = c.vpnservice_id == id; break;
      case Kind::kEndpointGroup: uses = c.local_ep_group_id == id || c.peer_ep_group_id == id; break;
      case Kind::kConnection: break;
    }
    if (uses) out.push_back(&c);
  }
  return out;
}

template <class T, class F>
Outcome upsert(const State& s, std::vector<T> State::*member, Kind k, std::string_view id,
               const json& fields, const Options& opt, const Environment& env, F&& read) {
  Outcome out;
  out.next = s;
  Ctx c{opt.path, {}, {}};
  const bool update = !id.empty();
  T obj;
  if (update) {
    const T* cur = find_in(s.*member, id);
    if (!cur) {
      out.error = Error{ErrorKind::kNotFound, std::string(info(k).not_found),
                        std::string(info(k).neutron) + " " + std::string(id) +
                            " could not be found"};
      return out;
    }
    obj = *cur;
    refuse_keys(fields, {"id", "tenant_id", "project_id", "status"}, true, c);
  } else {
    refuse_keys(fields, {"status"}, false, c);
    if (present(fields, "id") && !opt.allow_id) {
      refuse_keys(fields, {"id"}, false, c);
    } else if (present(fields, "id")) {
      const json& v = at(fields, "id");
      if (!v.is_string() || !is_uuid(v.get<std::string>()))
        c.err("id", shown(v) + " is not a UUID");
      else if (s.contains(k, v.get<std::string>()))
        c.err("id", shown(v) + " is already used");
      else
        obj.id = v.get<std::string>();
    }
    if (obj.id.empty()) {
      do obj.id = random_uuid();
      while (s.contains(k, obj.id));
    }
  }
  if (!fields.is_object()) {
    c.err("(body)", "must be a JSON object");
  } else {
    read(fields, obj, update, c);
  }
  if (auto e = to_error(c)) {
    out.error = e;
    return out;
  }
  auto& vec = out.next.*member;
  if (update)
    *find_in(vec, id) = obj;
  else
    vec.push_back(obj);
  out.id = obj.id;
  if constexpr (std::is_same_v<T, SiteConnection>) {
    check_connection(out.next, env, obj, c);
    if (!c.hard) check_pairs(out.next, env, obj, c);
    if (auto e = to_error(c)) out.error = e;
  }
  return out;
}

}  // namespace

const KindInfo& info(Kind k) noexcept { return kInfo[static_cast<std::size_t>(k)]; }

std::optional<Kind> kind_from_collection(std::string_view collection) noexcept {
  for (auto k : kAllKinds)
    if (info(k).collection == collection) return k;
  return std::nullopt;
}

const IkePolicy* State::ikepolicy(std::string_view id) const { return find_in(ikepolicies, id); }
const IpsecPolicy* State::ipsecpolicy(std::string_view id) const {
  return find_in(ipsecpolicies, id);
}
const VpnService* State::vpnservice(std::string_view id) const {
  return find_in(vpnservices, id);
}
const EndpointGroup* State::endpoint_group(std::string_view id) const {
  return find_in(endpoint_groups, id);
}
const SiteConnection* State::connection(std::string_view id) const {
  return find_in(ipsec_site_connections, id);
}
bool State::contains(Kind k, std::string_view id) const {
  switch (k) {
    case Kind::kIkePolicy: return ikepolicy(id);
    case Kind::kIpsecPolicy: return ipsecpolicy(id);
    case Kind::kVpnService: return vpnservice(id);
    case Kind::kEndpointGroup: return endpoint_group(id);
    case Kind::kConnection: return connection(id);
  }
  return false;
}

const Subnet* Environment::subnet(std::string_view id) const {
  for (auto& s : subnets)
    if (s.id == id) return &s;
  return nullptr;
}

namespace {
std::string format_uuid(std::uint64_t hi, std::uint64_t lo) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out += '-';
    std::uint64_t w = i < 16 ? hi : lo;
    out += kHex[(w >> (60 - 4 * (i % 16))) & 15];
  }
  return out;
}
}  // namespace

std::string stable_uuid(std::string_view seed) {
  // Two FNV-1a 64 hashes with different offsets; version 8 (custom), RFC 9562 variant.
  auto fnv = [&](std::uint64_t h) {
    for (unsigned char ch : seed) h = (h ^ ch) * 0x100000001b3ULL;
    return h;
  };
  std::uint64_t hi = fnv(0xcbf29ce484222325ULL), lo = fnv(0x84222325cbf29ce4ULL);
  hi = (hi & ~0xf000ULL) | 0x8000ULL;
  lo = (lo & ~(3ULL << 62)) | (2ULL << 62);
  return format_uuid(hi, lo);
}

std::string random_uuid() {
  static thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd();
  }()};
  std::uint64_t hi = rng(), lo = rng();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;  // version 4
  lo = (lo & ~(3ULL << 62)) | (2ULL << 62);
  return format_uuid(hi, lo);
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

Outcome create(const State& s, const Environment& env, Kind k, const json& fields,
               const Options& opt) {
  return update(s, env, k, "", fields, opt);
}

Outcome update(const State& s, const Environment& env, Kind k, std::string_view id,
               const json& fields, const Options& opt) {
  switch (k) {
    case Kind::kIkePolicy:
      return upsert(s, &State::ikepolicies, k, id, fields, opt, env,
                    [](const json& in, IkePolicy& p, bool u, Ctx& c) { fields_ike(in, p, u, c); });
    case Kind::kIpsecPolicy:
      return upsert(s, &State::ipsecpolicies, k, id, fields, opt, env,
                    [](const json& in, IpsecPolicy& p, bool u, Ctx& c) {
                      fields_ipsec(in, p, u, c);
                    });
    case Kind::kVpnService:
      return upsert(s, &State::vpnservices, k, id, fields, opt, env,
                    [&env](const json& in, VpnService& v, bool u, Ctx& c) {
                      fields_service(in, v, u, env, c);
                    });
    case Kind::kEndpointGroup:
      return upsert(s, &State::endpoint_groups, k, id, fields, opt, env,
                    [&env](const json& in, EndpointGroup& g, bool u, Ctx& c) {
                      fields_group(in, g, u, env, c);
                    });
    case Kind::kConnection:
      return upsert(s, &State::ipsec_site_connections, k, id, fields, opt, env,
                    [](const json& in, SiteConnection& x, bool u, Ctx& c) {
                      fields_connection(in, x, u, c);
                    });
  }
  return {};
}

Outcome remove(const State& s, Kind k, std::string_view id) {
  Outcome out;
  out.next = s;
  out.id = std::string(id);
  if (!s.contains(k, id)) {
    out.error = Error{ErrorKind::kNotFound, std::string(info(k).not_found),
                      std::string(info(k).neutron) + " " + std::string(id) + " could not be found"};
    return out;
  }
  if (auto u = users(s, k, id); !u.empty()) {
    std::string who;
    for (auto* c : u) who += (who.empty() ? "" : ", ") + label(*c);
    out.error = Error{ErrorKind::kConflict, std::string(info(k).in_use),
                      std::string(info(k).neutron) + " " + std::string(id) +
                          " is in use by existing IPsecSiteConnection (" + who +
                          ") and can't be deleted"};
    return out;
  }
  auto erase = [&](auto& v) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](auto& e) { return e.id == id; }), v.end());
  };
  switch (k) {
    case Kind::kIkePolicy: erase(out.next.ikepolicies); break;
    case Kind::kIpsecPolicy: erase(out.next.ipsecpolicies); break;
    case Kind::kVpnService: erase(out.next.vpnservices); break;
    case Kind::kEndpointGroup: erase(out.next.endpoint_groups); break;
    case Kind::kConnection: erase(out.next.ipsec_site_connections); break;
  }
  return out;
}

std::optional<Error> validate(const State& s, const Environment& env) {
  for (std::size_t i = 0; i < s.ipsec_site_connections.size(); ++i) {
    const auto& x = s.ipsec_site_connections[i];
    Ctx c{"ipsec_site_connections[" + std::to_string(i) + "]", {}, {}};
    check_connection(s, env, x, c);
    if (!c.hard) check_pairs(s, env, x, c);
    if (auto e = to_error(c)) return e;
  }
  for (auto& v : s.vpnservices)
    if (v.router_id != env.router_id)
      return Error{ErrorKind::kNotFound, "RouterNotFound",
                   "vpnservice " + v.id + ": router_id: Router " + v.router_id +
                       " could not be found (this gateway's router is " + env.router_id + ")"};
  return std::nullopt;
}

std::vector<std::string> local_cidrs(const State& s, const Environment& env,
                                     const SiteConnection& c) {
  std::vector<std::string> out;
  auto add_subnet = [&](const std::string& id) {
    if (auto* sn = env.subnet(id)) out.push_back(sn->cidr);
  };
  if (!c.local_ep_group_id.empty()) {
    if (auto* g = s.endpoint_group(c.local_ep_group_id)) {
      for (auto& e : g->endpoints) {
        if (g->type == "cidr")
          out.push_back(e);
        else
          add_subnet(e);
      }
    }
  } else if (auto* v = s.vpnservice(c.vpnservice_id); v && !v->subnet_id.empty()) {
    add_subnet(v->subnet_id);
  }
  return out;
}

std::vector<std::string> peer_cidrs(const State& s, const SiteConnection& c) {
  if (!c.peer_ep_group_id.empty()) {
    if (auto* g = s.endpoint_group(c.peer_ep_group_id)) return g->endpoints;
    return {};
  }
  return c.peer_cidrs;
}

namespace {
json nullable(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
json lifetime_json(const Lifetime& l) { return {{"units", l.units}, {"value", l.value}}; }
template <class T>
json common(const T& o) {
  return {{"id", o.id},
          {"name", o.name},
          {"description", o.description},
          {"tenant_id", o.tenant_id},
          {"project_id", o.tenant_id}};
}
}  // namespace

json to_json(const State& s, Kind k, std::string_view id) {
  switch (k) {
    case Kind::kIkePolicy: {
      auto* p = s.ikepolicy(id);
      if (!p) return nullptr;
      json j = common(*p);
      j["auth_algorithm"] = p->auth_algorithm;
      j["encryption_algorithm"] = p->encryption_algorithm;
      j["ike_version"] = p->ike_version;
      j["phase1_negotiation_mode"] = p->phase1_negotiation_mode;
      j["pfs"] = p->pfs;
      j["lifetime"] = lifetime_json(p->lifetime);
      return j;
    }
    case Kind::kIpsecPolicy: {
      auto* p = s.ipsecpolicy(id);
      if (!p) return nullptr;
      json j = common(*p);
      j["auth_algorithm"] = p->auth_algorithm;
      j["encryption_algorithm"] = p->encryption_algorithm;
      j["transform_protocol"] = p->transform_protocol;
      j["encapsulation_mode"] = p->encapsulation_mode;
      j["pfs"] = p->pfs;
      j["lifetime"] = lifetime_json(p->lifetime);
      return j;
    }
    case Kind::kVpnService: {
      auto* v = s.vpnservice(id);
      if (!v) return nullptr;
      json j = common(*v);
      j["router_id"] = v->router_id;
      j["subnet_id"] = nullable(v->subnet_id);
      j["flavor_id"] = nullptr;
      j["admin_state_up"] = v->admin_state_up;
      return j;
    }
    case Kind::kEndpointGroup: {
      auto* g = s.endpoint_group(id);
      if (!g) return nullptr;
      json j = common(*g);
      j["type"] = g->type;
      j["endpoints"] = g->endpoints;
      return j;
    }
    case Kind::kConnection: {
      auto* c = s.connection(id);
      if (!c) return nullptr;
      json j = common(*c);
      j["vpnservice_id"] = c->vpnservice_id;
      j["ikepolicy_id"] = c->ikepolicy_id;
      j["ipsecpolicy_id"] = c->ipsecpolicy_id;
      j["local_ep_group_id"] = nullable(c->local_ep_group_id);
      j["peer_ep_group_id"] = nullable(c->peer_ep_group_id);
      j["peer_address"] = c->peer_address;
      j["peer_id"] = c->peer_id;
      j["local_id"] = c->local_id;
      j["peer_cidrs"] = c->peer_cidrs;
      j["psk"] = c->psk;  // Neutron returns it; it is never logged
      j["mtu"] = c->mtu;
      j["initiator"] = c->initiator;
      j["dpd"] = {{"action", c->dpd.action},
                  {"interval", c->dpd.interval},
                  {"timeout", c->dpd.timeout}};
      j["auth_mode"] = c->auth_mode;
      j["route_mode"] = c->route_mode;
      j["admin_state_up"] = c->admin_state_up;
      return j;
    }
  }
  return nullptr;
}

std::vector<std::string> ids(const State& s, Kind k) {
  std::vector<std::string> out;
  auto add = [&](auto& v) {
    for (auto& e : v) out.push_back(e.id);
  };
  switch (k) {
    case Kind::kIkePolicy: add(s.ikepolicies); break;
    case Kind::kIpsecPolicy: add(s.ipsecpolicies); break;
    case Kind::kVpnService: add(s.vpnservices); break;
    case Kind::kEndpointGroup: add(s.endpoint_groups); break;
    case Kind::kConnection: add(s.ipsec_site_connections); break;
  }
  return out;
}

}  // namespace ipsecgw::model
