// The desired-state model: the five Neutron VPNaaS v2.0 resources (ikepolicy, ipsecpolicy,
// vpnservice, endpoint_group, ipsec_site_connection) as ipsecgw should run them, shared by the
// REST API (app/api/) and the state file (app/model/store.*).
//
// Pure data and pure functions: no DPDK, no YAML, no HTTP. Fields are kept in Neutron's JSON
// representation (names, strings, numbers); nlohmann::json is only the neutral container for a
// create/update request's fields, whoever parsed them (the API's JSON body or the YAML file).
//
// Every change is computed on a copy of the state: create()/update()/remove() return the
// candidate next state, or an error and nothing else. Nothing changes until the caller commits
// (after writing it to the store). diff.hpp turns (old, new) into per-connection changes.
//
// Validation: app/model/rules.hpp (shared with app/config.cpp). Errors name the field and what
// is allowed, e.g. "lifetime.value: 30 out of range 60..86400"; a PSK never appears in them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ipsecgw::model {

using json = nlohmann::json;

enum class Kind : std::uint8_t { kIkePolicy, kIpsecPolicy, kVpnService, kEndpointGroup, kConnection };
inline constexpr Kind kAllKinds[] = {Kind::kIkePolicy, Kind::kIpsecPolicy, Kind::kVpnService,
                                     Kind::kEndpointGroup, Kind::kConnection};

struct KindInfo {
  std::string_view singular;    // JSON wrapper key: "ikepolicy"
  std::string_view plural;      // JSON list key: "ikepolicies"
  std::string_view collection;  // URL segment under /v2.0/vpn/: "ikepolicies"
  std::string_view neutron;     // Neutron's class name in error types: "IKEPolicy"
  std::string_view not_found;   // Neutron's NotFound error type
  std::string_view in_use;      // Neutron's InUse error type ("" if it cannot be in use)
};
const KindInfo& info(Kind k) noexcept;
std::optional<Kind> kind_from_collection(std::string_view collection) noexcept;

struct Lifetime {
  std::string units = "seconds";
  std::uint32_t value = 3600;
  bool operator==(const Lifetime&) const = default;
};

struct IkePolicy {
  std::string id, tenant_id, name, description;
  std::string auth_algorithm = "sha1";
  std::string encryption_algorithm = "aes-128";
  std::string ike_version = "v1";
  std::string phase1_negotiation_mode = "main";
  std::string pfs = "group5";
  Lifetime lifetime;
  bool operator==(const IkePolicy&) const = default;
};

struct IpsecPolicy {
  std::string id, tenant_id, name, description;
  std::string transform_protocol = "esp";
  std::string encapsulation_mode = "tunnel";
  std::string auth_algorithm = "sha1";
  std::string encryption_algorithm = "aes-128";
  std::string pfs = "group5";
  Lifetime lifetime;
  bool operator==(const IpsecPolicy&) const = default;
};

struct VpnService {
  std::string id, tenant_id, name, description;
  std::string router_id;  // the gateway's router (Environment::router)
  std::string subnet_id;  // "" = none (connections then use endpoint groups)
  bool admin_state_up = true;
  bool operator==(const VpnService&) const = default;
};

struct EndpointGroup {
  std::string id, tenant_id, name, description;
  std::string type = "cidr";            // cidr, or subnet (ids of Environment::subnets)
  std::vector<std::string> endpoints;  // CIDRs or subnet ids, as given
  bool operator==(const EndpointGroup&) const = default;
};

struct Dpd {
  std::string action = "hold";
  std::uint32_t interval = 30, timeout = 120;
  bool operator==(const Dpd&) const = default;
};

struct SiteConnection {
  std::string id, tenant_id, name, description;
  std::string vpnservice_id, ikepolicy_id, ipsecpolicy_id;
  std::string local_ep_group_id, peer_ep_group_id;  // "" = none
  std::string peer_address;             // IPv4, canonical text
  std::string peer_id;                  // default: peer_address
  std::string local_id;                 // "" = our address
  std::vector<std::string> peer_cidrs;  // canonical CIDRs; empty when peer_ep_group_id is set
  std::string psk;                      // never logged, never in an error
  std::uint32_t mtu = 1500;
  std::string initiator = "bi-directional";
  Dpd dpd;
  std::string auth_mode = "psk";
  std::string route_mode = "static";
  bool admin_state_up = true;
  bool operator==(const SiteConnection&) const = default;
};

struct State {
  std::vector<IkePolicy> ikepolicies;
  std::vector<IpsecPolicy> ipsecpolicies;
  std::vector<VpnService> vpnservices;
  std::vector<EndpointGroup> endpoint_groups;
  std::vector<SiteConnection> ipsec_site_connections;
  bool operator==(const State&) const = default;

  const IkePolicy* ikepolicy(std::string_view id) const;
  const IpsecPolicy* ipsecpolicy(std::string_view id) const;
  const VpnService* vpnservice(std::string_view id) const;
  const EndpointGroup* endpoint_group(std::string_view id) const;
  const SiteConnection* connection(std::string_view id) const;
  bool contains(Kind k, std::string_view id) const;
};

// What the gateway is, for the lookups Neutron does elsewhere: the one router (the gateway
// itself) and the subnets it protects. Not stored; given by whoever runs the model.
struct Subnet {
  std::string id, name, cidr;
};
struct Environment {
  std::string router_id;
  std::string router_name = "ipsecgw";
  std::string external_v4_ip;  // our public address ("" = unknown); a peer may not use it
  std::vector<Subnet> subnets;
  const Subnet* subnet(std::string_view id) const;
};

// A deterministic UUID (same text, same id) for the router and subnets, so they keep their ids
// across restarts; and a random (version 4) UUID for new objects.
std::string stable_uuid(std::string_view seed);
std::string random_uuid();
bool is_uuid(std::string_view s);

enum class ErrorKind : std::uint8_t { kBadRequest = 0, kNotFound, kConflict };
struct Error {
  ErrorKind kind = ErrorKind::kBadRequest;
  std::string type;     // Neutron's error type: InvalidInput, IKEPolicyNotFound, ...
  std::string message;  // one problem per line; each starts with the field path
};

struct Outcome {
  std::optional<Error> error;  // set: nothing changed
  State next;                  // the candidate state (valid when !error)
  std::string id;              // the object created/updated/removed
  std::vector<std::string> warnings;  // accepted but unwise (a short PSK), "<field>: <why>"
  bool ok() const { return !error.has_value(); }
};

struct Options {
  bool allow_id = false;  // the state file: keep the stored id
  std::string path;       // prefix of error paths ("ikepolicies[0]" in the file; "" in the API)
};

// Create/update/delete one object. `fields` is the object's JSON (the API body's inner object,
// or a state file entry). Partial dicts (dpd, lifetime) are completed with the defaults on
// create and with the current values on update, as Neutron does.
Outcome create(const State& s, const Environment& env, Kind k, const json& fields,
               const Options& opt = {});
Outcome update(const State& s, const Environment& env, Kind k, std::string_view id,
               const json& fields, const Options& opt = {});
Outcome remove(const State& s, Kind k, std::string_view id);

struct StateIndex;  // model.cpp: ids, endpoint groups, connections by subnet pair and peer

// Many creates in a row (the state file and the config file at start): create() in place, on
// one state, with the same checks, but no copy of the state per object and the checks against
// the other connections through hash maps (those that share a subnet pair or the peer), so N
// objects cost O(N), not O(N^2). The state must not change meanwhile but through add().
class BulkLoad {
 public:
  BulkLoad(State& s, const Environment& env);
  ~BulkLoad();
  BulkLoad(const BulkLoad&) = delete;
  BulkLoad& operator=(const BulkLoad&) = delete;
  // As create(s, env, k, fields, opt), but s gains the object (or stays as it was: error).
  // The Outcome's `next` is left empty.
  Outcome add(Kind k, const json& fields, const Options& opt);

 private:
  State& s_;
  const Environment& env_;
  std::unique_ptr<StateIndex> ix_;
};

// Whole-state checks (references, in-use, selectors, one PSK/ike policy per peer). create,
// update and remove call it on their candidate; the state file loader too.
std::optional<Error> validate(const State& s, const Environment& env);

// Neutron's JSON object of one resource (the API's show; status fields are the caller's), and
// those of a whole collection in the State's order, in one walk (the API's list: a lookup per
// object would make a list of N cost N^2).
json to_json(const State& s, Kind k, std::string_view id);
std::vector<json> to_json_all(const State& s, Kind k);

// The CIDRs a connection joins, resolved through its endpoint groups / vpnservice subnet.
std::vector<std::string> local_cidrs(const State& s, const Environment& env,
                                     const SiteConnection& c);
std::vector<std::string> peer_cidrs(const State& s, const SiteConnection& c);

}  // namespace ipsecgw::model
