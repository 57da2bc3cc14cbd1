// plan(): each kind of connection change yields exactly its actions, for that connection only.
#include <gtest/gtest.h>

#include <memory>

#include "app/model/store.hpp"
#include "app/reconciler.hpp"
#include "tests/app/ike_stubs.hpp"

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

ConnectionChange updated(std::string id, bool was, bool now, bool sa,
                         std::vector<std::string> fields) {
  ConnectionChange c = change(CK::kUpdated, std::move(id), was, now, sa);
  c.changed = std::move(fields);
  return c;
}

TEST(ReconcilerPlan, DisableIsDisableOnly) {
  EXPECT_EQ(plan({updated("a", true, false, false, {"admin_state_up"})}),
            (std::vector<Action>{{AK::kDisable, "a", false}}));
  // The vpnservice's admin state counts the same.
  EXPECT_EQ(plan({updated("a", true, false, false, {"vpnservice.admin_state_up"})}),
            (std::vector<Action>{{AK::kDisable, "a", false}}));
}

TEST(ReconcilerPlan, EnableIsEnableOnly) {
  EXPECT_EQ(plan({updated("a", false, true, false, {"admin_state_up"})}),
            (std::vector<Action>{{AK::kEnable, "a", true}}));
}

TEST(ReconcilerPlan, DisableWithOtherFieldsDisablesFirst) {
  EXPECT_EQ(plan({updated("a", true, false, false, {"admin_state_up", "mtu"})}),
            (std::vector<Action>{{AK::kDisable, "a", false}, {AK::kUpdateInPlace, "a", false}}));
  EXPECT_EQ(plan({updated("a", true, false, true, {"psk", "admin_state_up"})}),
            (std::vector<Action>{{AK::kDisable, "a", false}, {AK::kRenegotiate, "a", false}}));
}

TEST(ReconcilerPlan, EnableWithOtherFieldsEnablesLast) {
  EXPECT_EQ(plan({updated("a", false, true, false, {"dpd", "admin_state_up"})}),
            (std::vector<Action>{{AK::kUpdateInPlace, "a", false}, {AK::kEnable, "a", true}}));
  EXPECT_EQ(plan({updated("a", false, true, true, {"ipsecpolicy.pfs", "admin_state_up"})}),
            (std::vector<Action>{{AK::kRenegotiate, "a", false}, {AK::kEnable, "a", true}}));
}

TEST(ReconcilerPlan, SaChangingUpdateRenegotiates) {
  EXPECT_EQ(plan({updated("a", true, true, true, {"psk"})}),
            (std::vector<Action>{{AK::kRenegotiate, "a", true}}));
  // A disabled connection's drop policy follows new selectors, still disabled.
  EXPECT_EQ(plan({updated("a", false, false, true, {"peer_cidrs"})}),
            (std::vector<Action>{{AK::kRenegotiate, "a", false}}));
}

TEST(ReconcilerPlan, OtherUpdateIsInPlace) {
  EXPECT_EQ(plan({updated("a", true, true, false, {"mtu"})}),
            (std::vector<Action>{{AK::kUpdateInPlace, "a", true}}));
  EXPECT_EQ(plan({updated("a", false, false, false, {"name", "description"})}),
            (std::vector<Action>{{AK::kUpdateInPlace, "a", false}}));
}

TEST(ReconcilerPlan, EachChangeOnlyTouchesItsConnection) {
  const auto actions = plan({updated("a", true, true, false, {"dpd"}),
                             change(CK::kCreated, "b", false, true),
                             updated("c", true, true, true, {"ikepolicy.lifetime"}),
                             change(CK::kDeleted, "d", true, false),
                             updated("e", true, false, false, {"admin_state_up"})});
  EXPECT_EQ(actions, (std::vector<Action>{{AK::kUpdateInPlace, "a", true},
                                          {AK::kAdd, "b", true},
                                          {AK::kRenegotiate, "c", true},
                                          {AK::kRemove, "d", false},
                                          {AK::kDisable, "e", false}}));
}

// From the model through diff to the plan: a policy edit renegotiates exactly the connections
// that use it; a DPD edit updates only its connection in place.
constexpr const char* kThreeConnections = R"(
vpnservice: {name: vpn}
ikepolicies: [{name: ike1}]
ipsecpolicies: [{name: esp1}, {name: esp2}]
ipsec_site_connections:
  - {name: a, peer_address: 198.51.100.2, peer_cidrs: [10.2.0.0/24], psk: s1, ikepolicy: ike1, ipsecpolicy: esp1}
  - {name: b, peer_address: 198.51.100.3, peer_cidrs: [10.3.0.0/24], psk: s2, ikepolicy: ike1, ipsecpolicy: esp2}
  - {name: c, peer_address: 198.51.100.4, peer_cidrs: [10.4.0.0/24], psk: s3, ikepolicy: ike1, ipsecpolicy: esp1}
)";

model::Environment test_env() {
  model::Environment env;
  env.router_id = model::stable_uuid("router:ipsecgw");
  env.external_v4_ip = "192.0.2.1";
  env.subnets.push_back({model::stable_uuid("subnet:protected"), "protected", "10.1.0.0/24"});
  return env;
}

TEST(ReconcilerPlan, PolicyEditRenegotiatesExactlyItsUsers) {
  const auto env = test_env();
  auto s = model::parse_state(kThreeConnections, env);
  ASSERT_TRUE(s.ok()) << s.error();
  const auto& cs = s->ipsec_site_connections;
  auto r = model::update(*s, env, model::Kind::kIpsecPolicy, s->ipsecpolicies[0].id,
                         {{"pfs", "group14"}});
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(plan(model::diff(*s, r.next, env)),
            (std::vector<Action>{{AK::kRenegotiate, cs[0].id, true},
                                 {AK::kRenegotiate, cs[2].id, true}}));
  auto d = model::update(*s, env, model::Kind::kConnection, cs[1].id,
                         {{"dpd", {{"action", "restart"}, {"interval", 10}, {"timeout", 40}}},
                          {"mtu", 1400}});
  ASSERT_TRUE(d.ok()) << d.error->message;
  EXPECT_EQ(plan(model::diff(*s, d.next, env)),
            (std::vector<Action>{{AK::kUpdateInPlace, cs[1].id, true}}));
  auto off = model::update(*s, env, model::Kind::kConnection, cs[2].id,
                           {{"admin_state_up", false}});
  ASSERT_TRUE(off.ok()) << off.error->message;
  EXPECT_EQ(plan(model::diff(*s, off.next, env)),
            (std::vector<Action>{{AK::kDisable, cs[2].id, false}}));
}

TEST(ReconcilerPlan, NeutronStatusOfIkeStates) {
  EXPECT_STREQ(neutron_status(ike::ConnState::kDown), "DOWN");
  EXPECT_STREQ(neutron_status(ike::ConnState::kPending), "PENDING_CREATE");
  EXPECT_STREQ(neutron_status(ike::ConnState::kActive), "ACTIVE");
  EXPECT_STREQ(neutron_status(ike::ConnState::kError), "ERROR");
}

// ---- Reconciler::apply against a real ike::Daemon over fakes: what each change does to the
// IKE connections and the data plane's policies (traps), and what it leaves alone.

using test::NullSender;

// NullInstaller that keeps the traps and counts the calls per connection.
class TrapInstaller final : public test::NullInstaller {
 public:
  Result<void> install_trap(std::uint32_t conn, dp::Ipv4Prefix l, dp::Ipv4Prefix r) override {
    traps[conn] = {l, r};
    ++installs[conn];
    return {};
  }
  Result<void> remove_trap(std::uint32_t conn) override {
    ++removes[conn];
    if (traps.erase(conn) == 0) return make_error("no trap");
    return {};
  }
  std::map<std::uint32_t, std::pair<dp::Ipv4Prefix, dp::Ipv4Prefix>> traps;
  std::map<std::uint32_t, int> installs, removes;
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
  change(a_, {{"admin_state_up", false}});
  EXPECT_EQ(rec_->status(a_), "DOWN");
  EXPECT_EQ(inst_.traps.size(), 2u);  // a's traffic is still caught: dropped
  EXPECT_EQ(inst_.removes[1], 0);     // never without a policy
  EXPECT_EQ(inst_.installs[2], 1);    // b (conn_id 2) untouched
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));  // not re-added
  change(a_, {{"admin_state_up", true}});
  EXPECT_EQ(inst_.traps.size(), 2u);
  EXPECT_EQ(inst_.removes[1], 0);
  EXPECT_EQ(inst_.installs[2], 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(ReconcilerApply, CreatedDisabledThenEnabledKeepsItsPolicy) {
  change(a_, {{"admin_state_up", false}});
  auto r = model::remove(state_, model::Kind::kConnection, a_);
  ASSERT_TRUE(r.ok());
  rec_->apply(model::diff(state_, r.next, env_), r.next);
  model::json c = {{"name", "c"}, {"peer_address", "198.51.100.4"},
                   {"peer_cidrs", {"10.4.0.0/24"}}, {"psk", "s3"}, {"admin_state_up", false},
                   {"vpnservice_id", state_.vpnservices[0].id},
                   {"ikepolicy_id", state_.ikepolicies[0].id},
                   {"ipsecpolicy_id", state_.ipsecpolicies[0].id}};
  auto cr = model::create(r.next, env_, model::Kind::kConnection, c);
  ASSERT_TRUE(cr.ok()) << cr.error->message;
  rec_->apply(model::diff(r.next, cr.next, env_), cr.next);
  state_ = std::move(cr.next);
  ASSERT_EQ(inst_.traps.count(3), 1u);  // its drop policy
  // New selectors move the drop policy; enabling hands it to IKE without a gap.
  change(cr.id, {{"peer_cidrs", {"10.5.0.0/24"}}});
  EXPECT_EQ(inst_.traps[3].second, *dp::parse_prefix("10.5.0.0/24"));
  change(cr.id, {{"admin_state_up", true}});
  EXPECT_EQ(inst_.traps.count(3), 1u);
  EXPECT_EQ(inst_.removes[3], 0);
  auto d = model::remove(state_, model::Kind::kConnection, cr.id);
  ASSERT_TRUE(d.ok());
  rec_->apply(model::diff(state_, d.next, env_), d.next);
  EXPECT_EQ(inst_.traps.count(3), 0u);
  EXPECT_EQ(inst_.removes[3], 1);  // removed once, by IKE
}

TEST_F(ReconcilerApply, InPlaceUpdateDoesNotReAdd) {
  change(a_, {{"mtu", 1400}, {"description", "x"}});
  EXPECT_EQ(inst_.installs[1], 1);
  EXPECT_EQ(inst_.removes[1], 0);
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(ReconcilerApply, SaChangeRenegotiatesOnlyThatConnection) {
  change(a_, {{"psk", "other"}});
  EXPECT_EQ(inst_.installs[1], 1);  // same selectors: the trap stays as it is
  EXPECT_EQ(inst_.removes[1], 0);
  EXPECT_EQ(inst_.installs[2], 1);
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b"}));  // not re-added
  change(a_, {{"peer_cidrs", {"10.6.0.0/24"}}});
  EXPECT_EQ(inst_.traps[1].second, *dp::parse_prefix("10.6.0.0/24"));
  EXPECT_EQ(inst_.installs[2], 1);
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

// Connections to one peer share its ISAKMP SA (issue #9): a second one is added next to the
// first; deleting the first leaves it alone.
TEST_F(ReconcilerApply, SecondConnectionToTheSamePeerIsAdded) {
  model::json c = {{"name", "c"}, {"peer_address", "198.51.100.2"},
                   {"peer_cidrs", {"10.4.0.0/24"}}, {"psk", "s1"},
                   {"vpnservice_id", state_.vpnservices[0].id},
                   {"ikepolicy_id", state_.ikepolicies[0].id},
                   {"ipsecpolicy_id", state_.ipsecpolicies[0].id}};
  auto r = model::create(state_, env_, model::Kind::kConnection, c);
  ASSERT_TRUE(r.ok()) << r.error->message;
  rec_->apply(model::diff(state_, r.next, env_), r.next);
  state_ = std::move(r.next);
  EXPECT_EQ(rec_->status(r.id), "DOWN");  // added, not negotiated yet (no tick)
  EXPECT_EQ(names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(inst_.traps[3].second, *dp::parse_prefix("10.4.0.0/24"));
  // Another PSK for the same peer: the model refuses it, naming the other connection.
  c["name"] = "d";
  c["psk"] = "other";
  c["peer_cidrs"] = {"10.5.0.0/24"};
  auto bad = model::create(state_, env_, model::Kind::kConnection, c);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error->message.find("differs from the psk of"), std::string::npos)
      << bad.error->message;
  // Deleting the first connection of the peer leaves the second one (and its trap) alone.
  auto d = model::remove(state_, model::Kind::kConnection, a_);
  ASSERT_TRUE(d.ok());
  rec_->apply(model::diff(state_, d.next, env_), d.next);
  state_ = std::move(d.next);
  EXPECT_EQ(names(), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(inst_.traps.count(1), 0u);
  EXPECT_EQ(inst_.installs[3], 1);
  EXPECT_EQ(inst_.removes[3], 0);
}

// Several peer CIDRs: a trap (and CHILD SA) per (local, peer) pair, also as the drop policies
// of a disabled connection.
TEST_F(ReconcilerApply, SeveralCidrsGetATrapPerPair) {
  change(b_, {{"peer_cidrs", {"10.3.0.0/24", "10.7.0.0/24"}}});
  EXPECT_EQ(inst_.traps[2].second, *dp::parse_prefix("10.3.0.0/24"));
  EXPECT_EQ(inst_.traps[ike::trap_id(2, 1)].second, *dp::parse_prefix("10.7.0.0/24"));
  EXPECT_EQ(rec_->status(b_), "DOWN");  // accepted by IKE
  change(b_, {{"admin_state_up", false}});
  EXPECT_EQ(inst_.traps.count(ike::trap_id(2, 1)), 1u);  // still dropped
  change(b_, {{"peer_cidrs", {"10.3.0.0/24"}}});
  EXPECT_EQ(inst_.traps.count(ike::trap_id(2, 1)), 0u);
  EXPECT_EQ(inst_.traps.count(2), 1u);
}

}  // namespace
}  // namespace ipsecgw::app
