// plan(): each kind of connection change yields exactly its actions, for that connection only.
#include <gtest/gtest.h>

#include <memory>

#include "app/model/store.hpp"
#include "app/reconciler.hpp"

namespace ipsecgw::app {
namespace {

using model::ConnectionChange;
using CK = ConnectionChange::Kind;
using AK = Action::Kind;

ConnectionChange change(CK kind, std::string id, bool was, bool now, bool sa = false) {
  ConnectionChange c;
  c.kind = kind;
  c.id = std::move(id);
  c.name = "n-" + c.id;
  c.was_enabled = was;
  c.now_enabled = now;
  c.sa_changed = sa;
  return c;
}

TEST(ReconcilerPlan, NoChangesNoActions) { EXPECT_TRUE(plan({}).empty()); }

TEST(ReconcilerPlan, CreatedEnabledIsAddEnabled) {
  EXPECT_EQ(plan({change(CK::kCreated, "a", false, true)}),
            (std::vector<Action>{{AK::kAdd, "a", true}}));
}

TEST(ReconcilerPlan, CreatedDisabledIsAddDisabled) {
  EXPECT_EQ(plan({change(CK::kCreated, "a", false, false)}),
            (std::vector<Action>{{AK::kAdd, "a", false}}));
}

TEST(ReconcilerPlan, DeletedIsRemove) {
  EXPECT_EQ(plan({change(CK::kDeleted, "a", true, false)}),
            (std::vector<Action>{{AK::kRemove, "a", false}}));
  EXPECT_EQ(plan({change(CK::kDeleted, "a", false, false)}),
            (std::vector<Action>{{AK::kRemove, "a", false}}));
}

TEST(ReconcilerPlan, DisableIsRemoveThenAddDisabled) {
  EXPECT_EQ(plan({change(CK::kUpdated, "a", true, false)}),
            (std::vector<Action>{{AK::kRemove, "a", false}, {AK::kAdd, "a", false}}));
}

TEST(ReconcilerPlan, EnableIsRemoveThenAddEnabled) {
  EXPECT_EQ(plan({change(CK::kUpdated, "a", false, true)}),
            (std::vector<Action>{{AK::kRemove, "a", false}, {AK::kAdd, "a", true}}));
}

TEST(ReconcilerPlan, SaChangingUpdateRenegotiates) {
  EXPECT_EQ(plan({change(CK::kUpdated, "a", true, true, true)}),
            (std::vector<Action>{{AK::kRemove, "a", false}, {AK::kAdd, "a", true}}));
  // A disabled connection's drop policy follows new selectors, still disabled.
  EXPECT_EQ(plan({change(CK::kUpdated, "a", false, false, true)}),
            (std::vector<Action>{{AK::kRemove, "a", false}, {AK::kAdd, "a", false}}));
}

TEST(ReconcilerPlan, OtherUpdateIsInPlace) {
  EXPECT_EQ(plan({change(CK::kUpdated, "a", true, true, false)}),
            (std::vector<Action>{{AK::kUpdateInPlace, "a", true}}));
  EXPECT_EQ(plan({change(CK::kUpdated, "a", false, false, false)}),
            (std::vector<Action>{{AK::kUpdateInPlace, "a", false}}));
}

TEST(ReconcilerPlan, EachChangeOnlyTouchesItsConnection) {
  const auto actions = plan({change(CK::kUpdated, "a", true, true, false),
                             change(CK::kCreated, "b", false, true),
                             change(CK::kUpdated, "c", true, true, true),
                             change(CK::kDeleted, "d", true, false)});
  EXPECT_EQ(actions, (std::vector<Action>{{AK::kUpdateInPlace, "a", true},
                                          {AK::kAdd, "b", true},
                                          {AK::kRemove, "c", false},
                                          {AK::kAdd, "c", true},
                                          {AK::kRemove, "d", false}}));
  for (const auto& a : actions) EXPECT_NE(a.id, "e");
}

TEST(ReconcilerPlan, NeutronStatusOfIkeStates) {
  EXPECT_STREQ(neutron_status(ike::ConnState::kDown), "DOWN");
  EXPECT_STREQ(neutron_status(ike::ConnState::kPending), "PENDING_CREATE");
  EXPECT_STREQ(neutron_status(ike::ConnState::kActive), "ACTIVE");
  EXPECT_STREQ(neutron_status(ike::ConnState::kError), "ERROR");
}

// ---- Reconciler::apply against a real ike::Daemon over fakes: what each change does to the
// IKE connections and the data plane's policies (traps), and what it leaves alone.

class NullSender final : public dp::DatagramSender {
 public:
  Result<void> send(const dp::DatagramView&) override { return {}; }
};

class TrapInstaller final : public dp::SaInstaller {
 public:
  Result<std::uint32_t> allocate_spi() override { return next_spi_++; }
  void release_spi(std::uint32_t) override {}
  Result<void> add_sa(dp::SaSpec) override { return {}; }
  Result<void> del_sa(dp::Direction, std::uint32_t) override { return {}; }
  std::optional<dp::SaCounters> query_sa(dp::Direction, std::uint32_t) override {
    return std::nullopt;
  }
  Result<void> install_trap(std::uint32_t conn, dp::Ipv4Prefix l, dp::Ipv4Prefix r) override {
    traps[conn] = {l, r};
    ++installs[conn];
    return {};
  }
  Result<void> remove_trap(std::uint32_t conn) override {
    if (traps.erase(conn) == 0) return make_error("no trap");
    return {};
  }
  std::vector<dp::SaEvent> poll_events() override { return {}; }
  std::map<std::uint32_t, std::pair<dp::Ipv4Prefix, dp::Ipv4Prefix>> traps;
  std::map<std::uint32_t, int> installs;

 private:
  std::uint32_t next_spi_ = 0x1000;
};

constexpr const char* kTwoConnections = R"(
vpnservice: {name: vpn}
ikepolicies: [{name: ike1}]
ipsecpolicies: [{name: esp1}]
ipsec_site_connections:
  - {name: a, peer_address: 198.51.100.2, peer_cidrs: [10.2.0.0/24], psk: s1, ikepolicy: ike1, ipsecpolicy: esp1}
  - {name: b, peer_address: 198.51.100.3, peer_cidrs: [10.3.0.0/24], psk: s2, ikepolicy: ike1, ipsecpolicy: esp1}
)";

class ReconcilerApply : public ::testing::Test {
 protected:
  void SetUp() override {
    env_.router_id = model::stable_uuid("router:ipsecgw");
    env_.external_v4_ip = "192.0.2.1";
    env_.subnets.push_back({model::stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"});
    auto s = model::parse_state(kTwoConnections, env_);
    ASSERT_TRUE(s.ok()) << s.error();
    state_ = std::move(*s);
    a_ = state_.ipsec_site_connections[0].id;
    b_ = state_.ipsec_site_connections[1].id;
    rec_ = std::make_unique<Reconciler>(ike_, inst_, conns_, env_,
                                        IkeGatewayParams{0xc0000201, 1500}, 1);
    rec_->apply(model::diff(model::State{}, state_, env_), state_);
  }
  void change(const std::string& id, const model::json& fields) {
    auto r = model::update(state_, env_, model::Kind::kConnection, id, fields);
    ASSERT_TRUE(r.ok()) << r.error->message;
    rec_->apply(model::diff(state_, r.next, env_), r.next);
    state_ = std::move(r.next);
  }
  std::vector<std::string> names() const { return ike_.connection_names(); }

  model::Environment env_;
  model::State state_;
  std::string a_, b_;
  NullSender sender_;
  TrapInstaller inst_;
  ike::SteadyClock clock_;
  ike::Daemon ike_{sender_, inst_, clock_};
  ConnectionStatus conns_;
  std::unique_ptr<Reconciler> rec_;
};

TEST_F(ReconcilerApply, CreatedConnectionsAreAddedWithTheirTraps) {
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(inst_.traps.size(), 2u);
  EXPECT_EQ(rec_->status(a_), "DOWN");  // not negotiated yet (no tick)
}

TEST_F(ReconcilerApply, DisableKeepsADropPolicyAndLeavesTheOtherAlone) {
  const auto b_trap = inst_.traps;
  change(a_, {{"admin_state_up", false}});
  EXPECT_EQ(rec_->status(a_), "DOWN");
  EXPECT_EQ(inst_.traps.size(), 2u);  // a's traffic is still caught: dropped
  EXPECT_EQ(inst_.installs[2], 1);   // b (conn_id 2) untouched
  EXPECT_EQ(names(), (std::vector<std::string>{"b", "a"}));
  change(a_, {{"admin_state_up", true}});
  EXPECT_EQ(inst_.traps.size(), 2u);
  EXPECT_EQ(inst_.installs[2], 1);
}

TEST_F(ReconcilerApply, InPlaceUpdateDoesNotReAdd) {
  change(a_, {{"mtu", 1400}, {"description", "x"}});
  EXPECT_EQ(inst_.installs[1], 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(ReconcilerApply, SaChangeReAddsOnlyThatConnection) {
  change(a_, {{"psk", "other"}});
  EXPECT_EQ(inst_.installs[1], 2);  // same conn_id, trap replaced
  EXPECT_EQ(inst_.installs[2], 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"b", "a"}));
}

TEST_F(ReconcilerApply, DeleteRemovesConnectionAndPolicy) {
  auto r = model::remove(state_, model::Kind::kConnection, a_);
  ASSERT_TRUE(r.ok());
  rec_->apply(model::diff(state_, r.next, env_), r.next);
  EXPECT_EQ(names(), (std::vector<std::string>{"b"}));
  EXPECT_EQ(inst_.traps.count(1), 0u);
  EXPECT_EQ(inst_.traps.count(2), 1u);
  EXPECT_EQ(rec_->status(a_), "DOWN");
}

TEST_F(ReconcilerApply, SecondConnectionToTheSamePeerIsError) {
  model::json c = {{"name", "c"}, {"peer_address", "198.51.100.2"},
                   {"peer_cidrs", {"10.4.0.0/24"}}, {"psk", "s1"},
                   {"vpnservice_id", state_.vpnservices[0].id},
                   {"ikepolicy_id", state_.ikepolicies[0].id},
                   {"ipsecpolicy_id", state_.ipsecpolicies[0].id}};
  auto r = model::create(state_, env_, model::Kind::kConnection, c);
  ASSERT_TRUE(r.ok()) << r.error->message;
  rec_->apply(model::diff(state_, r.next, env_), r.next);
  EXPECT_EQ(rec_->status(r.id), "ERROR");
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace ipsecgw::app
