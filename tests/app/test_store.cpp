// The state file (app/model/store.*): write, reload, compare; mode 0600; a refused change leaves
// the file byte-identical; the config file's Neutron sections load into the model.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/api/handler.hpp"
#include "app/model/store.hpp"

namespace ipsecgw::model {
namespace {

using json = nlohmann::json;

Environment env() {
  Environment e;
  e.router_id = stable_uuid("router:ipsecgw");
  e.subnets = {{stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"}};
  return e;
}

std::string read(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct StoreTest : ::testing::Test {
  std::string dir, path;
  void SetUp() override {
    char tmpl[] = "/tmp/ipsecgw-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    path = dir + "/state.yaml";
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  // A state with one of everything, names that need quoting, and a duplicate name.
  State sample() {
    State s;
    auto step = [&](Kind k, const json& j) {
      auto r = create(s, env(), k, j);
      EXPECT_TRUE(r.ok()) << (r.error ? r.error->message : "");
      s = r.next;
      return r.id;
    };
    auto ike = step(Kind::kIkePolicy, {{"name", "ike: one"}, {"pfs", "group14"},
                                       {"lifetime", {{"value", 7200}}}, {"description", "d"}});
    step(Kind::kIkePolicy, {{"name", "dup"}});
    auto ike_dup = step(Kind::kIkePolicy, {{"name", "dup"}, {"auth_algorithm", "sha256"}});
    auto esp = step(Kind::kIpsecPolicy, {{"name", "esp"}, {"encryption_algorithm", "aes-256"}});
    auto svc = step(Kind::kVpnService, {{"name", "vpn1"}, {"router_id", env().router_id},
                                        {"subnet_id", env().subnets[0].id},
                                        {"tenant_id", "t1"}});
    auto peers = step(Kind::kEndpointGroup,
                      {{"name", ""}, {"type", "cidr"}, {"endpoints", {"192.168.60.0/24"}}});
    auto locals = step(Kind::kEndpointGroup, {{"name", "locals"}, {"type", "subnet"},
                                              {"endpoints", {env().subnets[0].id}}});
    step(Kind::kConnection, {{"name", "conn1"}, {"vpnservice_id", svc}, {"ikepolicy_id", ike},
                             {"ipsecpolicy_id", esp}, {"peer_address", "203.0.113.5"},
                             {"peer_cidrs", "10.9.0.0/24"}, {"psk", "p#s'k: \"x\""},
                             {"mtu", "1400"}, {"dpd", {{"action", "restart"}}},
                             {"admin_state_up", false}, {"local_id", "gw"}});
    step(Kind::kConnection, {{"name", "conn2"}, {"vpnservice_id", svc}, {"ikepolicy_id", ike_dup},
                             {"ipsecpolicy_id", esp}, {"peer_address", "203.0.113.6"},
                             {"local_ep_group_id", locals}, {"peer_ep_group_id", peers},
                             {"psk", "k2"}, {"initiator", "response-only"}});
    return s;
  }
};

TEST_F(StoreTest, WriteReloadCompare) {
  Store store(path);
  State s = sample();
  ASSERT_TRUE(store.save(s).ok());
  auto back = store.load(env());
  ASSERT_TRUE(back.ok()) << back.error() << "\n" << read(path);
  EXPECT_EQ(*back, s) << read(path);
  // Written again, the same bytes.
  std::string first = read(path);
  ASSERT_TRUE(store.save(*back).ok());
  EXPECT_EQ(read(path), first);
  // References by unique name in the config file's schema; by id where the name is ambiguous
  // or empty.
  EXPECT_NE(first.find("ikepolicy: \"ike: one\""), std::string::npos) << first;
  EXPECT_NE(first.find("ikepolicy: " + s.ipsec_site_connections[1].ikepolicy_id), std::string::npos);
  EXPECT_NE(first.find("peer_ep_group: " + s.ipsec_site_connections[1].peer_ep_group_id),
            std::string::npos);
  EXPECT_NE(first.find("local_ep_group: locals"), std::string::npos);
}

TEST_F(StoreTest, ModeIs0600AndNoTempFileLeft) {
  Store store(path);
  ASSERT_TRUE(store.save(sample()).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Even over a file that was world-readable.
  ::chmod(path.c_str(), 0644);
  ASSERT_TRUE(store.save(State{}).ok());
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(StoreTest, MissingFileIsEmptyUnwritableDirFails) {
  Store store(path);
  auto s = store.load(env());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, State{});
  Store bad(dir + "/no/such/dir/state.yaml");
  auto w = bad.save(State{});
  EXPECT_FALSE(w.ok());
  EXPECT_NE(w.error().find("cannot create a temp file"), std::string::npos);
}

// Through the API handler: a refused change writes nothing; an accepted one writes.
TEST_F(StoreTest, RefusedChangeLeavesFileByteIdentical) {
  Store store(path);
  State s = sample();
  ASSERT_TRUE(store.save(s).ok());
  const std::string before = read(path);
  api::ApiHandler h(s, env(), &store);
  int changes = 0;
  h.on_change([&](auto&, auto&, auto&) { ++changes; });
  const std::string bad_requests[][3] = {
      {"POST", "/v2.0/vpn/ikepolicies", R"({"ikepolicy":{"lifetime":{"value":30}}})"},
      {"PUT", "/v2.0/vpn/ipsec-site-connections/" + s.ipsec_site_connections[0].id,
       R"({"ipsec_site_connection":{"mtu":"9001"}})"},
      {"DELETE", "/v2.0/vpn/ipsecpolicies/" + s.ipsecpolicies[0].id, ""},
      {"POST", "/v2.0/vpn/ipsecpolicies", R"({"ipsecpolicy":{"transform_protocol":"ah"}})"},
      {"POST", "/v2.0/vpn/vpnservices", "not json"},
  };
  for (auto& b : bad_requests) {
    auto r = h.handle({b[0], b[1], {}, b[2], ""});
    EXPECT_GE(r.status, 400) << b[1];
    EXPECT_EQ(read(path), before) << b[0] << " " << b[1];
  }
  EXPECT_EQ(changes, 0);
  EXPECT_EQ(h.state(), s);
  auto r = h.handle({"PUT", "/v2.0/vpn/ipsec-site-connections/" + s.ipsec_site_connections[0].id,
                     {}, R"({"ipsec_site_connection":{"mtu":"1300"}})", ""});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(read(path), before);
  EXPECT_EQ(changes, 1);
  auto back = store.load(env());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ipsec_site_connections[0].mtu, 1300u);
}

TEST_F(StoreTest, FailedWriteChangesNothing) {
  Store store(dir + "/missing-dir/state.yaml");
  State s = sample();
  api::ApiHandler h(s, env(), &store);
  auto r = h.handle({"POST", "/v2.0/vpn/ikepolicies", {}, R"({"ikepolicy":{"name":"n"}})", ""});
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("the change was not applied"), std::string::npos);
  EXPECT_EQ(h.state(), s);
}

TEST_F(StoreTest, ConfigFileNeutronSectionsLoad) {
  // The config file's schema (docs/config.md): one vpnservice with gateway-only keys,
  // references by name, no ids.
  const char* yaml = R"(
vpnservice:
  name: gw
  subnet: 10.1.0.0/24
  ports:
    unprotected: {port: 0, address: 198.51.100.1/24}
    protected: {port: 1, address: 10.1.0.1/24}
ikepolicies:
  - name: ike1
    encryption_algorithm: aes-256
    lifetime: {units: seconds, value: 28800}
ipsecpolicies:
  - name: esp1
    pfs: group14
endpoint_groups:
  - name: peers
    endpoints: [10.2.0.0/24]
ipsec_site_connections:
  - name: site-b
    peer_address: 203.0.113.2
    peer_ep_group: peers
    psk: s3cret
    mtu: 1400
    admin_state_up: false
    dpd: {action: restart, interval: 10, timeout: 40}
    ikepolicy: ike1
    ipsecpolicy: esp1
)";
  auto s = parse_state(yaml, env());
  ASSERT_TRUE(s.ok()) << s.error();
  ASSERT_EQ(s->vpnservices.size(), 1u);
  EXPECT_EQ(s->vpnservices[0].subnet_id, env().subnets[0].id);
  ASSERT_EQ(s->ipsec_site_connections.size(), 1u);
  const auto& c = s->ipsec_site_connections[0];
  EXPECT_EQ(c.vpnservice_id, s->vpnservices[0].id);
  EXPECT_EQ(c.ikepolicy_id, s->ikepolicies[0].id);
  EXPECT_EQ(c.mtu, 1400u);
  EXPECT_FALSE(c.admin_state_up);
  EXPECT_EQ(c.dpd, (Dpd{"restart", 10, 40}));
  EXPECT_EQ(s->ikepolicies[0].lifetime.value, 28800u);
  EXPECT_EQ(local_cidrs(*s, env(), c), std::vector<std::string>{"10.1.0.0/24"});
  EXPECT_EQ(peer_cidrs(*s, c), std::vector<std::string>{"10.2.0.0/24"});
}

TEST_F(StoreTest, FileErrorsNameThePath) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const Case cases[] = {
      {"ikepolicies:\n  - name: a\n    lifetime: {value: 30}\n",
       "ikepolicies[0].lifetime.value: 30 out of range 60..86400"},
      {"ikepolicies:\n  - name: a\n    ike_version: v2\n",
       "ikepolicies[0].ike_version: 'v2' is not supported"},
      {"ipsecpolicies:\n  - name: a\n  - name: b\n    encapsulation_mode: transport\n",
       "ipsecpolicies[1].encapsulation_mode: 'transport' is not supported"},
      {"ipsec_site_connections:\n  - name: c\n    ikepolicy: nope\n",
       "ipsec_site_connections[0].ikepolicy: 'nope' is not an ikepolicy (defined: none defined)"},
      {"ipsec_site_connections:\n  - name: c\n    manual_keys: {}\n",
       "ipsec_site_connections[0].manual_keys: not supported by the API's model yet"},
      {"ikepolicies:\n  - id: 1234\n", "ikepolicies[0].id: '1234' is not a UUID"},
      {"colour: red\n", "colour: unknown key"},
      {"ikepolicies: {a: b}\n", "ikepolicies: must be a list"},
      {"ikepolicies: [\n", "YAML syntax error at line"},
  };
  for (auto& c : cases) {
    auto s = parse_state(c.yaml, env());
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_NE(s.error().find(c.error), std::string::npos) << c.yaml << " -> " << s.error();
  }
}

}  // namespace
}  // namespace ipsecgw::model
