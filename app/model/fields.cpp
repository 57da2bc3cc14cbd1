// Reading a Neutron request body into a resource: each field's type, range and allowed values
// (app/model/rules.hpp), with errors that name the field.
#include <algorithm>
#include <cctype>
#include <set>

#include "app/model/model_internal.hpp"
#include "app/model/rules.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::model::detail {

using app::FixedValue;

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
    if (x.psk.size() < app::kPskRecommendedMin) c.warn("psk", app::msg_psk_short(x.psk.size()));
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

}  // namespace ipsecgw::model::detail
