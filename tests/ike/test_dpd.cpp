// Dead peer detection (RFC 3706): probes, hold, restart, inbound ESP as liveness.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

TEST_F(Quiet, DpdProbesAnIdlePeerAndStaysActiveWhileItAnswers) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.run_for(4000, 1000);
  EXPECT_EQ(p.probes, 0);  // not idle for an interval yet
  p.run_for(120000, 1000);
  expect_both_active(p);
  // One R-U-THERE per idle interval, each acknowledged.
  EXPECT_GE(p.probes, 120 / 5 - 2);
  EXPECT_LE(p.probes, 120 / 5 + 1);
  EXPECT_EQ(p.acks, p.probes);
  EXPECT_TRUE(p.ia.deleted.empty());
  EXPECT_EQ(p.mm1_from_a, 1);
}

TEST_F(Quiet, DpdHoldDeletesSasOfADeadPeerAndDoesNotReinitiate) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto spi_in = p.a.status("site").child->spi_in;
  const auto spi_out = p.a.status("site").child->spi_out;
  p.drop_from_b = true;
  // Idle after 5 s, first R-U-THERE then; dead 20 s later without an ACK.
  p.run_for(24000, 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_TRUE(p.ia.deleted.empty());
  p.run_for(2000, 1000);
  auto st = p.a.status("site");
  EXPECT_EQ(st.state, ConnState::kError);
  EXPECT_EQ(st.reason, "dead peer detected (DPD)");
  // R-U-THERE repeated every interval while unanswered: at 5, 10, 15, 20 s.
  EXPECT_EQ(p.probes, 4);
  ASSERT_EQ(p.ia.deleted.size(), 2u);
  EXPECT_EQ(p.ia.deleted[0], std::make_pair(dp::Direction::kOutbound, spi_out));
  EXPECT_EQ(p.ia.deleted[1], std::make_pair(dp::Direction::kInbound, spi_in));
  // hold: even with the network back, A does not initiate on its own.
  p.drop_from_b = false;
  p.run_for(10 * 60 * 1000, 5000);
  EXPECT_EQ(p.mm1_from_a, 1);
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
}

TEST_F(Quiet, DpdRestartReinitiatesAtOnceAndComesBackActive) {
  DpdPair p(DpdAction::kRestart);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_in = p.a.status("site").child->spi_in;
  p.drop_from_b = true;
  for (int i = 0; i < 60 && p.a.status("site").state == ConnState::kActive; ++i)
    p.run_for(1000, 1000);
  EXPECT_EQ(p.ia.deleted.size(), 2u);
  EXPECT_EQ(p.mm1_from_a, 2);  // the restart's MM1 went out on the detecting tick
  p.drop_from_b = false;
  p.run_for(30000, 1000);  // the lost MM1 is retransmitted
  auto st = p.a.status("site");
  ASSERT_EQ(st.state, ConnState::kActive);
  EXPECT_NE(st.child->spi_in, old_in);
  EXPECT_EQ(p.ia.sas.size(), 4u);
}

TEST_F(Quiet, DpdCountsInboundEspAsLivenessAndDoesNotProbe) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.ia.report_counters = true;
  p.drop_from_b = true;  // no IKE from B at all, but ESP keeps arriving
  for (int i = 0; i < 120; ++i) {
    ++p.ia.in_packets;
    p.run_for(1000, 1000);
  }
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.probes, 0);
  // Traffic stops: probing starts after an interval, death after the timeout.
  p.run_for(30000, 1000);
  EXPECT_GT(p.probes, 0);
  EXPECT_EQ(p.a.status("site").reason, "dead peer detected (DPD)");
}


// On-demand DPD: our ESP flows out, nothing comes back (a NAT in front of the peer or us
// rebound): an R-U-THERE goes out about 2 s later, not a whole interval (5 s here) later.
TEST_F(Quiet, DpdProbesAtOnceWhenEspFlowsOutButNothingComesBack) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.ia.report_counters = true;
  p.drop_from_b = true;
  for (int i = 0; i < 3; ++i) {
    p.ia.out_packets += 100;
    p.run_for(1000, 1000);
  }
  EXPECT_EQ(p.probes, 1);
  EXPECT_EQ(p.a.counters().on_demand_dpd, 1u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
