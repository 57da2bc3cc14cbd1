// Live changes of a running connection: in-place updates keep the SAs, a changed policy
// renegotiates make-before-break, admin down deletes the SAs behind a kept drop policy.
#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

// Counts the messages A sends: new Main Modes and informational exchanges (Deletes here: the
// default connections do not probe with DPD within these tests).
struct CountingPair : Pair {
  CountingPair() : Pair(kDefaults) {
    net.filter = [this](Packet& pk) {
      if (pk.from.addr != kAddrA) {
        info_from_b += is_exchange(pk, ExchangeType::kInformational);
        return true;
      }
      ++from_a;
      if (is_new_main_mode(pk)) ++mm1_from_a;
      if (is_exchange(pk, ExchangeType::kInformational)) ++info_from_a;
      return true;
    };
    initiate();
  }
  int from_a = 0, mm1_from_a = 0, info_from_a = 0, info_from_b = 0;
};

TEST_F(Quiet, InPlaceUpdateKeepsTheSasAndPushesTheMtu) {
  CountingPair p;
  ASSERT_NO_FATAL_FAILURE(expect_both_active(p));
  const ChildSaInfo before = *p.a.status("site").child;
  const int sent = p.from_a;
  ConnectionConfig c = make_conn(true, {}, {});
  c.mtu = 1400;
  c.dpd = {DpdAction::kRestart, 10, 40};
  c.initiator = InitiatorMode::kResponseOnly;
  ASSERT_TRUE(p.a.update_in_place(std::move(c)));
  p.pump();
  EXPECT_EQ(p.from_a, sent);  // nothing negotiated
  ASSERT_EQ(p.ia.mtu_updates.size(), 1u);
  EXPECT_EQ(p.ia.mtu_updates[0], std::make_pair(before.spi_out, std::uint16_t{1400}));
  p.run_for(20000, 1000);
  const auto after = p.a.status("site");
  ASSERT_EQ(after.state, ConnState::kActive);
  EXPECT_EQ(after.child->spi_in, before.spi_in);
  EXPECT_EQ(after.child->spi_out, before.spi_out);
  EXPECT_EQ(p.mm1_from_a, 1);
  EXPECT_EQ(p.ia.sas.size(), 2u);
  EXPECT_TRUE(p.ia.deleted.empty());
}

TEST_F(Quiet, InPlaceUpdateRefusesANegotiatedChange) {
  CountingPair p;
  ConnectionConfig c = make_conn(true, {}, {}, "another-psk");
  c.mtu = 1400;
  EXPECT_FALSE(p.a.update_in_place(std::move(c)));
  EXPECT_TRUE(p.ia.mtu_updates.empty());
  ConnectionConfig d = make_conn(true, {}, {});
  d.ipsec.lifetime_s = 1800;
  EXPECT_FALSE(p.a.update_in_place(std::move(d)));
  EXPECT_FALSE(p.a.update_in_place(make_conn(false, {}, {})));  // other addresses, other id
}

TEST_F(Quiet, PolicyChangeRenegotiatesMakeBeforeBreak) {
  CountingPair p;
  ASSERT_NO_FATAL_FAILURE(expect_both_active(p));
  const ChildSaInfo old = *p.a.status("site").child;
  IpsecPolicy shorter;
  shorter.lifetime_s = 1800;  // B accepts it (a responder takes the shorter lifetime)
  ASSERT_TRUE(p.a.renegotiate(make_conn(true, {}, shorter)));
  p.pump();
  // A's outbound switch waits until B can receive (no ESP here: kOutboundSwitchDelay).
  p.run_for(static_cast<int>(kOutboundSwitchDelay.count()) + 500, 500);
  // New SAs on both sides, the old ones not yet deleted: both pairs were live together.
  const auto now = p.a.status("site");
  ASSERT_EQ(now.state, ConnState::kActive);
  EXPECT_NE(now.child->spi_in, old.spi_in);
  EXPECT_EQ(now.child->lifetime_s, 1800u);
  EXPECT_EQ(p.mm1_from_a, 2);
  EXPECT_EQ(p.ia.out_current, now.child->spi_out);
  EXPECT_EQ(p.ib.out_current, now.child->spi_in);
  EXPECT_TRUE(p.ia.deleted.empty());
  EXPECT_TRUE(p.ib.deleted.empty());
  EXPECT_EQ(p.ia.live_in, (std::set<std::uint32_t>{old.spi_in, now.child->spi_in}));
  EXPECT_EQ(p.info_from_a, 0);
  // After the grace period the old pair goes, with Deletes to the peer (B, which switched
  // on QM3, may retire its old ISAKMP SA first).
  p.run_for(10000, 500);
  EXPECT_GE(p.info_from_a + p.info_from_b, 1);
  ASSERT_NO_FATAL_FAILURE(expect_one_live_pair(p));
  EXPECT_EQ(*p.ia.live_in.begin(), now.child->spi_in);
  EXPECT_EQ(p.a.status("site").child->spi_out, now.child->spi_out);
  ASSERT_NO_FATAL_FAILURE(expect_both_active(p));
  EXPECT_EQ(p.ia.traps.count(7), 1u);
}

TEST_F(Quiet, RenegotiateMovesTheTrapToNewSelectors) {
  CountingPair p;
  ConnectionConfig c = make_conn(true, {}, {});
  c.peer_subnet = *dp::parse_prefix("10.9.0.0/24");
  ASSERT_TRUE(p.a.renegotiate(std::move(c)));
  ASSERT_EQ(p.ia.traps.count(7), 1u);
  EXPECT_EQ(p.ia.traps[7].second, *dp::parse_prefix("10.9.0.0/24"));
}

TEST_F(Quiet, AdminDownDeletesTheSasBehindTheTrapAndAdminUpComesBack) {
  CountingPair p;
  ASSERT_NO_FATAL_FAILURE(expect_both_active(p));
  const ChildSaInfo old = *p.a.status("site").child;
  ASSERT_TRUE(p.a.set_admin_state("site", false));
  // The trap stayed (traffic dropped, never unmatched); the SAs are gone on both sides.
  EXPECT_EQ(p.ia.traps.count(7), 1u);
  EXPECT_TRUE(p.ia.live_in.empty());
  EXPECT_EQ(p.ia.out_current, 0u);
  p.pump();
  EXPECT_EQ(p.info_from_a, 2);  // Deletes: the CHILD SA, then the ISAKMP SA
  EXPECT_TRUE(p.ib.live_in.empty());
  EXPECT_EQ(p.ib.out_current, 0u);
  p.ia.events.push_back({dp::SaEventKind::kAcquire, dp::Direction::kOutbound, 0, 7});
  p.run_for(60000, 1000);
  EXPECT_EQ(p.mm1_from_a, 1);  // admin down: neither retries nor acquires negotiate
  EXPECT_EQ(p.a.status("site").state, ConnState::kDown);
  ASSERT_TRUE(p.a.set_admin_state("site", true));
  p.run_for(2000, 500);
  EXPECT_EQ(p.mm1_from_a, 2);
  const auto st = p.a.status("site");
  ASSERT_EQ(st.state, ConnState::kActive);
  EXPECT_NE(st.child->spi_in, old.spi_in);
  EXPECT_EQ(p.ia.traps.count(7), 1u);
}

TEST_F(Quiet, AdminUpOfAConnectionAddedDownInstallsItsTrap) {
  Pair p;
  ConnectionConfig a = make_conn(true, {}, {});
  a.admin_state_up = false;
  ASSERT_TRUE(p.a.add_connection(std::move(a)));
  ASSERT_TRUE(p.b.add_connection(make_conn(false, {}, {})));
  p.run_for(2000, 500);
  EXPECT_TRUE(p.ia.sas.empty());
  ASSERT_TRUE(p.a.set_admin_state("site", true));
  EXPECT_EQ(p.ia.traps.count(7), 1u);
  p.run_for(2000, 500);
  ASSERT_NO_FATAL_FAILURE(expect_both_active(p));
}

}  // namespace
}  // namespace ipsecgw::ike::test
