// Connections: trap policies, acquires from the data plane, configuration validation.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

dp::SaEvent acquire(std::uint32_t conn) {
  return {dp::SaEventKind::kAcquire, dp::Direction::kOutbound, 0, conn};
}

TEST_F(Quiet, EachConnectionGetsATrapThatOutlivesItsSasUntilTheConnectionIsRemoved) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.ia.traps.count(7), 1u);
  EXPECT_EQ(p.ia.traps[7].first, *dp::parse_prefix("10.1.0.0/16"));
  EXPECT_EQ(p.ia.traps[7].second, *dp::parse_prefix("10.2.0.0/24"));
  EXPECT_EQ(p.ib.traps.count(9), 1u);  // response-only too: its traffic waits, never leaks
  p.drop_from_b = true;
  p.run_for(30000, 1000);  // DPD hold: SAs deleted
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.ia.out_current, 0u);
  EXPECT_EQ(p.ia.traps.count(7), 1u);
  // Administrative removal takes the trap away and tells the peer.
  ASSERT_TRUE(p.b.remove_connection("site"));
  EXPECT_EQ(p.ib.traps.count(9), 0u);
  EXPECT_TRUE(p.ib.live_in.empty());
  EXPECT_FALSE(p.b.remove_connection("site"));
  EXPECT_TRUE(p.b.connection_names().empty());
}

TEST_F(Quiet, AdminDownConnectionGetsNoTrap) {
  Pair p;
  ConnectionConfig c = make_conn(true, {}, {});
  c.admin_state_up = false;
  ASSERT_TRUE(p.a.add_connection(std::move(c)));
  EXPECT_TRUE(p.ia.traps.empty());
}

TEST_F(Quiet, AcquireAfterDpdHoldRenegotiatesAndComesBackActive) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_in = p.a.status("site").child->spi_in;
  p.drop_from_b = true;
  p.run_for(30000, 1000);
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  p.drop_from_b = false;
  p.run_for(60000, 5000);
  EXPECT_EQ(p.mm1_from_a, 1);  // hold: nothing without traffic
  // Traffic hits the trap: the data plane reports an acquire.
  p.ia.events.push_back(acquire(7));
  p.run_for(5000, 500);
  EXPECT_EQ(p.mm1_from_a, 2);
  auto st = p.a.status("site");
  ASSERT_EQ(st.state, ConnState::kActive);
  EXPECT_NE(st.child->spi_in, old_in);
  EXPECT_EQ(p.ia.out_current, st.child->spi_out);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, AcquireWhileActiveOrNegotiatingStartsNothingNew) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.ia.events = {acquire(7), acquire(7)};
  p.run_for(5000, 500);
  EXPECT_EQ(p.mm1_from_a, 1);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, AcquireForAResponseOnlyConnectionWaitsForThePeer) {
  Pair p(kDefaults);
  p.ib.events.push_back(acquire(9));  // B is response-only
  p.tick_only_b_for(10);
  EXPECT_EQ(p.net.sent, 0);
  EXPECT_EQ(p.b.status("site").state, ConnState::kDown);
}

TEST_F(Quiet, AcquireDuringTheRetryDelayAfterAFailureWaitsForTheTimer) {
  Pair p(kDefaults);
  int mm1 = 0;  // MM1s sent by A, retransmissions included
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA && is_new_main_mode(pk)) ++mm1;
    return false;  // B never hears anything: A's attempt fails as unreachable
  };
  for (int i = 0; i < 600 && p.a.status("site").state != ConnState::kError; ++i)
    p.run_for(1000, 1000);
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  const int after_failure = mm1;
  p.ia.events.push_back(acquire(7));
  p.run_for(1000, 1000);
  EXPECT_EQ(mm1, after_failure);  // kRetryAfterFailure rate-limits acquires too
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  p.run_for(static_cast<int>(kRetryAfterFailure.count()), 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kPending);  // the retry timer initiates
  EXPECT_GT(mm1, after_failure);
}

TEST(ConnectionConfig, ValidationNamesTheField) {
  ConnectionConfig c = make_conn(true, {}, {});
  EXPECT_TRUE(validate(c).ok());
  c.dpd.timeout_s = c.dpd.interval_s;
  auto r = validate(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("dpd timeout"), std::string::npos);
  c = make_conn(true, {}, {});
  c.ike.lifetime_s = 59;
  EXPECT_FALSE(validate(c).ok());
}

}  // namespace
}  // namespace ipsecgw::ike::test
