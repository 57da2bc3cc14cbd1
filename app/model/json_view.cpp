// Neutron's JSON view of the model's resources (what the API returns).
#include "app/model/model.hpp"

namespace ipsecgw::model {

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

// What IKE and IPsec policies share: algorithms, PFS group, lifetime.
template <class P>
json policy_json(const P& p) {
  json j = common(p);
  j["auth_algorithm"] = p.auth_algorithm;
  j["encryption_algorithm"] = p.encryption_algorithm;
  j["pfs"] = p.pfs;
  j["lifetime"] = lifetime_json(p.lifetime);
  return j;
}
json object_json(const IkePolicy& p) {
  json j = policy_json(p);
  j["ike_version"] = p.ike_version;
  j["phase1_negotiation_mode"] = p.phase1_negotiation_mode;
  return j;
}
json object_json(const IpsecPolicy& p) {
  json j = policy_json(p);
  j["transform_protocol"] = p.transform_protocol;
  j["encapsulation_mode"] = p.encapsulation_mode;
  return j;
}
json object_json(const VpnService& v) {
  json j = common(v);
  j["router_id"] = v.router_id;
  j["subnet_id"] = nullable(v.subnet_id);
  j["flavor_id"] = nullptr;
  j["admin_state_up"] = v.admin_state_up;
  return j;
}
json object_json(const EndpointGroup& g) {
  json j = common(g);
  j["type"] = g.type;
  j["endpoints"] = g.endpoints;
  return j;
}
json object_json(const SiteConnection& c) {
  json j = common(c);
  j["vpnservice_id"] = c.vpnservice_id;
  j["ikepolicy_id"] = c.ikepolicy_id;
  j["ipsecpolicy_id"] = c.ipsecpolicy_id;
  j["local_ep_group_id"] = nullable(c.local_ep_group_id);
  j["peer_ep_group_id"] = nullable(c.peer_ep_group_id);
  j["peer_address"] = c.peer_address;
  j["peer_id"] = c.peer_id;
  j["local_id"] = c.local_id;
  j["peer_cidrs"] = c.peer_cidrs;
  j["psk"] = c.psk;  // Neutron returns it; it is never logged
  j["mtu"] = c.mtu;
  j["initiator"] = c.initiator;
  j["dpd"] = {{"action", c.dpd.action}, {"interval", c.dpd.interval}, {"timeout", c.dpd.timeout}};
  j["auth_mode"] = c.auth_mode;
  j["route_mode"] = c.route_mode;
  j["admin_state_up"] = c.admin_state_up;
  return j;
}
template <class T>
json one(const T* o) {
  return o != nullptr ? object_json(*o) : json(nullptr);
}
template <class T>
std::vector<json> all(const std::vector<T>& v) {
  std::vector<json> out;
  out.reserve(v.size());
  for (const T& o : v) out.push_back(object_json(o));
  return out;
}
}  // namespace

json to_json(const State& s, Kind k, std::string_view id) {
  switch (k) {
    case Kind::kIkePolicy: return one(s.ikepolicy(id));
    case Kind::kIpsecPolicy: return one(s.ipsecpolicy(id));
    case Kind::kVpnService: return one(s.vpnservice(id));
    case Kind::kEndpointGroup: return one(s.endpoint_group(id));
    case Kind::kConnection: return one(s.connection(id));
  }
  return nullptr;
}

std::vector<json> to_json_all(const State& s, Kind k) {
  switch (k) {
    case Kind::kIkePolicy: return all(s.ikepolicies);
    case Kind::kIpsecPolicy: return all(s.ipsecpolicies);
    case Kind::kVpnService: return all(s.vpnservices);
    case Kind::kEndpointGroup: return all(s.endpoint_groups);
    case Kind::kConnection: return all(s.ipsec_site_connections);
  }
  return {};
}

}  // namespace ipsecgw::model
