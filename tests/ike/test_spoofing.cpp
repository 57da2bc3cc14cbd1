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

// A copy of `mm1` under another initiator cookie, as a spoofer would send it.
Bytes respoofed(Bytes mm1, std::uint8_t tag) {
  for (int i = 0; i < 8; ++i) mm1[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(tag + i);
  return mm1;
}

// B (the higher address) initiates; before its MM1 reaches A, a spoofed MM1 "from A" reaches
// B. It must not make B abandon its own negotiation (simultaneous-initiation yield).
TEST_F(Quiet, SpoofedMm1DoesNotTearDownOurOwnInitiatorSa) {
  Pair p;
  auto ca = make_conn(true, {}, {});
  ca.initiator = InitiatorMode::kResponseOnly;
  auto cb = make_conn(false, {}, {});
  cb.initiator = InitiatorMode::kBidirectional;
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
  p.b.tick();
  ASSERT_EQ(p.net.q.size(), 1u);
  const Packet mm1 = p.net.q.front();
  p.b.on_datagram({mm1.from, {kAddrA, 500}, respoofed(mm1.data, 0x40)});
  p.pump();
  expect_both_active(p);
}

// Spoofed MM1s from the peer's address (more than the per-peer cap) before our first tick:
// they neither stop our own initiation nor grow without bound.
TEST_F(Quiet, SpoofedMm1FloodNeitherBlocksOurInitiationNorGrowsUnbounded) {
  Pair p(kDefaults);
  p.a.tick();  // A's MM1, taken as the template of the flood and then discarded
  const Packet mm1 = p.net.q.front();
  p.net.q.clear();
  ASSERT_TRUE(p.a.remove_connection("site").ok());
  ASSERT_TRUE(p.a.add_connection(make_conn(true, {}, {})).ok());
  const std::size_t n = kMaxHalfOpenPerPeer + 12;
  for (std::size_t i = 0; i < n; ++i)
    p.a.on_datagram(
        {{kAddrA, 500}, {kAddrB, 500}, respoofed(mm1.data, static_cast<std::uint8_t>(i * 8))});
  EXPECT_EQ(p.a.counters().half_open_created, n);
  EXPECT_EQ(p.a.counters().half_open_peer_cap, n - kMaxHalfOpenPerPeer);
  p.net.q.clear();  // the MM2s to the spoofed source
  p.initiate();     // the half-open entries do not make the connection "busy"
  expect_both_active(p);
}


// Unprotected error notifies and undecryptable "encrypted" messages under our cookies (an
// on-path injector knows them) do not abort a negotiation: counted, ignored.
TEST_F(Quiet, UnauthenticatedNotifiesAndGarbageDoNotAbortANegotiation) {
  Pair p(kDefaults);
  int injected = 0;
  p.net.filter = [&](Packet& pk) {
    auto h = parse_header(pk.data);
    if (!h || pk.from.addr != kAddrB || injected >= 6) return true;
    ++injected;
    Header e = *h;
    e.exchange = static_cast<std::uint8_t>(ExchangeType::kInformational);
    e.message_id = 0x01020304u + static_cast<std::uint32_t>(injected);
    PayloadChain c;
    c.add(PayloadType::kNotify, build_notify({1, kProtoIsakmp, notify::kNoProposalChosen, {}, {}}));
    const Bytes forged = injected % 2 ? build_message(e, c) : undecryptable_message(e, 0x5a);
    p.net.q.push_front({pk.from, pk.to, forged});  // delivered just before the real one
    return true;
  };
  p.initiate();
  p.run_for(20000, 1000);
  expect_both_active(p);
  EXPECT_GE(p.a.counters().unauthenticated_drops, 3u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
