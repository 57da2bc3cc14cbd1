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
