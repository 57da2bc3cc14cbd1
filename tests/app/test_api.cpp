// The REST API (app/api/): Neutron's paths, bodies, filters and errors through ApiHandler, and
// one real HTTP round trip through ApiServer (cpp-httplib thread -> queue -> poll()).
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

#include "app/api/server.hpp"

namespace ipsecgw::api {
namespace {

using json = nlohmann::json;

model::Environment env() {
  model::Environment e;
  e.router_id = model::stable_uuid("router:ipsecgw");
  e.external_v4_ip = "198.51.100.1";
  e.subnets = {{model::stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"}};
  return e;
}

struct ApiTest : ::testing::Test {
  ApiHandler h{{}, env(), nullptr};
  std::vector<std::string> log;
  void SetUp() override { h.log_sink([this](const std::string& l) { log.push_back(l); }); }
  json call(const std::string& method, const std::string& path, const json& body = nullptr,
            int want = 0, std::multimap<std::string, std::string> q = {}) {
    auto r = h.handle({method, path, std::move(q), body.is_null() ? "" : body.dump(), "h:1"});
    if (want) {
      EXPECT_EQ(r.status, want) << method << " " << path << ": " << r.body;
    }
    last_status = r.status;
    return r.body.empty() ? json() : json::parse(r.body);
  }
  int last_status = 0;
};

TEST_F(ApiTest, VersionDocumentAndLookups) {
  auto v = call("GET", "/", nullptr, 200);
  EXPECT_EQ(v["versions"][0]["id"], "v2.0");
  EXPECT_EQ(v["versions"][0]["links"][0]["href"], "http://h:1/v2.0/");
  auto r = call("GET", "/v2.0/routers", nullptr, 200, {{"name", "ipsecgw"}});
  ASSERT_EQ(r["routers"].size(), 1u);
  EXPECT_EQ(r["routers"][0]["id"], env().router_id);
  EXPECT_EQ(call("GET", "/v2.0/routers", nullptr, 200, {{"name", "other"}})["routers"].size(), 0u);
  EXPECT_EQ(call("GET", "/v2.0/routers/" + env().router_id, nullptr, 200)["router"]["name"],
            "ipsecgw");
  EXPECT_EQ(call("GET", "/v2.0/routers/r1", nullptr, 404)["NeutronError"]["type"],
            "RouterNotFound");
  auto sn = call("GET", "/v2.0/subnets", nullptr, 200, {{"name", "protected"}});
  EXPECT_EQ(sn["subnets"][0]["cidr"], "10.1.0.0/24");
  EXPECT_EQ(call("GET", "/v2.0/subnets/protected", nullptr, 404)["NeutronError"]["type"],
            "SubnetNotFound");
  call("POST", "/v2.0/routers", json::object(), 405);
  call("GET", "/v2.0/nothing", nullptr, 404);
}

TEST_F(ApiTest, CrudAndClientQuirks) {
  auto ike = call("POST", "/v2.0/vpn/ikepolicies", {{"ikepolicy", {{"name", "p"}}}}, 201);
  std::string ike_id = ike["ikepolicy"]["id"];
  auto esp = call("POST", "/v2.0/vpn/ipsecpolicies", {{"ipsecpolicy", {{"name", "e"}}}}, 201);
  auto svc = call("POST", "/v2.0/vpn/vpnservices",
                  {{"vpnservice", {{"name", "v"}, {"router_id", env().router_id},
                                   {"subnet_id", env().subnets[0].id}}}}, 201);
  EXPECT_EQ(svc["vpnservice"]["status"], "DOWN");
  EXPECT_EQ(svc["vpnservice"]["external_v4_ip"], "198.51.100.1");
  // peer_cidrs as a string, mtu as a string, a partial dpd dict (what the client sends).
  auto c = call("POST", "/v2.0/vpn/ipsec-site-connections",
                {{"ipsec_site_connection",
                  {{"name", "c1"}, {"vpnservice_id", svc["vpnservice"]["id"]},
                   {"ikepolicy_id", ike_id}, {"ipsecpolicy_id", esp["ipsecpolicy"]["id"]},
                   {"peer_address", "203.0.113.5"}, {"peer_id", "203.0.113.5"},
                   {"psk", "secret"}, {"peer_cidrs", "10.9.0.0/24"}, {"mtu", "1400"},
                   {"dpd", {{"action", "hold"}}}}}}, 201)["ipsec_site_connection"];
  EXPECT_EQ(c["peer_cidrs"], json({"10.9.0.0/24"}));
  EXPECT_EQ(c["mtu"], 1400);
  EXPECT_EQ(c["dpd"], json({{"action", "hold"}, {"interval", 30}, {"timeout", 120}}));
  EXPECT_EQ(c["status"], "DOWN");
  EXPECT_EQ(c["psk"], "secret");  // Neutron shows it
  std::string cid = c["id"];
  // Filters: ?id=, ?name=, other equality filters, several values, fields=.
  auto path = "/v2.0/vpn/ipsec-site-connections";
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"id", cid}})["ipsec_site_connections"].size(), 1u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"id", "x"}})["ipsec_site_connections"].size(), 0u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"name", "c1"}})["ipsec_site_connections"].size(), 1u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"name", "c2"}})["ipsec_site_connections"].size(), 0u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"mtu", "1400"}})["ipsec_site_connections"].size(), 1u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"admin_state_up", "False"}})["ipsec_site_connections"].size(), 0u);
  EXPECT_EQ(call("GET", path, nullptr, 200, {{"name", "c2"}, {"name", "c1"}})["ipsec_site_connections"].size(), 1u);
  auto f = call("GET", path, nullptr, 200, {{"fields", "id"}, {"fields", "name"}});
  EXPECT_EQ(f["ipsec_site_connections"][0], json({{"id", cid}, {"name", "c1"}}));
  // Show, partial update, delete.
  EXPECT_EQ(call("GET", std::string(path) + "/" + cid, nullptr, 200)["ipsec_site_connection"]["name"], "c1");
  auto u = call("PUT", std::string(path) + "/" + cid,
                {{"ipsec_site_connection", {{"description", "hello"}, {"admin_state_up", false}}}}, 200);
  EXPECT_EQ(u["ipsec_site_connection"]["description"], "hello");
  EXPECT_EQ(u["ipsec_site_connection"]["mtu"], 1400);
  call("PUT", "/v2.0/vpn/ikepolicies/" + ike_id, {{"ikepolicy", json::object()}}, 200);
  // Errors: NeutronError bodies with 400 / 404 / 409.
  auto e = call("POST", "/v2.0/vpn/ikepolicies", {{"ikepolicy", {{"pfs", "group1"}}}}, 400);
  EXPECT_EQ(e["NeutronError"]["type"], "InvalidInput");
  EXPECT_EQ(e["NeutronError"]["message"],
            "Invalid input for operation: pfs: 'group1' is not allowed (allowed: "
            "group2|group5|group14)");
  EXPECT_EQ(e["NeutronError"]["detail"], "");
  e = call("DELETE", "/v2.0/vpn/ikepolicies/" + ike_id, nullptr, 409);
  EXPECT_EQ(e["NeutronError"]["type"], "IKEPolicyInUse");
  e = call("GET", "/v2.0/vpn/ikepolicies/nope", nullptr, 404);
  EXPECT_EQ(e["NeutronError"]["type"], "IKEPolicyNotFound");
  call("PUT", "/v2.0/vpn/ikepolicies/nope", {{"ikepolicy", json::object()}}, 404);
  call("POST", "/v2.0/vpn/ikepolicies", {{"ipsecpolicy", json::object()}}, 400);
  call("PATCH", "/v2.0/vpn/ikepolicies", json::object(), 405);
  call("DELETE", std::string(path) + "/" + cid, nullptr, 204);
  call("DELETE", "/v2.0/vpn/ikepolicies/" + ike_id, nullptr, 204);
  EXPECT_EQ(call("GET", "/v2.0/vpn/ikepolicies", nullptr, 200)["ikepolicies"].size(), 0u);
  // The log names method, path and status, never a body (bodies hold PSKs).
  for (auto& l : log) EXPECT_EQ(l.find("secret"), std::string::npos) << l;
  EXPECT_FALSE(log.empty());
}

TEST_F(ApiTest, StatusComesFromTheStatusSource) {
  call("POST", "/v2.0/vpn/ikepolicies", {{"ikepolicy", {{"name", "p"}}}}, 201);
  h.status_source([](const std::string&) { return std::string("ACTIVE"); });
  auto p = call("GET", "/v2.0/vpn/ikepolicies", nullptr, 200);
  std::string ike_id = p["ikepolicies"][0]["id"];
  auto esp = call("POST", "/v2.0/vpn/ipsecpolicies", {{"ipsecpolicy", json::object()}}, 201);
  auto svc = call("POST", "/v2.0/vpn/vpnservices",
                  {{"vpnservice", {{"router_id", env().router_id},
                                   {"subnet_id", env().subnets[0].id}}}}, 201);
  EXPECT_EQ(svc["vpnservice"]["status"], "DOWN");  // no connections yet
  call("POST", "/v2.0/vpn/ipsec-site-connections",
       {{"ipsec_site_connection",
         {{"vpnservice_id", svc["vpnservice"]["id"]}, {"ikepolicy_id", ike_id},
          {"ipsecpolicy_id", esp["ipsecpolicy"]["id"]}, {"peer_address", "203.0.113.5"},
          {"psk", "k"}, {"peer_cidrs", {"10.9.0.0/24"}}}}}, 201);
  auto v = call("GET", "/v2.0/vpn/vpnservices/" + svc["vpnservice"]["id"].get<std::string>(),
                nullptr, 200);
  EXPECT_EQ(v["vpnservice"]["status"], "ACTIVE");
}

// HTTP threads post to the queue; nothing is answered until the control thread polls.
TEST(ApiServerTest, RequestsRunOnThePollingThread) {
  ApiHandler h({}, env(), nullptr);
  std::thread::id handled_on;
  h.log_sink([&](const std::string&) { handled_on = std::this_thread::get_id(); });
  ServerOptions opt;
  opt.port = 0;
  opt.request_timeout = std::chrono::milliseconds(5000);
  ApiServer server(h, opt);
  ASSERT_TRUE(server.start().ok());
  ASSERT_GT(server.port(), 0);
  std::atomic<bool> done{false};
  int status = 0;
  std::string body;
  std::thread client([&] {
    httplib::Client cli("127.0.0.1", server.port());
    auto res = cli.Post("/v2.0/vpn/ikepolicies", R"({"ikepolicy":{"name":"p"}})",
                        "application/json");
    if (res) {
      status = res->status;
      body = res->body;
      EXPECT_FALSE(res->get_header_value("X-Openstack-Request-Id").empty());
    }
    done = true;
  });
  // Nothing happens without poll().
  for (int i = 0; i < 20 && !server.wait_for(std::chrono::milliseconds(100)); ++i) {
  }
  EXPECT_TRUE(h.state().ikepolicies.empty());
  while (!done) {
    server.poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  client.join();
  EXPECT_EQ(status, 201) << body;
  EXPECT_EQ(handled_on, std::this_thread::get_id());
  EXPECT_EQ(h.state().ikepolicies.size(), 1u);
  server.stop();
}

TEST(ApiServerTest, ParseListen) {
  ServerOptions o;
  ASSERT_TRUE(parse_listen("127.0.0.1:19696", o).ok());
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 19696);
  EXPECT_FALSE(parse_listen("127.0.0.1", o).ok());
  EXPECT_FALSE(parse_listen("127.0.0.1:70000", o).ok());
  EXPECT_FALSE(parse_listen(":80", o).ok());
}

}  // namespace
}  // namespace ipsecgw::api
