// Rekeys we initiate lose no packets: the outbound SA is switched only once the peer can
// receive on the new one. The peer here is modelled on strongSwan's IKEv1 responder, which
// installs its new SA pair only when QM3 arrives: B accepts ESP on an inbound SPI only once
// that SPI has been B's current one (B switches on QM3), while the SA is still installed.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

struct StrictPeerPair : Pair {
  // `soft_packets`: the CHILD SAs' soft packet limit on both sides (0: the default).
  explicit StrictPeerPair(std::uint64_t soft_packets = 0) : Pair(IkePolicy{}, short_child()) {
    if (soft_packets != 0) {
      a.set_child_soft_packets(soft_packets);
      b.set_child_soft_packets(soft_packets);
    }
    net.filter = [this](Packet&) {
      check();  // before every delivery: the moment QM3 is still on the wire counts
      return true;
    };
    initiate();  // the first pair: before it, A's traffic waits at the trap anyway
    armed = true;
    check();
  }
  // Would a packet A sends now reach B's hosts? And B's, A's?
  void check() {
    if (!armed) return;
    if (auto c = b.status("site").child) b_ready.insert(c->spi_in);
    if (ia.out_current != 0 && !(b_ready.count(ia.out_current) && ib.live_in.count(ia.out_current)))
      ++a_to_b_lost;
    if (ib.out_current != 0 && !ia.live_in.count(ib.out_current)) ++b_to_a_lost;
  }
  // One 100 ms step; when `b_sends`, B's outbound SA carries a packet to A's inbound SA.
  void step(bool b_sends) {
    clock.t += Millis{100};
    if (b_sends && ib.out_current != 0) ++ia.in_packets_by_spi[ib.out_current];
    a.tick();
    pump();
    b.tick();
    pump();
    check();
  }
  // Steps until A has added another outbound SA (at most `max_ms`); the time that took.
  Millis step_until_a_switches(bool b_sends, int max_ms) {
    const std::size_t outs = outbound_adds(ia);
    const Millis t0 = clock.t;
    for (int t = 0; t < max_ms && outbound_adds(ia) == outs; t += 100) step(b_sends);
    return clock.t - t0;
  }
  // A sends one packet on its outbound SA; like the data plane, the packet that reaches the
  // SA's soft limit raises kSoftLimit.
  void a_sends_one() {
    const std::uint32_t spi = ia.out_current;
    if (spi == 0) return;
    const std::uint64_t n = ++a_out_packets[spi];
    for (const auto& s : ia.sas)
      if (s.dir == dp::Direction::kOutbound && s.spi == spi && s.soft_packets == n)
        ia.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound, spi, s.conn_id});
  }
  std::map<std::uint32_t, std::uint64_t> a_out_packets;
  bool armed = false;
  std::set<std::uint32_t> b_ready;
  int a_to_b_lost = 0, b_to_a_lost = 0;
};

// Advances until A's rekey has installed its new inbound SA (QM2 processed, QM3 sent).
std::uint32_t until_a_rekey_negotiated(StrictPeerPair& p, bool b_sends) {
  const std::size_t ins = p.ia.sas.size();
  for (int t = 0; t < 70000 && p.ia.sas.size() == ins; t += 100) p.step(b_sends);
  EXPECT_EQ(p.ia.sas.size(), ins + 1);
  EXPECT_EQ(p.ia.sas.back().dir, dp::Direction::kInbound);
  return p.ia.sas.back().spi;
}

TEST_F(Quiet, OurRekeySwitchesOutboundWhenThePeerSendsOnTheNewPair) {
  StrictPeerPair p;
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  for (int rekey = 0; rekey < 3; ++rekey) {
    const auto old = *p.a.status("site").child;
    const std::uint32_t new_in = until_a_rekey_negotiated(p, true);
    // QM3 went out; B (which got it in the same pump) switched and sends on the new pair,
    // which A sees at its next tick.
    const Millis took = p.step_until_a_switches(true, 5000);
    EXPECT_LE(took, Millis{200}) << "rekey " << rekey;
    EXPECT_LT(took, kOutboundSwitchDelay);
    const auto now = *p.a.status("site").child;
    EXPECT_EQ(now.spi_in, new_in);
    EXPECT_NE(now.spi_out, old.spi_out);
    EXPECT_EQ(p.ia.out_current, now.spi_out);
    EXPECT_EQ(p.b.status("site").child->spi_in, now.spi_out);
  }
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.a_to_b_lost, 0);
  EXPECT_EQ(p.b_to_a_lost, 0);
  expect_both_active(p);
}

TEST_F(Quiet, OurRekeySwitchesOutboundAfterTheDelayWhenThePeerSendsNothing) {
  StrictPeerPair p;
  const auto old = *p.a.status("site").child;
  until_a_rekey_negotiated(p, false);
  // Until the delay has passed A keeps sending on the old pair.
  for (int t = 100; t < kOutboundSwitchDelay.count(); t += 100) {
    p.step(false);
    EXPECT_EQ(p.ia.out_current, old.spi_out);
    EXPECT_EQ(p.a.status("site").child->spi_out, old.spi_out);
  }
  const Millis took = p.step_until_a_switches(false, 5000);
  EXPECT_LE(took, Millis{200});
  EXPECT_NE(p.ia.out_current, old.spi_out);
  EXPECT_EQ(p.a.status("site").child->spi_out, p.ia.out_current);
  EXPECT_EQ(p.a_to_b_lost, 0);
  EXPECT_EQ(p.b_to_a_lost, 0);
}

// The peer deletes the old pair (e.g. it gives up) while A waits to switch: A's pending new
// inbound SA goes too; nothing is left behind.
TEST_F(Quiet, PendingOutboundSwitchIsDroppedWithTheIsakmpSa) {
  StrictPeerPair p;
  const std::uint32_t new_in = until_a_rekey_negotiated(p, false);
  ASSERT_EQ(p.ia.live_in.count(new_in), 1u);
  ASSERT_TRUE(p.a.remove_connection("site").ok());
  EXPECT_EQ(p.ia.live_in.count(new_in), 0u);
  EXPECT_TRUE(p.ia.live_in.empty());
  EXPECT_EQ(p.ia.out_current, 0u);
}

// A changed connection is renegotiated make-before-break under a new ISAKMP SA (issue #9):
// its first CHILD SA replaces the live one of the old ISAKMP SA, and A switches outbound as
// for its rekeys, once B (which installs on QM3) sends on the new pair.
TEST_F(Quiet, RenegotiationSwitchesOutboundOnlyOnceThePeerCanReceive) {
  StrictPeerPair p;
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old = *p.a.status("site").child;
  IpsecPolicy longer = short_child();
  longer.lifetime_s = 120;  // B answers with its 60 s (a responder takes the shorter one)
  auto r = p.a.renegotiate(make_conn(true, {}, longer));
  ASSERT_TRUE(r) << r.error();
  for (int t = 0; t < 3000; t += 100) p.step(true);
  const auto now = *p.a.status("site").child;
  EXPECT_NE(now.spi_in, old.spi_in);
  EXPECT_EQ(p.ia.out_current, now.spi_out);
  EXPECT_EQ(p.b.status("site").child->spi_in, now.spi_out);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.a_to_b_lost, 0);
  EXPECT_EQ(p.b_to_a_lost, 0);
  expect_both_active(p);
}

TEST_F(Quiet, ChildSasGetTheDefaultSoftPacketLimitBothWays) {
  Pair p(kDefaults);
  p.initiate();
  ASSERT_EQ(p.ia.sas.size(), 2u);
  ASSERT_EQ(p.ib.sas.size(), 2u);
  for (const auto* in : {&p.ia, &p.ib})
    for (const auto& s : in->sas) EXPECT_EQ(s.soft_packets, 0xf0000000u);  // 2^32 - 2^28
}

// Traffic crosses a small injected soft limit again and again, long before the lifetime:
// each crossing rekeys make-before-break and nothing is lost.
TEST_F(Quiet, SoftPacketLimitUnderTrafficRekeysMakeBeforeBreakWithoutLoss) {
  constexpr std::uint64_t kSoft = 40;
  StrictPeerPair p(kSoft);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto first = *p.a.status("site").child;
  std::set<std::uint32_t> a_outbound_used{p.ia.out_current};
  for (int i = 0; i < 250; ++i) {  // 25 s at 10 packets/s each way; the lifetime is 60 s
    p.a_sends_one();
    p.step(true);
    a_outbound_used.insert(p.ia.out_current);
  }
  // 250 packets at 40 per SA: a new outbound SA about every 40 (a few more while each rekey
  // runs); no SA got far past its limit.
  EXPECT_GE(a_outbound_used.size(), 5u);
  for (const auto& [spi, n] : p.a_out_packets) EXPECT_LE(n, kSoft + 15) << "SPI " << spi;
  for (const auto& s : p.ia.sas) EXPECT_EQ(s.soft_packets, kSoft);
  for (const auto& s : p.ib.sas) EXPECT_EQ(s.soft_packets, kSoft);
  EXPECT_NE(p.a.status("site").child->spi_in, first.spi_in);
  EXPECT_EQ(p.a_to_b_lost, 0);
  EXPECT_EQ(p.b_to_a_lost, 0);
  expect_both_active(p);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
}

}  // namespace
}  // namespace ipsecgw::ike::test
