// Lifetimes and rekeying: CHILD SA rekey make-before-break, hard expiry, data-plane
// events, phase-1 re-establishment, Delete under the newest ISAKMP SA, INITIAL-CONTACT.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

TEST_F(Quiet, ChildSaIsRekeyedBeforeExpiryMakeBeforeBreakAndOldPairDeletedAfterGrace) {
  Pair p(IkePolicy{}, short_child());
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_a = *p.a.status("site").child;
  // Soft expiry of the creator (A): 60 s - (10..15)% = 51..54 s; nothing before 51 s.
  p.run_for(50000, 500);
  EXPECT_EQ(p.ia.sas.size(), 2u);
  p.run_for(4500 + static_cast<int>(kOutboundSwitchDelay.count()), 500);  // + A's switch
  ASSERT_EQ(p.ia.sas.size(), 4u);  // one rekey: a new inbound and outbound SA on each side
  ASSERT_EQ(p.ib.sas.size(), 4u);
  const auto now_a = *p.a.status("site").child;
  EXPECT_NE(now_a.spi_in, old_a.spi_in);
  EXPECT_NE(now_a.spi_out, old_a.spi_out);
  EXPECT_EQ(p.b.status("site").child->spi_in, now_a.spi_out);
  // B added its new inbound SA (when sending QM2) before A's outbound switched to it, and A
  // its new inbound before its outbound.
  EXPECT_EQ(p.ib.order[2], dp::Direction::kInbound);
  EXPECT_EQ(p.ia.order[2], dp::Direction::kInbound);
  EXPECT_EQ(p.ia.order[3], dp::Direction::kOutbound);
  // Within the grace period the old inbound SAs still work.
  EXPECT_EQ(p.ia.live_in.count(old_a.spi_in), 1u);
  EXPECT_EQ(p.ib.live_in.count(old_a.spi_out), 1u);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.ia.out_current, now_a.spi_out);
  expect_both_active(p);
  // Keys of the new pair match across the sides.
  expect_matching_sas_at(p, 2);
  // And it keeps going: several more lifetimes, always one live pair after the grace period.
  for (int i = 0; i < 3; ++i) {
    p.run_for(60000, 500);
  }
  EXPECT_GE(outbound_adds(p.ia), 4u);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
}

TEST_F(Quiet, ResponderRekeysWhenTheInitiatorDoesNotByItsLaterMargin) {
  Pair p(IkePolicy{}, short_child());
  p.initiate();
  const auto old_b = *p.b.status("site").child;
  // A's rekey Quick Mode is lost until B has started its own.
  bool b_started = false;
  p.net.filter = [&](Packet& pk) {
    if (!is_quick_mode_on_wire(pk)) return true;
    if (pk.from.addr == kAddrB) b_started = true;
    return pk.from.addr == kAddrB || b_started;
  };
  p.run_for(57000, 500);
  EXPECT_FALSE(b_started);  // B waits past A's window (85..90% of 60 s)
  p.run_for(2000, 500);     // B's margin: 97% = 58.2 s
  ASSERT_TRUE(b_started);
  p.run_for(static_cast<int>(kOutboundSwitchDelay.count()), 500);  // B's outbound switch
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  const auto now_b = *p.b.status("site").child;
  EXPECT_NE(now_b.spi_in, old_b.spi_in);
  // B initiated this one: it installed inbound then outbound on QM2.
  EXPECT_EQ(p.ib.sas[2].dir, dp::Direction::kInbound);
  EXPECT_EQ(p.ib.sas[2].spi, now_b.spi_in);
  EXPECT_EQ(p.ib.sas[3].spi, now_b.spi_out);
  EXPECT_EQ(p.a.status("site").child->spi_in, now_b.spi_out);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  // Whatever A's late copies of its own rekey did, after the grace period and A's abandon
  // timeout exactly one pair is live and in use.
  p.run_for(static_cast<int>(kRekeyAbandonAfter.count()) + kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, HardExpiryWithoutSuccessfulRekeyDeletesThePairAndPeerHonoursTheDelete) {
  Pair p(IkePolicy{}, short_child());
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto c = *p.a.status("site").child;
  // From now on every Quick Mode message is lost: no rekey can succeed; informational
  // exchanges still pass.
  p.net.filter = [](Packet& pk) { return !is_quick_mode_on_wire(pk); };
  // A ticks and its messages are delivered before B ticks: B learns of A's hard expiry from
  // A's Delete, not from its own timer.
  p.run_a_then_b_for(61000);
  EXPECT_EQ(p.ia.live_in.count(c.spi_in), 0u);
  EXPECT_EQ(p.ia.out_current, 0u);
  EXPECT_EQ(p.ib.live_in.count(c.spi_out), 0u);
  EXPECT_EQ(p.ib.out_current, 0u);
  auto sb = p.b.status("site");
  EXPECT_EQ(sb.state, ConnState::kError);
  EXPECT_EQ(sb.reason, "deleted by peer");
}

TEST_F(Quiet, SequenceExhaustionEventFromTheDataPlaneRekeysAtOnce) {
  Pair p(kDefaults);
  p.initiate();
  const auto c = *p.a.status("site").child;
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound, c.spi_in, 9});
  p.run_for(500, 500);
  ASSERT_EQ(p.ia.sas.size(), 4u);
  EXPECT_NE(p.a.status("site").child->spi_in, c.spi_in);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  // A soft volume limit on A's side does the same.
  const auto c2 = *p.a.status("site").child;
  p.ia.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound, c2.spi_out, 7});
  p.run_for(kRekeyGrace.count() + 1500, 500);
  EXPECT_EQ(p.ia.sas.size(), 6u);
  EXPECT_NE(p.a.status("site").child->spi_out, c2.spi_out);
  expect_one_live_pair(p);
}

TEST_F(Quiet, PhaseOneIsReestablishedBeforeExpiryAndTheOldIkeSaRetired) {
  IkePolicy ike;
  ike.lifetime_s = 120;
  IpsecPolicy ip;
  Pair p(ike, ip);
  int mm1 = 0;
  p.net.filter = [&](Packet& pk) {
    static const Cookie kZero{};
    if (pk.data.size() >= 28 && pk.data[18] == 2 &&
        std::equal(kZero.begin(), kZero.end(), pk.data.begin() + 8))
      ++mm1;
    return true;
  };
  p.initiate();
  const auto c = *p.a.status("site").child;
  for (int t = 0; t < 125000; t += 500) {
    p.run_for(500, 500);
    ASSERT_EQ(p.a.status("site").state, ConnState::kActive) << t;
    ASSERT_EQ(p.b.status("site").state, ConnState::kActive) << t;
  }
  EXPECT_EQ(mm1, 2);  // the first Main Mode and one re-establishment
  EXPECT_NE(p.a.status("site").child->spi_in, c.spi_in);
  expect_one_live_pair(p);
}

// The interop sequence against strongSwan: the CHILD SA is rekeyed under ISAKMP SA #1, then
// phase 1 is re-established (#2) with a new CHILD SA. strongSwan moves the CHILD SAs of #1 onto
// #2 (IKEv1 reauthentication) and ignores Deletes for them under #1, so the still-installed
// CHILD SA of #1 must be deleted with a Delete under #2. B plays strongSwan here: everything A
// sends under #1 after #2 started is lost, and A ticks (and is heard) before B's own retirement.
TEST_F(Quiet, ChildOfAReplacedIsakmpSaIsDeletedUnderTheNewestOne) {
  std::vector<std::string> lines;
  set_log_sink([&](LogLevel, std::string_view l) { lines.emplace_back(l); });
  IkePolicy ike;
  ike.lifetime_s = 100;  // soft expiry of the creator at 85..90 s
  Pair p(ike, short_child());  // CHILD SA rekey at 51..54 s
  std::optional<Cookie> first, second;
  p.net.filter = [&](Packet& pk) {
    auto h = parse_header(pk.data);
    if (!h) return true;
    if (is_new_main_mode(pk) && pk.from.addr == kAddrA) (first ? second : first) = h->icookie;
    return !(second && pk.from.addr == kAddrA && h->icookie == *first);
  };
  p.initiate();
  ASSERT_TRUE(first.has_value());
  const auto c1 = *p.a.status("site").child;
  // Rekeyed under #1, old pair deleted after the grace period, before #2 starts.
  p.run_a_then_b_for(60000);
  ASSERT_FALSE(second.has_value());
  const auto c2 = *p.a.status("site").child;
  ASSERT_NE(c2.spi_in, c1.spi_in);
  expect_one_live_pair(p);
  // #2 with its own CHILD SA; #1 and its CHILD SA (c2) retired after the grace period.
  for (int t = 0; t < 40000; t += 500) {
    p.step_a_then_b();
    ASSERT_EQ(p.a.status("site").state, ConnState::kActive) << t;
    ASSERT_EQ(p.b.status("site").state, ConnState::kActive) << t;
  }
  ASSERT_TRUE(second.has_value());
  const auto c3 = *p.a.status("site").child;
  EXPECT_NE(c3.spi_in, c2.spi_in);
  // B removed c2 because of A's Delete under #2 (A's copies under #1 never arrived).
  const std::string want = "site " + hex(*first);
  const std::string del = ": peer deleted the CHILD SA, SPI out ";
  const bool honoured = std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.rfind(want, 0) == 0 && l.find(del) != std::string::npos &&
           l.find(hex(Bytes{static_cast<std::uint8_t>(c2.spi_in >> 24),
                            static_cast<std::uint8_t>(c2.spi_in >> 16),
                            static_cast<std::uint8_t>(c2.spi_in >> 8),
                            static_cast<std::uint8_t>(c2.spi_in)})) != std::string::npos;
  });
  EXPECT_TRUE(honoured) << "B never received a Delete for the CHILD SA of #1 under #2";
  // Exactly one pair on each side, the one negotiated under #2.
  expect_one_live_pair(p);
  EXPECT_EQ(*p.ia.live_in.begin(), c3.spi_in);
  EXPECT_EQ(p.ia.out_current, c3.spi_out);
  EXPECT_EQ(p.ib.live_in.count(c2.spi_out), 0u);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, InitialContactFromARestartedPeerRemovesItsStaleSas) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.initiate();
  const auto old_b = *p.b.status("site").child;
  // A restarts without telling B: a fresh daemon and data plane, the same addresses.
  FakeInstaller ia2{0x5000};
  auto a2 = std::make_unique<Daemon>(p.sa, ia2, p.clock);
  ASSERT_TRUE(a2->add_connection(make_conn(true, ike, ip)).ok());
  a2->tick();
  for (int i = 0; i < 200 && !p.net.q.empty(); ++i) {
    Packet pk = p.net.q.front();
    p.net.q.pop_front();
    if (pk.to.addr == kAddrA) a2->on_datagram({pk.to, pk.from, pk.data});
    else p.b.on_datagram({pk.to, pk.from, pk.data});
  }
  ASSERT_EQ(a2->status("site").state, ConnState::kActive);
  EXPECT_EQ(p.ib.live_in.count(old_b.spi_in), 0u);  // removed on INITIAL-CONTACT
  ASSERT_EQ(p.ib.live_in.size(), 1u);
  EXPECT_EQ(*p.ib.live_in.begin(), a2->status("site").child->spi_out);
  EXPECT_EQ(p.ib.out_current, a2->status("site").child->spi_in);
}

}  // namespace
}  // namespace ipsecgw::ike::test
