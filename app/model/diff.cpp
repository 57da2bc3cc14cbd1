#include "app/model/diff.hpp"

#include "app/model/lookup.hpp"

namespace ipsecgw::model {

namespace {

bool enabled(const StateLookup& s, const SiteConnection& c) {
  const VpnService* v = s.vpnservice(c.vpnservice_id);
  return c.admin_state_up && v && v->admin_state_up;
}

// A policy's negotiated content: everything but its identity and labels.
template <class P>
P content(P p) {
  p.id.clear();
  p.name.clear();
  p.description.clear();
  p.tenant_id.clear();
  return p;
}

void compare_policy(const auto* a, const auto* b, const char* what,
                    std::vector<std::string>& sa) {
  if (!a || !b) {
    if (a != b) sa.push_back(what);
    return;
  }
  auto ca = content(*a), cb = content(*b);
  if (ca == cb) return;
  std::string w = what;
  if (ca.auth_algorithm != cb.auth_algorithm) sa.push_back(w + ".auth_algorithm");
  if (ca.encryption_algorithm != cb.encryption_algorithm)
    sa.push_back(w + ".encryption_algorithm");
  if (ca.pfs != cb.pfs) sa.push_back(w + ".pfs");
  if (!(ca.lifetime == cb.lifetime)) sa.push_back(w + ".lifetime");
}

}  // namespace

const char* to_string(ConnectionChange::Kind k) noexcept {
  switch (k) {
    case ConnectionChange::Kind::kCreated: return "created";
    case ConnectionChange::Kind::kDeleted: return "deleted";
    case ConnectionChange::Kind::kUpdated: return "updated";
  }
  return "?";
}

std::vector<ConnectionChange> diff(const State& prev_state, const State& next_state,
                                   const Environment& env) {
  // Each connection's objects by id (a walk per lookup would make the diff quadratic).
  const StateLookup prev(prev_state), next(next_state);
  std::vector<ConnectionChange> out;
  for (const auto& n : next_state.ipsec_site_connections) {
    const SiteConnection* o = prev.connection(n.id);
    ConnectionChange ch;
    ch.id = n.id;
    ch.name = n.name;
    ch.now_enabled = enabled(next, n);
    if (!o) {
      ch.kind = ConnectionChange::Kind::kCreated;
      out.push_back(std::move(ch));
      continue;
    }
    ch.kind = ConnectionChange::Kind::kUpdated;
    ch.was_enabled = enabled(prev, *o);
    std::vector<std::string> sa, other;
    // Fields the negotiated SAs depend on.
    if (o->psk != n.psk) sa.push_back("psk");
    if (o->peer_address != n.peer_address) sa.push_back("peer_address");
    if (o->peer_id != n.peer_id) sa.push_back("peer_id");
    if (o->local_id != n.local_id) sa.push_back("local_id");
    if (local_cidrs(prev, env, *o) != local_cidrs(next, env, n)) sa.push_back("local_cidrs");
    if (peer_cidrs(prev, *o) != peer_cidrs(next, n)) sa.push_back("peer_cidrs");
    compare_policy(prev.ikepolicy(o->ikepolicy_id), next.ikepolicy(n.ikepolicy_id), "ikepolicy",
                   sa);
    compare_policy(prev.ipsecpolicy(o->ipsecpolicy_id), next.ipsecpolicy(n.ipsecpolicy_id),
                   "ipsecpolicy", sa);
    // Fields applied in place.
    if (o->name != n.name) other.push_back("name");
    if (o->description != n.description) other.push_back("description");
    if (!(o->dpd == n.dpd)) other.push_back("dpd");
    if (o->mtu != n.mtu) other.push_back("mtu");
    if (o->initiator != n.initiator) other.push_back("initiator");
    if (o->admin_state_up != n.admin_state_up) other.push_back("admin_state_up");
    {
      const VpnService* ov = prev.vpnservice(o->vpnservice_id);
      const VpnService* nv = next.vpnservice(n.vpnservice_id);
      if (ov && nv && ov->admin_state_up != nv->admin_state_up)
        other.push_back("vpnservice.admin_state_up");
    }
    // Same contents under another policy or group id: nothing to renegotiate, but recorded.
    if (o->ikepolicy_id != n.ikepolicy_id) other.push_back("ikepolicy_id");
    if (o->ipsecpolicy_id != n.ipsecpolicy_id) other.push_back("ipsecpolicy_id");
    if (o->local_ep_group_id != n.local_ep_group_id) other.push_back("local_ep_group_id");
    if (o->peer_ep_group_id != n.peer_ep_group_id) other.push_back("peer_ep_group_id");
    if (sa.empty() && other.empty()) continue;
    ch.sa_changed = !sa.empty();
    ch.changed = std::move(sa);
    ch.changed.insert(ch.changed.end(), other.begin(), other.end());
    out.push_back(std::move(ch));
  }
  for (const auto& o : prev_state.ipsec_site_connections) {
    if (next.connection(o.id)) continue;
    ConnectionChange ch;
    ch.kind = ConnectionChange::Kind::kDeleted;
    ch.id = o.id;
    ch.name = o.name;
    ch.was_enabled = enabled(prev, o);
    out.push_back(std::move(ch));
  }
  return out;
}

}  // namespace ipsecgw::model
