// The desired-state model: requests (create, update, remove), referential integrity and the
// checks that need the whole state. Reading a request body's fields: fields.cpp; Neutron's JSON
// view: json_view.cpp.
#include "app/model/model.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "app/model/model_internal.hpp"
#include "app/model/rules.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::model {

using namespace detail;

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

std::string label(const SiteConnection& c) {
  return "ipsec_site_connection " + (c.name.empty() ? c.id : "'" + c.name + "' (" + c.id + ")");
}

bool overlaps(const dp::Ipv4Prefix& a, const dp::Ipv4Prefix& b) {
  return a.contains(b.addr) || b.contains(a.addr);
}

}  // namespace

// What the checks between objects look up, by hash instead of by scanning the state.
struct StateIndex {
  std::array<std::unordered_set<std::string>, std::size(kAllKinds)> ids;
  std::unordered_map<std::string, std::size_t> groups;  // endpoint group id -> position
  // Connection positions by "local|peer" CIDR pair and by peer address.
  std::unordered_map<std::string, std::vector<std::size_t>> by_pair, by_peer;

  bool has(Kind k, const std::string& id) const {
    return ids[static_cast<std::size_t>(k)].count(id) != 0;
  }
  const EndpointGroup* group(const State& s, std::string_view id) const {
    app::count_scan_steps();
    const auto it = groups.find(std::string(id));
    return it == groups.end() ? nullptr : &s.endpoint_groups[it->second];
  }
  void add(const State& s, const Environment& env, Kind k, std::size_t pos);
};

namespace {

const EndpointGroup* group_of(const State& s, const StateIndex* ix, std::string_view id) {
  return ix ? ix->group(s, id) : s.endpoint_group(id);
}

std::vector<std::string> local_cidrs_ix(const State& s, const Environment& env,
                                        const SiteConnection& c, const StateIndex* ix) {
  std::vector<std::string> out;
  auto add_subnet = [&](const std::string& id) {
    if (auto* sn = env.subnet(id)) out.push_back(sn->cidr);
  };
  if (!c.local_ep_group_id.empty()) {
    if (auto* g = group_of(s, ix, c.local_ep_group_id)) {
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

std::vector<std::string> peer_cidrs_ix(const State& s, const SiteConnection& c,
                                       const StateIndex* ix) {
  if (!c.peer_ep_group_id.empty()) {
    if (auto* g = group_of(s, ix, c.peer_ep_group_id)) return g->endpoints;
    return {};
  }
  return c.peer_cidrs;
}

// The checks of one connection that need the rest of the state.
void check_connection(const State& s, const Environment& env, const SiteConnection& x, Ctx& c,
                      const StateIndex* ix) {
  const VpnService* svc = s.vpnservice(x.vpnservice_id);
  if (!svc) c.not_found(Kind::kVpnService, "vpnservice_id", x.vpnservice_id);
  if (!s.ikepolicy(x.ikepolicy_id)) c.not_found(Kind::kIkePolicy, "ikepolicy_id", x.ikepolicy_id);
  if (!s.ipsecpolicy(x.ipsecpolicy_id))
    c.not_found(Kind::kIpsecPolicy, "ipsecpolicy_id", x.ipsecpolicy_id);
  const EndpointGroup* lg = nullptr;
  const EndpointGroup* pg = nullptr;
  if (!x.local_ep_group_id.empty() && !(lg = group_of(s, ix, x.local_ep_group_id)))
    c.not_found(Kind::kEndpointGroup, "local_ep_group_id", x.local_ep_group_id);
  if (!x.peer_ep_group_id.empty() && !(pg = group_of(s, ix, x.peer_ep_group_id)))
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
  auto locals = local_cidrs_ix(s, env, x, ix);
  auto peers = peer_cidrs_ix(s, x, ix);
  // A CHILD SA per (local, peer) CIDR pair (Libreswan's leftsubnets/rightsubnets).
  std::string peer_field = pg ? "peer_ep_group_id" : "peer_cidrs";
  if (locals.size() * peers.size() > app::kMaxSubnetPairs)
    c.err(peer_field, std::to_string(locals.size()) + " local x " + std::to_string(peers.size()) +
                          " peer CIDRs: at most " + std::to_string(app::kMaxSubnetPairs) +
                          " pairs (a CHILD SA each) per connection");
  for (auto& l : locals)
    for (auto& p : peers) {
      auto lp = dp::parse_prefix(l), pp = dp::parse_prefix(p);
      if (lp && pp && overlaps(*lp, *pp))
        c.err(peer_field, p + " overlaps the local subnet " + l);
    }
}

// Checks between connection x and the others: every other one, or with an index only those
// that share a (local, peer) pair or the peer address with x (the only ones that can clash),
// in the state's order either way.
void check_pairs(const State& s, const Environment& env, const SiteConnection& x, Ctx& c,
                 const StateIndex* ix) {
  auto locals = local_cidrs_ix(s, env, x, ix);
  auto peers = peer_cidrs_ix(s, x, ix);
  const IkePolicy* ike = s.ikepolicy(x.ikepolicy_id);
  std::vector<const SiteConnection*> others;
  if (ix) {
    std::vector<std::size_t> pos;
    auto take = [&](const auto& m, const std::string& key) {
      if (auto it = m.find(key); it != m.end()) pos.insert(pos.end(), it->second.begin(), it->second.end());
    };
    for (const auto& l : locals)
      for (const auto& p : peers) take(ix->by_pair, l + "|" + p);
    take(ix->by_peer, x.peer_address);
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
    for (std::size_t i : pos) others.push_back(&s.ipsec_site_connections[i]);
  } else {
    for (auto& o : s.ipsec_site_connections) others.push_back(&o);
  }
  for (const SiteConnection* op_ : others) {
    const SiteConnection& o = *op_;
    app::count_scan_steps();
    if (o.id == x.id) continue;
    // A (local, peer) pair is one outbound policy: in one connection only.
    const auto ol = local_cidrs_ix(s, env, o, ix), op = peer_cidrs_ix(s, o, ix);
    bool shared = false;
    for (const auto& l : locals)
      for (const auto& p : peers)
        shared |= std::find(ol.begin(), ol.end(), l) != ol.end() &&
                  std::find(op.begin(), op.end(), p) != op.end();
    if (shared) c.err("peer_cidrs", "same local and peer subnets as " + label(o));
    if (o.peer_address == x.peer_address) {
      // One ISAKMP SA per peer: connections to one peer share its PSK and IKE policy.
      if (o.psk != x.psk)
        c.err("psk", "differs from the psk of " + label(o) + ", which has the same peer " +
                         x.peer_address + " (value not shown)");
      // ... and the identities of that ISAKMP SA.
      if (o.peer_id != x.peer_id)
        c.err("peer_id", "'" + x.peer_id + "' differs from peer_id '" + o.peer_id + "' of " +
                             label(o) + ", which has the same peer " + x.peer_address);
      if (o.local_id != x.local_id)
        c.err("local_id", "'" + x.local_id + "' differs from local_id '" + o.local_id + "' of " +
                              label(o) + ", which has the same peer " + x.peer_address);
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

StateIndex build_index(const State& s, const Environment& env);

std::size_t objects(const State& s) {
  return s.ikepolicies.size() + s.ipsecpolicies.size() + s.vpnservices.size() +
         s.endpoint_groups.size() + s.ipsec_site_connections.size();
}

// Creates (id empty) or updates object `id` in `s` (the candidate state). With `ix` (BulkLoad:
// creates only), lookups go through the index, a failed create leaves `s` as it was, and
// the index learns the new object.
template <class T, class F>
Outcome upsert_into(State& s, std::vector<T> State::*member, Kind k, std::string_view id,
                    const json& fields, const Options& opt, const Environment& env, F&& read,
                    StateIndex* ix) {
  Outcome out;
  Ctx c{opt.path, {}, {}, {}};
  auto taken = [&](const std::string& v) { return ix ? ix->has(k, v) : s.contains(k, v); };
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
      else if (taken(v.get<std::string>()))
        c.err("id", shown(v) + " is already used");
      else
        obj.id = v.get<std::string>();
    }
    if (obj.id.empty()) {
      do obj.id = random_uuid();
      while (taken(obj.id));
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
  auto& vec = s.*member;
  if (update)
    *find_in(vec, id) = obj;
  else
    vec.push_back(obj);
  out.id = obj.id;
  if constexpr (std::is_same_v<T, SiteConnection>) {
    // The API's one request: an index of the candidate state (O(N)) spares check_pairs an
    // endpoint-group scan per other connection (O(N x groups)).
    std::unique_ptr<StateIndex> own;
    if (!ix) own = std::make_unique<StateIndex>(build_index(s, env));
    const StateIndex* cix = ix ? ix : own.get();
    check_connection(s, env, obj, c, cix);
    if (!c.hard) check_pairs(s, env, obj, c, cix);
    if (auto e = to_error(c)) out.error = e;
  }
  if (ix && out.error) vec.pop_back();
  if (ix && !out.error) ix->add(s, env, k, vec.size() - 1);
  out.warnings = std::move(c.warnings);
  return out;
}

// One create or update (id non-empty) of kind k, on a copy (ix null) or in place (BulkLoad).
Outcome apply(State& s, const Environment& env, Kind k, std::string_view id, const json& fields,
              const Options& opt, StateIndex* ix) {
  switch (k) {
    case Kind::kIkePolicy:
      return upsert_into(s, &State::ikepolicies, k, id, fields, opt, env,
                         [](const json& in, IkePolicy& p, bool u, Ctx& c) {
                           fields_ike(in, p, u, c);
                         }, ix);
    case Kind::kIpsecPolicy:
      return upsert_into(s, &State::ipsecpolicies, k, id, fields, opt, env,
                         [](const json& in, IpsecPolicy& p, bool u, Ctx& c) {
                           fields_ipsec(in, p, u, c);
                         }, ix);
    case Kind::kVpnService:
      return upsert_into(s, &State::vpnservices, k, id, fields, opt, env,
                         [&env](const json& in, VpnService& v, bool u, Ctx& c) {
                           fields_service(in, v, u, env, c);
                         }, ix);
    case Kind::kEndpointGroup:
      return upsert_into(s, &State::endpoint_groups, k, id, fields, opt, env,
                         [&env](const json& in, EndpointGroup& g, bool u, Ctx& c) {
                           fields_group(in, g, u, env, c);
                         }, ix);
    case Kind::kConnection:
      return upsert_into(s, &State::ipsec_site_connections, k, id, fields, opt, env,
                         [](const json& in, SiteConnection& x, bool u, Ctx& c) {
                           fields_connection(in, x, u, c);
                         }, ix);
  }
  return {};
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
  State next = s;
  app::count_scan_steps(objects(s));
  Outcome out = apply(next, env, k, id, fields, opt, nullptr);
  out.next = std::move(next);
  return out;
}

void StateIndex::add(const State& s, const Environment& env, Kind k, std::size_t pos) {
  auto id_of = [&]() -> const std::string& {
    switch (k) {
      case Kind::kIkePolicy: return s.ikepolicies[pos].id;
      case Kind::kIpsecPolicy: return s.ipsecpolicies[pos].id;
      case Kind::kVpnService: return s.vpnservices[pos].id;
      case Kind::kEndpointGroup: return s.endpoint_groups[pos].id;
      case Kind::kConnection: break;
    }
    return s.ipsec_site_connections[pos].id;
  };
  ids[static_cast<std::size_t>(k)].insert(id_of());
  if (k == Kind::kEndpointGroup) groups.emplace(s.endpoint_groups[pos].id, pos);
  if (k != Kind::kConnection) return;
  const SiteConnection& x = s.ipsec_site_connections[pos];
  for (const auto& l : local_cidrs_ix(s, env, x, this))
    for (const auto& p : peer_cidrs_ix(s, x, this)) by_pair[l + "|" + p].push_back(pos);
  by_peer[x.peer_address].push_back(pos);
}

namespace {
StateIndex build_index(const State& s, const Environment& env) {
  StateIndex ix;
  auto each = [&](Kind k, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) ix.add(s, env, k, i);
  };
  each(Kind::kIkePolicy, s.ikepolicies.size());
  each(Kind::kIpsecPolicy, s.ipsecpolicies.size());
  each(Kind::kVpnService, s.vpnservices.size());
  each(Kind::kEndpointGroup, s.endpoint_groups.size());
  each(Kind::kConnection, s.ipsec_site_connections.size());
  return ix;
}
}  // namespace

BulkLoad::BulkLoad(State& s, const Environment& env)
    : s_(s), env_(env), ix_(std::make_unique<StateIndex>(build_index(s, env))) {}
BulkLoad::~BulkLoad() = default;

Outcome BulkLoad::add(Kind k, const json& fields, const Options& opt) {
  return apply(s_, env_, k, "", fields, opt, ix_.get());
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
  const StateIndex ix = build_index(s, env);
  for (std::size_t i = 0; i < s.ipsec_site_connections.size(); ++i) {
    const auto& x = s.ipsec_site_connections[i];
    Ctx c{"ipsec_site_connections[" + std::to_string(i) + "]", {}, {}, {}};
    check_connection(s, env, x, c, &ix);
    if (!c.hard) check_pairs(s, env, x, c, &ix);
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
  return local_cidrs_ix(s, env, c, nullptr);
}

std::vector<std::string> peer_cidrs(const State& s, const SiteConnection& c) {
  return peer_cidrs_ix(s, c, nullptr);
}


}  // namespace ipsecgw::model
