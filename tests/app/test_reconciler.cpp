// plan(): each kind of connection change yields exactly its actions, for that connection only.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ipsecgw::app
