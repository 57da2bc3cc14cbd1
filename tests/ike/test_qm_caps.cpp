// Per-connection caps on the peer's Quick Modes (issue #10 item 5): an authenticated peer
// that keeps starting Quick Modes it never completes must not fill the SA table. The peer
// (A) runs on its own clock: each step it abandons its unanswered rekey and starts another
// with a fresh, authenticated QM1, while B's clock barely moves.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

struct FloodPair {
  FakeClock ca, cb;
  Network net;
  FakeSender sa{net}, sb{net};
  FakeInstaller ia{0x1000}, ib{0x2000};
  Daemon a{sa, ia, ca}, b{sb, ib, cb};
  FloodPair() {
    EXPECT_TRUE(a.add_connection(make_conn(true, IkePolicy{}, IpsecPolicy{})).ok());
    EXPECT_TRUE(b.add_connection(make_conn(false, IkePolicy{}, IpsecPolicy{})).ok());
  }
  void pump(int max = 200) {
    while (!net.q.empty() && max-- > 0) {
      Packet p = net.q.front();
      net.q.pop_front();
      if (net.filter && !net.filter(p)) continue;
      (p.to.addr == kAddrA ? a : b).on_datagram({p.to, p.from, p.data});
    }
  }
  // A abandons its unanswered rekey (kRekeyAbandonAfter) and starts another: one fresh QM1.
  void a_sends_fresh_qm1() {
    ca.t += kRekeyAbandonAfter + Millis{1000};
    a.tick();
    ia.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound, ia.out_current, 7});
    a.tick();
    pump();
    cb.t += Millis{100};
    b.tick();
    pump();
  }
};

TEST_F(Quiet, IncompleteQuickModesOfThePeerAreCappedAndExpire) {
  FloodPair p;
  p.a.tick();
  p.pump();
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.ib.live_in.size(), 1u);
  ASSERT_TRUE(p.b.status("site").child);
  // B's QM2s never reach A: each of A's Quick Modes stays in QM2_SENT at B.
  p.net.filter = [](Packet& pk) { return !(pk.to.addr == kAddrA && is_quick_mode_on_wire(pk)); };
  const std::size_t adds_before = p.ib.sas.size();
  for (int i = 0; i < 12; ++i) p.a_sends_fresh_qm1();
  // Current pair + at most kMaxChildSasPerSlot - 1 Quick Modes in flight; the rest dropped
  // before any SA was added, and counted.
  EXPECT_LE(p.ib.live_in.size(), kMaxChildSasPerSlot);
  EXPECT_LE(p.ib.sas.size() - adds_before, kMaxChildSasPerSlot - 1);
  EXPECT_GE(p.b.counters().quick_mode_cap_drops, 12u - (kMaxChildSasPerSlot - 1));
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  // Without QM3 the inbound SAs of those Quick Modes go after kResponderQmTimeout; the
  // current pair stays, and the peer may negotiate again.
  p.cb.t += kResponderQmTimeout;
  p.b.tick();
  EXPECT_EQ(p.ib.live_in.size(), 1u);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  const std::uint32_t old_in = p.b.status("site").child->spi_in;
  p.net.filter = nullptr;
  p.a_sends_fresh_qm1();
  ASSERT_TRUE(p.b.status("site").child);
  EXPECT_NE(p.b.status("site").child->spi_in, old_in);  // a new pair replaced the old one
}

}  // namespace
}  // namespace ipsecgw::ike::test
