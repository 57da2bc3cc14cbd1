#include "app/model/lookup.hpp"

#include "app/scan_steps.hpp"

namespace ipsecgw::model {
namespace {

template <class T>
void index(std::unordered_map<std::string_view, std::size_t>& ix, const std::vector<T>& v) {
  ix.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) ix.emplace(v[i].id, i);  // the first of an id
}

template <class T>
const T* get(const std::unordered_map<std::string_view, std::size_t>& ix,
             const std::vector<T>& v, std::string_view id) {
  app::count_scan_steps();
  const auto it = ix.find(id);
  return it == ix.end() ? nullptr : &v[it->second];
}

}  // namespace

StateLookup::StateLookup(const State& s) : s_(s) {
  index(ike_, s.ikepolicies);
  index(ipsec_, s.ipsecpolicies);
  index(services_, s.vpnservices);
  index(groups_, s.endpoint_groups);
  index(conns_, s.ipsec_site_connections);
}

const IkePolicy* StateLookup::ikepolicy(std::string_view id) const {
  return get(ike_, s_.ikepolicies, id);
}
const IpsecPolicy* StateLookup::ipsecpolicy(std::string_view id) const {
  return get(ipsec_, s_.ipsecpolicies, id);
}
const VpnService* StateLookup::vpnservice(std::string_view id) const {
  return get(services_, s_.vpnservices, id);
}
const EndpointGroup* StateLookup::endpoint_group(std::string_view id) const {
  return get(groups_, s_.endpoint_groups, id);
}
const SiteConnection* StateLookup::connection(std::string_view id) const {
  return get(conns_, s_.ipsec_site_connections, id);
}

// As model.cpp's local_cidrs: the local endpoint group's CIDRs or subnets, else the
// vpnservice's subnet.
std::vector<std::string> local_cidrs(const StateLookup& l, const Environment& env,
                                     const SiteConnection& c) {
  std::vector<std::string> out;
  auto add_subnet = [&](const std::string& id) {
    if (auto* sn = env.subnet(id)) out.push_back(sn->cidr);
  };
  if (!c.local_ep_group_id.empty()) {
    if (auto* g = l.endpoint_group(c.local_ep_group_id))
      for (auto& e : g->endpoints) {
        if (g->type == "cidr") out.push_back(e);
        else add_subnet(e);
      }
  } else if (auto* v = l.vpnservice(c.vpnservice_id); v && !v->subnet_id.empty()) {
    add_subnet(v->subnet_id);
  }
  return out;
}

std::vector<std::string> peer_cidrs(const StateLookup& l, const SiteConnection& c) {
  if (!c.peer_ep_group_id.empty()) {
    if (auto* g = l.endpoint_group(c.peer_ep_group_id)) return g->endpoints;
    return {};
  }
  return c.peer_cidrs;
}

}  // namespace ipsecgw::model
