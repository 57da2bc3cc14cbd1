// Off-path attacks on the responder and on our own negotiations: spoofed MM1s and "MM3"s from
// a configured peer's address, wrong responder cookies, half-open state and its caps.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

// A's MM1 delivered to B (which answers with MM2, left on the network).
struct AfterMm1 : Pair {
  AfterMm1() : Pair(kDefaults) {
    a.tick();
    EXPECT_EQ(net.q.size(), 1u);
    mm1 = net.q.front();
    net.q.clear();
    b.on_datagram({mm1.to, mm1.from, mm1.data});
    EXPECT_EQ(net.q.size(), 1u);
    mm2 = net.q.front();
    net.q.clear();
  }
  // An "MM3" (KE with a valid public value, nonce) under A's initiator cookie and `rcookie`.
  Bytes forged_mm3(const Cookie& rcookie) const {
    Header h = parse_header(mm1.data).value();
    h.rcookie = rcookie;
    auto kp = crypto::DhKeyPair::generate(IkePolicy{}.group);
    PayloadChain c;
    c.add(PayloadType::kKe, kp->public_value());
    c.add(PayloadType::kNonce, Bytes(32, 7));
    return build_message(h, c);
  }
  Packet mm1, mm2;
};

TEST_F(Quiet, Mm3WithoutOurResponderCookieIsDroppedBeforeAnyDhWork) {
  AfterMm1 p;
  p.b.on_datagram({p.mm1.to, p.mm1.from, p.forged_mm3(Cookie{})});
  EXPECT_TRUE(p.net.q.empty()) << "an MM3 with a zero responder cookie was answered (DH done)";
  p.b.on_datagram({p.mm1.to, p.mm1.from, p.forged_mm3(Cookie{1, 2, 3, 4, 5, 6, 7, 8})});
  EXPECT_TRUE(p.net.q.empty()) << "an MM3 with a wrong responder cookie was answered";
  EXPECT_EQ(p.b.counters().bad_cookie_drops, 2u);
  // The real exchange is untouched.
  p.net.q.push_back(p.mm2);
  p.pump();
  expect_both_active(p);
}

}  // namespace
}  // namespace ipsecgw::ike::test
