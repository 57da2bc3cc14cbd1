// Start-up with many connections (issue #12): the configuration loader (app/config.cpp) and the
// desired-state model's loader (app/model/store.cpp parse_state) must do work linear in the
// number of connections. Counted, not timed: app::scan_steps() counts every object a lookup or
// cross-check visits and every object a state copy duplicates; with a scan per connection
// over all the others (as before) 1,000 connections cost ~500 steps each.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "app/api/handler.hpp"
#include "app/config.hpp"
#include "app/model/diff.hpp"
#include "app/model/store.hpp"
#include "app/reconciler.hpp"
#include "app/scan_steps.hpp"
#include "tests/app/ike_stubs.hpp"

namespace ipsecgw::app {
namespace {

constexpr std::size_t kN = 1000;
constexpr double kMaxStepsPerConnection = 20;

// N connections, each with its own peer, local endpoint group and peer subnet (as
// scripts/lib/gen_connections.py writes them); manual keys or IKE (PSK).
std::string many_connections(std::size_t n, bool manual) {
  std::string t =
      "vpnservice:\n"
      "  ports:\n"
      "    unprotected: {port: 0, address: 192.0.2.1/24, gateway: 192.0.2.254}\n"
      "    protected: {port: 1, address: 10.0.0.1/24}\n"
      "dataplane: {sa_capacity: 65536}\n"
      "ikepolicies:\n  - {name: ike}\n"
      "ipsecpolicies:\n  - {name: esp}\n"
      "endpoint_groups:\n";
  char line[512];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(line, sizeof line,
                  "  - {name: g%zu, type: cidr, endpoints: [10.%zu.%zu.0/24]}\n", i,
                  64 + i / 256, i % 256);
    t += line;
  }
  t += "ipsec_site_connections:\n";
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(line, sizeof line,
                  "  - {name: c%zu, peer_address: 198.18.%zu.%zu, peer_cidrs: [10.%zu.%zu.0/24],"
                  " local_ep_group: g%zu, ipsecpolicy: esp, ",
                  i, (i + 1) / 256, (i + 1) % 256, 128 + i / 256, i % 256, i);
    t += line;
    if (manual)
      std::snprintf(line, sizeof line,
                    "manual_keys: {inbound: {spi: %zu, encryption_key: %s, auth_key: %s}, "
                    "outbound: {spi: %zu, encryption_key: %s, auth_key: %s}}}\n",
                    0x10000 + i, "000102030405060708090a0b0c0d0e0f",
                    "000102030405060708090a0b0c0d0e0f10111213", 0x20000 + i,
                    "101112131415161718191a1b1c1d1e1f", "101112131415161718191a1b1c1d1e1f20212223");
    else
      std::snprintf(line, sizeof line, "ikepolicy: ike, psk: a-long-enough-secret-%zu}\n", i);
    t += line;
  }
  return t;
}

model::Environment environment() {
  model::Environment e;
  e.router_id = model::stable_uuid("router:ipsecgw");
  e.external_v4_ip = "192.0.2.1";
  e.subnets = {{model::stable_uuid("subnet:protected"), "protected", "10.0.0.0/24"}};
  return e;
}

template <class F>
double steps_per_connection(F&& load) {
  const std::uint64_t before = scan_steps();
  load();
  return double(scan_steps() - before) / kN;
}

TEST(Scaling, ConfigLoadIsLinear) {
  for (bool manual : {true, false}) {
    const std::string text = many_connections(kN, manual);
    const double per = steps_per_connection([&] {
      auto cfg = parse_config(text);
      ASSERT_TRUE(cfg.ok()) << cfg.error().substr(0, 500);
      EXPECT_EQ(cfg->ipsec_site_connections.size(), kN);
    });
    EXPECT_LE(per, kMaxStepsPerConnection) << (manual ? "manual keys" : "IKE");
  }
}

TEST(Scaling, ModelLoadIsLinear) {
  for (bool manual : {true, false}) {
    const std::string text = many_connections(kN, manual);
    const double per = steps_per_connection([&] {
      auto s = model::parse_state(text, environment(), /*skip_manual_keys=*/true);
      ASSERT_TRUE(s.ok()) << s.error().substr(0, 500);
      EXPECT_EQ(s->endpoint_groups.size(), kN);
      EXPECT_EQ(s->ipsec_site_connections.size(), manual ? 0 : kN);
    });
    EXPECT_LE(per, kMaxStepsPerConnection) << (manual ? "manual keys" : "IKE");
  }
}

// The diff between two states of N connections (every connection's PSK changed, so
// each one an update with its endpoint groups and policies looked up on both sides), from the
// empty state and to it: one lookup per object, not a walk over the others (StateLookup).
TEST(Scaling, DiffIsLinear) {
  const std::string text = many_connections(kN, false);
  auto a = model::parse_state(text, environment(), true);
  ASSERT_TRUE(a.ok());
  model::State b = *a;
  for (auto& c : b.ipsec_site_connections) c.psk += "-changed";
  std::vector<model::ConnectionChange> changes;
  double per = steps_per_connection([&] { changes = model::diff(*a, b, environment()); });
  EXPECT_EQ(changes.size(), kN);
  EXPECT_LE(per, kMaxStepsPerConnection) << "update";
  per = steps_per_connection([&] { changes = model::diff(model::State{}, b, environment()); });
  EXPECT_EQ(changes.size(), kN);
  EXPECT_LE(per, kMaxStepsPerConnection) << "create";
  per = steps_per_connection([&] { changes = model::diff(b, model::State{}, environment()); });
  EXPECT_EQ(changes.size(), kN);
  EXPECT_LE(per, kMaxStepsPerConnection) << "delete";
}

using test::NullInstaller;
using test::NullSender;
class FixedClock final : public ike::Clock {
 public:
  ike::Millis now() const override { return ike::Millis{1000}; }
};

// The reconciler maps N created connections onto the IKE daemon (as at start with the API):
// each connection's policies, groups and IKE name looked up, not searched for.
TEST(Scaling, ReconcilerMappingIsLinear) {
  const std::string text = many_connections(kN, false);
  auto s = model::parse_state(text, environment(), true);
  ASSERT_TRUE(s.ok());
  NullSender sender;
  NullInstaller installer;
  FixedClock clock;
  ike::Daemon daemon(sender, installer, clock);
  ConnectionStatus conns;
  Reconciler r(daemon, installer, conns, environment(), {0xc0000201, 1500}, 1);
  const auto changes = model::diff(model::State{}, *s, environment());
  const double per = steps_per_connection([&] { r.apply(changes, *s); });
  EXPECT_EQ(daemon.connection_names().size(), kN);
  EXPECT_EQ(r.status(s->ipsec_site_connections.back().id), "DOWN");
  EXPECT_LE(per, kMaxStepsPerConnection);
}

// The API's lists (GET .../ipsec-site-connections, .../vpnservices): one walk over each
// collection, each connection's status asked once, the vpnservices' statuses from one pass
// over the connections. Before: a lookup per listed object (N^2 / 2 steps) and a pass over
// every connection per vpnservice. Here every connection has a vpnservice of its own.
TEST(Scaling, ApiListsAreLinear) {
  auto s = model::parse_state(many_connections(kN, false), environment(), true);
  ASSERT_TRUE(s.ok());
  model::State st = *s;
  ASSERT_EQ(st.vpnservices.size(), 1u);
  const model::VpnService first = st.vpnservices[0];
  for (std::size_t i = 0; i < kN; ++i) {
    model::VpnService v = first;
    v.id = model::stable_uuid("vpnservice:" + std::to_string(i));
    v.name = "svc" + std::to_string(i);
    st.vpnservices.push_back(v);
    st.ipsec_site_connections[i].vpnservice_id = v.id;
  }
  api::ApiHandler h(st, environment(), nullptr);
  std::size_t asked = 0;
  h.status_source([&](const std::string& id) {
    ++asked;
    return id == st.ipsec_site_connections[7].id ? std::string("ACTIVE") : std::string("DOWN");
  });
  for (const char* what : {"ipsec-site-connections", "vpnservices"}) {
    SCOPED_TRACE(what);
    asked = 0;
    api::ApiResponse r;
    const double per = steps_per_connection(
        [&] { r = h.handle({"GET", std::string("/v2.0/vpn/") + what, {}, "", ""}); });
    ASSERT_EQ(r.status, 200) << r.body;
    const auto j = model::json::parse(r.body);
    const auto& list = j[what[0] == 'i' ? "ipsec_site_connections" : "vpnservices"];
    EXPECT_EQ(list.size(), what[0] == 'i' ? kN : kN + 1);
    EXPECT_EQ(asked, kN);  // each connection's status once
    EXPECT_LE(per, kMaxStepsPerConnection);
    // The statuses are each object's own: connection 7 and its vpnservice are ACTIVE.
    std::size_t active = 0;
    for (const auto& o : list) active += o["status"] == "ACTIVE";
    EXPECT_EQ(active, 1u);
    const std::string active_id =
        what[0] == 'i' ? st.ipsec_site_connections[7].id : st.vpnservices[8].id;
    for (const auto& o : list) {
      if (o["id"] == active_id) {
        EXPECT_EQ(o["status"], "ACTIVE");
      }
    }
  }
}

}  // namespace
}  // namespace ipsecgw::app
