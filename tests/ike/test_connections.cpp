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


// peer_id: the ID the peer authenticates in MM5/MM6 must be the configured one.
TEST_F(Quiet, PeerIdIsCheckedAgainstTheAuthenticatedIdPayload) {
  for (const char* wrong_side : {"initiator", "responder", "none"}) {
    Pair p;
    auto ca = make_conn(true, {}, {});
    auto cb = make_conn(false, {}, {});
    ca.peer_id = std::string(wrong_side) == "initiator" ? "198.51.100.99" : "198.51.100.2";
    cb.peer_id = std::string(wrong_side) == "responder" ? "peer.example" : "192.0.2.1";
    ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
    ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
    p.initiate();
    if (std::string(wrong_side) == "none") {
      expect_both_active(p);
      continue;
    }
    ConnectionStatus st = std::string(wrong_side) == "initiator" ? p.a.status("site")
                                                                  : p.b.status("site");
    EXPECT_EQ(st.state, ConnState::kError) << wrong_side;
    EXPECT_EQ(st.reason, "peer ID mismatch") << wrong_side;
    EXPECT_TRUE(p.ia.sas.empty()) << wrong_side;
  }
}

// response-only never initiates: not at the phase-1 soft lifetime, not on DPD restart.
TEST_F(Quiet, ResponseOnlyConnectionsNeverInitiateOnTheirOwn) {
  Pair p;
  IkePolicy ike;
  ike.lifetime_s = 600;
  auto ca = make_conn(true, ike, {});
  ca.initiator = InitiatorMode::kResponseOnly;
  ca.dpd = {DpdAction::kRestart, 5, 20};
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.b.add_connection(make_conn(false, ike, {})).ok());
  int mm1 = 0;
  bool drop_b = false;
  p.net.filter = [&](Packet& pk) {
    mm1 += is_new_main_mode(pk);
    return !(drop_b && pk.from.addr == kAddrB);
  };
  ASSERT_TRUE(p.a.initiate("site").ok());  // the operator's explicit action
  p.pump();
  expect_both_active(p);
  drop_b = true;  // B dead: A's DPD restart must not initiate
  p.run_for(60000, 1000);
  EXPECT_EQ(p.a.status("site").reason, "dead peer detected (DPD)");
  EXPECT_EQ(mm1, 1);
  // Both response-only, A started by the operator: nobody re-establishes phase 1.
  Pair q;
  auto qa = make_conn(true, ike, {});
  qa.initiator = InitiatorMode::kResponseOnly;
  ASSERT_TRUE(q.a.add_connection(std::move(qa)).ok());
  ASSERT_TRUE(q.b.add_connection(make_conn(false, ike, {})).ok());
  int q_mm1 = 0;
  q.net.filter = [&](Packet& pk) { return (q_mm1 += is_new_main_mode(pk)), true; };
  ASSERT_TRUE(q.a.initiate("site").ok());
  q.pump();
  expect_both_active(q);
  q.run_for(590000, 1000);  // past both sides' soft lifetimes (85..97%)
  EXPECT_EQ(q_mm1, 1);
}

}  // namespace
}  // namespace ipsecgw::ike::test
