// The desired-state model (app/model/model.*): every field's default, range and allowed values,
// unsupported values, references and in-use rules; and diff() of two states.
#include <gtest/gtest.h>

#include "app/model/diff.hpp"
#include "app/model/model.hpp"

namespace ipsecgw::model {
namespace {

using json = nlohmann::json;

Environment env() {
  Environment e;
  e.router_id = stable_uuid("router:ipsecgw");
  e.external_v4_ip = "198.51.100.1";
  e.subnets = {{stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"},
               {stable_uuid("subnet:protected2"), "protected2", "10.3.0.0/24"}};
  return e;
}

// Creates or fails the test; returns the new id and updates s.
std::string add(State& s, Kind k, const json& j) {
  auto r = create(s, env(), k, j);
  EXPECT_TRUE(r.ok()) << (r.error ? r.error->message : "");
  if (r.ok()) s = r.next;
  return r.id;
}

// The error of a create that must fail; and the state must be unchanged.
Error create_error(const State& s, Kind k, const json& j) {
  auto r = create(s, env(), k, j);
  EXPECT_FALSE(r.ok()) << j.dump();
  return r.error.value_or(Error{});
}

struct Fixture : ::testing::Test {
  State s;
  std::string ike, esp, svc, svc_nosubnet, local_group, peer_group, conn;
  void SetUp() override {
    ike = add(s, Kind::kIkePolicy, {{"name", "ike1"}});
    esp = add(s, Kind::kIpsecPolicy, {{"name", "esp1"}});
    svc = add(s, Kind::kVpnService,
              {{"name", "vpn1"}, {"router_id", env().router_id},
               {"subnet_id", env().subnets[0].id}});
    svc_nosubnet = add(s, Kind::kVpnService, {{"name", "vpn2"}, {"router_id", env().router_id}});
    local_group = add(s, Kind::kEndpointGroup,
                      {{"name", "locals"}, {"type", "subnet"},
                       {"endpoints", {env().subnets[1].id}}});
    peer_group = add(s, Kind::kEndpointGroup,
                     {{"name", "peers"}, {"type", "cidr"}, {"endpoints", {"192.168.60.0/24"}}});
    conn = add(s, Kind::kConnection, conn_fields());
  }
  json conn_fields(const std::string& name = "conn1", const std::string& peer = "203.0.113.5",
                   const std::string& cidr = "10.9.0.0/24") const {
    return {{"name", name}, {"vpnservice_id", svc}, {"ikepolicy_id", ike},
            {"ipsecpolicy_id", esp}, {"peer_address", peer}, {"peer_cidrs", cidr},
            {"psk", "secret"}};
  }
};

TEST_F(Fixture, NeutronDefaults) {
  auto* p = s.ikepolicy(ike);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->auth_algorithm, "sha1");
  EXPECT_EQ(p->encryption_algorithm, "aes-128");
  EXPECT_EQ(p->pfs, "group5");
  EXPECT_EQ(p->ike_version, "v1");
  EXPECT_EQ(p->phase1_negotiation_mode, "main");
  EXPECT_EQ(p->lifetime, (Lifetime{"seconds", 3600}));
  auto* e = s.ipsecpolicy(esp);
  EXPECT_EQ(e->transform_protocol, "esp");
  EXPECT_EQ(e->encapsulation_mode, "tunnel");
  auto* c = s.connection(conn);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->mtu, 1500u);
  EXPECT_EQ(c->initiator, "bi-directional");
  EXPECT_EQ(c->dpd, (Dpd{"hold", 30, 120}));
  EXPECT_EQ(c->peer_id, "203.0.113.5");  // default: the peer address
  EXPECT_EQ(c->peer_cidrs, std::vector<std::string>{"10.9.0.0/24"});  // a string -> a list
  EXPECT_TRUE(c->admin_state_up);
  EXPECT_EQ(c->auth_mode, "psk");
  EXPECT_EQ(c->route_mode, "static");
  EXPECT_TRUE(is_uuid(c->id));
  EXPECT_EQ(local_cidrs(s, env(), *c), std::vector<std::string>{"10.1.0.0/24"});
}

TEST_F(Fixture, PolicyFieldsAndRanges) {
  struct Case {
    json fields;
    std::string error;  // a substring of the message; empty: accepted
  };
  const Case cases[] = {
      {{{"auth_algorithm", "sha256"}}, ""},
      {{{"auth_algorithm", "md5"}}, "auth_algorithm: 'md5' is not allowed (allowed: sha1|sha256)"},
      {{{"encryption_algorithm", "aes-192"}}, ""},
      {{{"encryption_algorithm", "3des"}},
       "encryption_algorithm: '3des' is not allowed (allowed: aes-128|aes-192|aes-256)"},
      {{{"pfs", "group14"}}, ""},
      {{{"pfs", "group15"}}, "pfs: 'group15' is not allowed (allowed: group2|group5|group14)"},
      {{{"lifetime", {{"units", "seconds"}, {"value", 60}}}}, ""},
      {{{"lifetime", {{"value", 86400}}}}, ""},
      {{{"lifetime", {{"value", 59}}}}, "lifetime.value: 59 out of range 60..86400"},
      {{{"lifetime", {{"value", 86401}}}}, "lifetime.value: 86401 out of range 60..86400"},
      {{{"lifetime", {{"value", -5}}}}, "lifetime.value: -5 out of range 60..86400"},
      {{{"lifetime", {{"value", "abc"}}}}, "lifetime.value: 'abc' is not a non-negative integer"},
      {{{"lifetime", {{"units", "kilobytes"}, {"value", 3600}}}},
       "lifetime.units: 'kilobytes' is not supported (allowed: seconds; volume lifetimes"},
      {{{"lifetime", {{"color", "red"}}}}, "lifetime.color: unrecognized attribute"},
      {{{"lifetime", 5}}, "lifetime: '5' is not a dict"},
      {{{"ike_version", "v2"}},
       "ike_version: 'v2' is not supported (allowed: v1; IKEv2 is not implemented)"},
      {{{"phase1_negotiation_mode", "aggressive"}},
       "phase1_negotiation_mode: 'aggressive' is not supported (allowed: main"},
      {{{"name", std::string(256, 'x')}}, "name: 256 characters, at most 255"},
      {{{"name", 5}}, "name: '5' is not a string"},
      {{{"colour", "red"}}, "colour: unrecognized attribute"},
      {{{"status", "ACTIVE"}}, "status: attribute not allowed in POST"},
      {{{"id", random_uuid()}}, "id: attribute not allowed in POST"},
  };
  for (const auto& c : cases) {
    auto r = create(s, env(), Kind::kIkePolicy, c.fields);
    if (c.error.empty()) {
      EXPECT_TRUE(r.ok()) << c.fields.dump() << ": " << r.error->message;
    } else {
      ASSERT_FALSE(r.ok()) << c.fields.dump();
      EXPECT_EQ(r.error->kind, ErrorKind::kBadRequest);
      EXPECT_EQ(r.error->type, "InvalidInput");
      EXPECT_NE(r.error->message.find(c.error), std::string::npos)
          << c.fields.dump() << " -> " << r.error->message;
    }
  }
  // ipsec policy: its own fixed fields.
  EXPECT_NE(create_error(s, Kind::kIpsecPolicy, {{"transform_protocol", "ah"}})
                .message.find("transform_protocol: 'ah' is not supported (allowed: esp; AH"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kIpsecPolicy, {{"encapsulation_mode", "transport"}})
                .message.find("encapsulation_mode: 'transport' is not supported (allowed: tunnel"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kIpsecPolicy, {{"ike_version", "v1"}})
                .message.find("ike_version: unrecognized attribute"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kIpsecPolicy, {{"lifetime", {{"value", 30}}}})
                .message.find("lifetime.value: 30 out of range 60..86400"),
            std::string::npos);
}

TEST_F(Fixture, ConnectionFieldsAndRanges) {
  struct Case {
    json patch;
    std::string error;
  };
  const Case cases[] = {
      {{{"mtu", 576}}, ""},
      {{{"mtu", "9000"}}, ""},  // the client sends mtu as a string
      {{{"mtu", 575}}, "mtu: 575 out of range 576..9000"},  // no SA takes it
      {{{"mtu", 68}}, "mtu: 68 out of range 576..9000"},
      {{{"mtu", "9001"}}, "mtu: 9001 out of range 576..9000"},
      {{{"mtu", "big"}}, "mtu: 'big' is not a non-negative integer"},
      {{{"initiator", "response-only"}}, ""},
      {{{"initiator", "sometimes"}},
       "initiator: 'sometimes' is not allowed (allowed: bi-directional|response-only)"},
      {{{"dpd", {{"action", "restart-by-peer"}}}}, ""},
      {{{"dpd", {{"action", "maybe"}}}}, "dpd.action: 'maybe' is not allowed (allowed: hold|"},
      {{{"dpd", {{"interval", 0}}}}, "dpd.interval: 0 out of range 1..86400"},
      {{{"dpd", {{"timeout", 86401}}}}, "dpd.timeout: 86401 out of range 1..86400"},
      {{{"dpd", {{"interval", 120}}}}, "dpd.timeout: 120 must be greater than dpd.interval (120)"},
      {{{"dpd", {{"interval", 200}, {"timeout", 300}}}}, ""},
      {{{"auth_mode", "cert"}}, "auth_mode: 'cert' is not supported (allowed: psk"},
      {{{"route_mode", "dynamic"}}, "route_mode: 'dynamic' is not supported (allowed: static"},
      {{{"admin_state_up", "False"}}, ""},
      {{{"admin_state_up", "perhaps"}}, "admin_state_up: 'perhaps' is not a boolean"},
      {{{"peer_address", "peer.example.com"}},
       "peer_address: 'peer.example.com' is not an IPv4 address (FQDN and IPv6 peers are not "
       "supported)"},
      {{{"peer_address", "198.51.100.1"}}, "peer_address: 198.51.100.1 is our own address"},
      {{{"peer_cidrs", "10.9.0.1/24"}}, "peer_cidrs[0]: '10.9.0.1/24' is not a valid CIDR"},
      {{{"peer_cidrs", {"10.60.0.0/24", "10.61.0.0/24"}}}, ""},  // a CHILD SA per pair
      {{{"peer_cidrs", "10.1.0.0/16"}}, "peer_cidrs: 10.1.0.0/16 overlaps the local subnet 10.1.0.0/24"},
      {{{"peer_cidrs", json::array()}}, "peer_cidrs: required (or peer_ep_group_id"},
      {{{"psk", ""}}, "psk: must not be empty"},
      {{{"psk", 1234}}, "psk: must be a string (value not shown)"},
      {{{"psk", std::string(256, 'k')}}, "psk: 256 characters, at most 255 (value not shown)"},
      {{{"peer_id", ""}}, "peer_id: must not be empty"},
  };
  for (const auto& c : cases) {
    json f = conn_fields("c", "203.0.113.50", "10.50.0.0/24");
    f.update(c.patch);
    auto r = create(s, env(), Kind::kConnection, f);
    if (c.error.empty()) {
      EXPECT_TRUE(r.ok()) << c.patch.dump() << ": " << r.error->message;
    } else {
      ASSERT_FALSE(r.ok()) << c.patch.dump();
      EXPECT_EQ(r.error->kind, ErrorKind::kBadRequest);
      EXPECT_NE(r.error->message.find(c.error), std::string::npos)
          << c.patch.dump() << " -> " << r.error->message;
      EXPECT_EQ(r.error->message.find("secret"), std::string::npos);
    }
  }
  for (const char* required : {"peer_address", "psk", "vpnservice_id", "ikepolicy_id",
                               "ipsecpolicy_id"}) {
    json f = conn_fields("c", "203.0.113.50", "10.50.0.0/24");
    f.erase(required);
    EXPECT_NE(create_error(s, Kind::kConnection, f).message.find(std::string(required) +
                                                                  ": required"),
              std::string::npos)
        << required;
  }
}

TEST_F(Fixture, ConnectionEndpointGroups) {
  json f = conn_fields("g", "203.0.113.60");
  f.erase("peer_cidrs");
  f["vpnservice_id"] = svc_nosubnet;
  f["local_ep_group_id"] = local_group;
  f["peer_ep_group_id"] = peer_group;
  auto id = add(s, Kind::kConnection, f);
  auto* c = s.connection(id);
  ASSERT_TRUE(c);
  EXPECT_EQ(local_cidrs(s, env(), *c), std::vector<std::string>{"10.3.0.0/24"});
  EXPECT_EQ(peer_cidrs(s, *c), std::vector<std::string>{"192.168.60.0/24"});
  // Both peer_cidrs and a peer group; a subnet-type group on the peer side; no local side.
  json both = f;
  both["name"] = "h";
  both["peer_cidrs"] = "10.70.0.0/24";
  EXPECT_NE(create_error(s, Kind::kConnection, both)
                .message.find("peer_ep_group_id: give either peer_cidrs or peer_ep_group_id"),
            std::string::npos);
  json subnet_peer = f;
  subnet_peer["peer_ep_group_id"] = local_group;
  EXPECT_NE(create_error(s, Kind::kConnection, subnet_peer)
                .message.find("the peer side needs type cidr"),
            std::string::npos);
  json no_local = f;
  no_local.erase("local_ep_group_id");
  EXPECT_NE(create_error(s, Kind::kConnection, no_local)
                .message.find("local_ep_group_id: required when the vpnservice has no subnet_id"),
            std::string::npos);
  // Same selectors as an existing connection.
  json dup = f;
  dup["peer_address"] = "203.0.113.61";
  EXPECT_NE(create_error(s, Kind::kConnection, dup).message.find("same local and peer subnets"),
            std::string::npos);
}

TEST_F(Fixture, EndpointGroupAndServiceFields) {
  EXPECT_NE(create_error(s, Kind::kEndpointGroup, {{"type", "router"}, {"endpoints", {"x"}}})
                .message.find("type: 'router' is not supported"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kEndpointGroup, {{"type", "cidr"}, {"endpoints", json::array()}})
                .message.find("endpoints: must not be empty"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kEndpointGroup, {{"type", "subnet"}, {"endpoints", {"nope"}}})
                .message.find("endpoints[0]: 'nope' is not a subnet of this gateway"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kEndpointGroup,
                         {{"type", "cidr"}, {"endpoints", {"10.0.0.0/8", "10.0.0.0/8"}}})
                .message.find("endpoints[1]: '10.0.0.0/8' is listed twice"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kEndpointGroup, {{"endpoints", {"10.0.0.0/8"}}})
                .message.find("type: required"),
            std::string::npos);
  auto e = create_error(s, Kind::kVpnService, {{"router_id", random_uuid()}});
  EXPECT_EQ(e.kind, ErrorKind::kNotFound);
  EXPECT_EQ(e.type, "RouterNotFound");
  e = create_error(s, Kind::kVpnService, {{"router_id", env().router_id}, {"subnet_id", "x"}});
  EXPECT_EQ(e.type, "SubnetNotFound");
  EXPECT_NE(create_error(s, Kind::kVpnService, {{"name", "x"}}).message.find("router_id: required"),
            std::string::npos);
  EXPECT_NE(create_error(s, Kind::kVpnService,
                         {{"router_id", env().router_id}, {"flavor_id", "f"}})
                .message.find("flavor_id: 'f' is not supported"),
            std::string::npos);
}

TEST_F(Fixture, UpdatesArePartialAndReadOnlyFieldsRefused) {
  auto r = update(s, env(), Kind::kConnection, conn, {{"dpd", {{"action", "restart"}}}});
  ASSERT_TRUE(r.ok()) << r.error->message;
  // A partial dpd dict keeps the current values of the keys it leaves out.
  EXPECT_EQ(r.next.connection(conn)->dpd, (Dpd{"restart", 30, 120}));
  r = update(r.next, env(), Kind::kConnection, conn, {{"dpd", {{"interval", 60}}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.next.connection(conn)->dpd, (Dpd{"restart", 60, 120}));
  // peer_id keeps its value when peer_address changes (as Neutron).
  r = update(r.next, env(), Kind::kConnection, conn, {{"peer_address", "203.0.113.7"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.next.connection(conn)->peer_address, "203.0.113.7");
  EXPECT_EQ(r.next.connection(conn)->peer_id, "203.0.113.5");
  for (const char* ro : {"vpnservice_id", "ikepolicy_id", "ipsecpolicy_id", "id", "tenant_id"}) {
    auto u = update(s, env(), Kind::kConnection, conn, {{ro, "x"}});
    ASSERT_FALSE(u.ok()) << ro;
    EXPECT_NE(u.error->message.find(std::string(ro) + ": cannot update read-only attribute"),
              std::string::npos);
  }
  auto u = update(s, env(), Kind::kEndpointGroup, peer_group, {{"endpoints", {"10.0.0.0/8"}}});
  EXPECT_FALSE(u.ok());
  u = update(s, env(), Kind::kVpnService, svc, {{"subnet_id", nullptr}});
  EXPECT_FALSE(u.ok());
  u = update(s, env(), Kind::kIkePolicy, ike, {{"lifetime", {{"value", 10}}}});
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error->message.find("lifetime.value: 10 out of range 60..86400"), std::string::npos);
  u = update(s, env(), Kind::kIkePolicy, random_uuid(), json::object());
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error->kind, ErrorKind::kNotFound);
  EXPECT_EQ(u.error->type, "IKEPolicyNotFound");
}

TEST_F(Fixture, ReferencesAndInUse) {
  json f = conn_fields("x", "203.0.113.80", "10.80.0.0/24");
  f["ikepolicy_id"] = random_uuid();
  auto e = create_error(s, Kind::kConnection, f);
  EXPECT_EQ(e.kind, ErrorKind::kNotFound);
  EXPECT_EQ(e.type, "IKEPolicyNotFound");
  f = conn_fields("x", "203.0.113.80", "10.80.0.0/24");
  f["peer_ep_group_id"] = random_uuid();
  f.erase("peer_cidrs");
  EXPECT_EQ(create_error(s, Kind::kConnection, f).type, "VPNEndpointGroupNotFound");

  const std::pair<Kind, std::string> in_use[] = {{Kind::kIkePolicy, ike},
                                                 {Kind::kIpsecPolicy, esp},
                                                 {Kind::kVpnService, svc}};
  for (auto& [k, id] : in_use) {
    auto r = remove(s, k, id);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error->kind, ErrorKind::kConflict);
    EXPECT_EQ(r.error->type, info(k).in_use);
    EXPECT_NE(r.error->message.find("is in use by existing IPsecSiteConnection"), std::string::npos);
  }
  // An endpoint group is in use too; unused objects go.
  f = conn_fields("g", "203.0.113.90");
  f.erase("peer_cidrs");
  f["peer_ep_group_id"] = peer_group;
  add(s, Kind::kConnection, f);
  EXPECT_EQ(remove(s, Kind::kEndpointGroup, peer_group).error->kind, ErrorKind::kConflict);
  EXPECT_TRUE(remove(s, Kind::kEndpointGroup, local_group).ok());
  EXPECT_TRUE(remove(s, Kind::kVpnService, svc_nosubnet).ok());
  auto r = remove(s, Kind::kConnection, conn);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.next.connection(conn), nullptr);
  EXPECT_NE(s.connection(conn), nullptr);  // the input state is untouched
  EXPECT_EQ(remove(s, Kind::kConnection, random_uuid()).error->type, "IPsecSiteConnectionNotFound");
}

// The same PSK rule as the YAML file (app/model/rules.hpp): empty refused naming the field,
// shorter than 16 bytes accepted with a warning that names the field and never the key.
TEST_F(Fixture, ShortPskIsWarnedEmptyRefused) {
  auto f = conn_fields("weak", "203.0.113.77", "10.77.0.0/24");
  f["psk"] = "fifteen-bytes!!";
  auto r = create(s, env(), Kind::kConnection, f);
  ASSERT_TRUE(r.ok()) << r.error->message;
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].rfind("psk: 15 bytes, shorter than the recommended 16", 0), 0u)
      << r.warnings[0];
  EXPECT_EQ(r.warnings[0].find("fifteen"), std::string::npos);
  f["psk"] = "sixteen-bytes!!!";
  EXPECT_TRUE(create(s, env(), Kind::kConnection, f).warnings.empty());
  // An update that sets a short one warns too.
  auto u = update(s, env(), Kind::kConnection, conn, {{"psk", "short"}});
  ASSERT_TRUE(u.ok());
  ASSERT_EQ(u.warnings.size(), 1u);
  f["psk"] = "";
  EXPECT_NE(create_error(s, Kind::kConnection, f).message.find("psk: must not be empty"),
            std::string::npos);
}

TEST_F(Fixture, OnePskAndIkePolicyPerPeer) {
  // Same peer, other subnets, same psk and policy: accepted (several tunnels per peer).
  add(s, Kind::kConnection, conn_fields("conn2", "203.0.113.5", "10.10.0.0/24"));
  json f = conn_fields("conn3", "203.0.113.5", "10.11.0.0/24");
  f["psk"] = "other";
  auto e = create_error(s, Kind::kConnection, f);
  EXPECT_NE(e.message.find("psk: differs from the psk of ipsec_site_connection 'conn1'"),
            std::string::npos) << e.message;
  EXPECT_EQ(e.message.find("other"), std::string::npos);
  auto ike2 = add(s, Kind::kIkePolicy, {{"name", "ike2"}, {"pfs", "group14"}});
  f = conn_fields("conn3", "203.0.113.5", "10.11.0.0/24");
  f["ikepolicy_id"] = ike2;
  EXPECT_NE(create_error(s, Kind::kConnection, f).message.find("differs from ikepolicy"),
            std::string::npos);
  // An equal policy under another id is fine.
  auto ike3 = add(s, Kind::kIkePolicy, {{"name", "ike3"}});
  f["ikepolicy_id"] = ike3;
  EXPECT_TRUE(create(s, env(), Kind::kConnection, f).ok());
  // The identities of the shared ISAKMP SA too (issue #9).
  f = conn_fields("conn3", "203.0.113.5", "10.11.0.0/24");
  f["peer_id"] = "peer.example.com";
  EXPECT_NE(create_error(s, Kind::kConnection, f).message.find("differs from peer_id"),
            std::string::npos);
  f = conn_fields("conn3", "203.0.113.5", "10.11.0.0/24");
  f["local_id"] = "gw.example.com";
  EXPECT_NE(create_error(s, Kind::kConnection, f).message.find("local_id: 'gw.example.com' "
                                                               "differs from local_id '' of"),
            std::string::npos);
}

TEST_F(Fixture, JsonHasNeutronFields) {
  json c = to_json(s, Kind::kConnection, conn);
  for (const char* k : {"id", "name", "description", "tenant_id", "project_id", "peer_address",
                        "peer_id", "local_id", "peer_cidrs", "local_ep_group_id",
                        "peer_ep_group_id", "vpnservice_id", "ikepolicy_id", "ipsecpolicy_id",
                        "psk", "mtu", "initiator", "dpd", "auth_mode", "route_mode",
                        "admin_state_up"})
    EXPECT_TRUE(c.contains(k)) << k;
  EXPECT_TRUE(c["local_ep_group_id"].is_null());
  json p = to_json(s, Kind::kIkePolicy, ike);
  EXPECT_EQ(p["lifetime"], json({{"units", "seconds"}, {"value", 3600}}));
  EXPECT_TRUE(to_json(s, Kind::kIkePolicy, "nope").is_null());
  EXPECT_EQ(stable_uuid("a"), stable_uuid("a"));
  EXPECT_NE(stable_uuid("a"), stable_uuid("b"));
  EXPECT_TRUE(is_uuid(stable_uuid("a")));
  EXPECT_FALSE(is_uuid("not-a-uuid"));
}

// ---- diff

std::vector<ConnectionChange> changes_after(const State& s, Kind k, const std::string& id,
                                            const json& patch) {
  auto r = update(s, env(), k, id, patch);
  EXPECT_TRUE(r.ok()) << (r.error ? r.error->message : "");
  return diff(s, r.next, env());
}

TEST_F(Fixture, DiffCreateDelete) {
  State empty;
  auto d = diff(empty, s, env());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, ConnectionChange::Kind::kCreated);
  EXPECT_EQ(d[0].id, conn);
  EXPECT_TRUE(d[0].now_enabled);
  d = diff(s, empty, env());
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, ConnectionChange::Kind::kDeleted);
  EXPECT_TRUE(d[0].was_enabled);
  EXPECT_TRUE(diff(s, s, env()).empty());
}

TEST_F(Fixture, DiffSaFieldsRenegotiate) {
  struct Case {
    json patch;
    std::vector<std::string> changed;
  };
  const Case cases[] = {
      {{{"psk", "new-secret"}}, {"psk"}},
      {{{"peer_address", "203.0.113.6"}}, {"peer_address"}},
      {{{"peer_id", "peer.example.com"}}, {"peer_id"}},
      {{{"local_id", "gw.example.com"}}, {"local_id"}},
      {{{"peer_cidrs", "10.20.0.0/24"}}, {"peer_cidrs"}},
  };
  for (auto& c : cases) {
    auto d = changes_after(s, Kind::kConnection, conn, c.patch);
    ASSERT_EQ(d.size(), 1u) << c.patch.dump();
    EXPECT_EQ(d[0].kind, ConnectionChange::Kind::kUpdated);
    EXPECT_TRUE(d[0].sa_changed) << c.patch.dump();
    EXPECT_EQ(d[0].changed, c.changed) << c.patch.dump();
  }
}

TEST_F(Fixture, DiffInPlaceFieldsDoNotRenegotiate) {
  struct Case {
    json patch;
    std::string changed;
  };
  const Case cases[] = {
      {{{"name", "renamed"}}, "name"},
      {{{"description", "d"}}, "description"},
      {{{"dpd", {{"action", "restart"}}}}, "dpd"},
      {{{"mtu", 1400}}, "mtu"},
      {{{"initiator", "response-only"}}, "initiator"},
  };
  for (auto& c : cases) {
    auto d = changes_after(s, Kind::kConnection, conn, c.patch);
    ASSERT_EQ(d.size(), 1u) << c.patch.dump();
    EXPECT_FALSE(d[0].sa_changed) << c.patch.dump();
    EXPECT_EQ(d[0].changed, std::vector<std::string>{c.changed});
    EXPECT_TRUE(d[0].was_enabled && d[0].now_enabled);
  }
  // Setting a field to its current value is no change at all.
  EXPECT_TRUE(changes_after(s, Kind::kConnection, conn, {{"mtu", 1500}}).empty());
}

TEST_F(Fixture, DiffEnableDisable) {
  auto d = changes_after(s, Kind::kConnection, conn, {{"admin_state_up", false}});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_TRUE(d[0].was_enabled);
  EXPECT_FALSE(d[0].now_enabled);
  EXPECT_EQ(d[0].changed, std::vector<std::string>{"admin_state_up"});
  // The vpnservice's admin state disables its connections, and only those.
  add(s, Kind::kConnection,
      {{"name", "other"}, {"vpnservice_id", svc_nosubnet}, {"ikepolicy_id", ike},
       {"ipsecpolicy_id", esp}, {"peer_address", "203.0.113.99"}, {"psk", "p"},
       {"local_ep_group_id", local_group}, {"peer_ep_group_id", peer_group}});
  d = changes_after(s, Kind::kVpnService, svc, {{"admin_state_up", false}});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].id, conn);
  EXPECT_FALSE(d[0].now_enabled);
  EXPECT_FALSE(d[0].sa_changed);
  EXPECT_EQ(d[0].changed, std::vector<std::string>{"vpnservice.admin_state_up"});
}

TEST_F(Fixture, DiffPolicyChangeTouchesExactlyItsConnections) {
  auto ike2 = add(s, Kind::kIkePolicy, {{"name", "ike2"}});
  auto esp2 = add(s, Kind::kIpsecPolicy, {{"name", "esp2"}});
  json f = conn_fields("conn2", "203.0.113.20", "10.20.0.0/24");
  f["ikepolicy_id"] = ike2;
  f["ipsecpolicy_id"] = esp2;
  auto conn2 = add(s, Kind::kConnection, f);
  add(s, Kind::kConnection, conn_fields("conn3", "203.0.113.5", "10.30.0.0/24"));  // uses ike

  auto d = changes_after(s, Kind::kIkePolicy, ike2, {{"lifetime", {{"value", 7200}}}});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].id, conn2);
  EXPECT_TRUE(d[0].sa_changed);
  EXPECT_EQ(d[0].changed, std::vector<std::string>{"ikepolicy.lifetime"});

  d = changes_after(s, Kind::kIkePolicy, ike, {{"encryption_algorithm", "aes-256"}});
  ASSERT_EQ(d.size(), 2u);  // conn1 and conn3, not conn2
  for (auto& c : d) {
    EXPECT_NE(c.id, conn2);
    EXPECT_TRUE(c.sa_changed);
    EXPECT_EQ(c.changed, std::vector<std::string>{"ikepolicy.encryption_algorithm"});
  }
  d = changes_after(s, Kind::kIpsecPolicy, esp2, {{"pfs", "group14"}, {"auth_algorithm", "sha256"}});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].changed, (std::vector<std::string>{"ipsecpolicy.auth_algorithm", "ipsecpolicy.pfs"}));
  // A policy's name or description is not a connection change.
  EXPECT_TRUE(changes_after(s, Kind::kIkePolicy, ike, {{"name", "n"}, {"description", "d"}}).empty());
}

}  // namespace
}  // namespace ipsecgw::model
