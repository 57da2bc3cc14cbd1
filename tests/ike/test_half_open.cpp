// Half-open responder state under a flood of spoofed MM1s (issue #12): a gateway daemon with
// connections to several peer addresses, real peer daemons behind some of them, and MM1s
// spoofed from the peers' own addresses under ever new initiator cookies. Each peer's first
// half-open negotiation is outside the global cap, extra ones are capped per peer and in all,
// and eviction stays within the peer, sparing a negotiation that got past MM3.
#include <gtest/gtest.h>

#include <memory>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

constexpr dp::Ipv4 kGw = kAddrA;
dp::Ipv4 peer_addr(int i) { return 0xc6336400U + 10U + static_cast<dp::Ipv4>(i); }

ConnectionConfig conn(bool gw_side, int i) {
  ConnectionConfig c = make_conn(true, {}, {});
  c.name = "c" + std::to_string(i);
  c.id = static_cast<std::uint32_t>(100 + i);
  c.local_addr = gw_side ? kGw : peer_addr(i);
  c.peer_addr = gw_side ? peer_addr(i) : kGw;
  const dp::Ipv4Prefix gw_net{0x0a010000U + (static_cast<dp::Ipv4>(i) << 8), 24};
  const dp::Ipv4Prefix peer_net{0x0a020000U + (static_cast<dp::Ipv4>(i) << 8), 24};
  c.local_subnet = gw_side ? gw_net : peer_net;
  c.peer_subnet = gw_side ? peer_net : gw_net;
  c.initiator = gw_side ? InitiatorMode::kResponseOnly : InitiatorMode::kBidirectional;
  return c;
}

// One side of the network: a daemon with its own sender, installer and keys.
struct Node {
  Node(Network& net, const FakeClock& clock, std::uint32_t spi_base)
      : sender(net), installer(spi_base), d(sender, installer, clock, &keys) {}
  dp::Ipv4 addr = 0;
  FakeSender sender;
  FakeInstaller installer;
  FlakyKeys keys;
  Daemon d;
};

// The gateway with `peers` response-only connections, peer i at peer_addr(i). Real peers
// are added on demand (each a daemon at its address with the mirror connection).
struct Site {
  explicit Site(int peers) {
    for (int i = 0; i < peers; ++i) EXPECT_TRUE(gw.d.add_connection(conn(true, i)).ok());
    Node scratch(net, clock, 0x7f000000U);  // its MM1 is the spoofers' template
    EXPECT_TRUE(scratch.d.add_connection(conn(false, 0)).ok());
    scratch.d.tick();
    mm1_template = take().data;
  }
  Node& real_peer(int i) {
    nodes.push_back(
        std::make_unique<Node>(net, clock, 0x100000U * static_cast<std::uint32_t>(nodes.size() + 1)));
    nodes.back()->addr = peer_addr(i);
    EXPECT_TRUE(nodes.back()->d.add_connection(conn(false, i)).ok());
    return *nodes.back();
  }
  Daemon* at(dp::Ipv4 addr) {  // the first daemon at the address
    if (addr == kGw) return &gw.d;
    for (auto& n : nodes)
      if (n->addr == addr) return &n->d;
    return nullptr;
  }
  // The next datagram on the network, delivered (to nobody when its address has no daemon:
  // the answers to spoofed sources).
  void deliver_one() {
    Packet p = net.q.front();
    net.q.pop_front();
    if (Daemon* d = at(p.to.addr)) d->on_datagram({p.to, p.from, p.data});
  }
  void pump(int max = 500) {
    while (!net.q.empty() && max-- > 0) deliver_one();
  }
  // Takes the single datagram on the network off it (held back, delivered later).
  Packet take() {
    EXPECT_EQ(net.q.size(), 1u);
    Packet p = net.q.front();
    net.q.clear();
    return p;
  }
  void put(const Packet& p) { net.q.push_back(p); }
  // An MM1 as a spoofer sends it from peer i's address, under a cookie never used before.
  void spoof_mm1(int i) {
    Bytes m = mm1_template;
    ++spoofed;
    for (std::size_t b = 0; b < 8; ++b) m[b] = static_cast<std::uint8_t>(spoofed >> (8 * b));
    m[7] = 0xee;  // never a real daemon's cookie in this test
    gw.d.on_datagram({{kGw, 500}, {peer_addr(i), 500}, m});
    net.q.clear();  // the MM2 to the spoofed source goes nowhere
  }
  bool active(int i) { return gw.d.status("c" + std::to_string(i)).state == ConnState::kActive; }

  FakeClock clock;
  Network net;
  Node gw{net, clock, 0x1000};
  std::vector<std::unique_ptr<Node>> nodes;
  Bytes mm1_template;
  std::uint64_t spoofed = 0;
};

// A real peer's MM1 is answered; before its MM3 arrives, MM1s spoofed from 39 other peers'
// addresses (8 each, over the cap of extra ones in all) arrive. They cannot take the real
// peer's place: the peer completes, and the counts stay within peers + kMaxHalfOpen.
TEST_F(Quiet, SpoofedMm1sFromOtherPeersCannotStarveARealPeer) {
  constexpr int kPeers = 40;
  Site s(kPeers);
  Node& real = s.real_peer(0);
  real.d.tick();
  s.pump(1);                    // its MM1 to the gateway
  const Packet mm2 = s.take();  // the gateway's MM2, held back while the flood comes
  for (int i = 1; i < kPeers; ++i)
    for (std::size_t k = 0; k < kMaxHalfOpenPerPeer; ++k) s.spoof_mm1(i);
  EXPECT_EQ(s.gw.d.half_open_extra_count(), kMaxHalfOpen);
  EXPECT_EQ(s.gw.d.half_open_count(), kPeers + kMaxHalfOpen);
  EXPECT_GT(s.gw.d.counters().half_open_global_cap, 0u);
  EXPECT_EQ(s.gw.d.counters().half_open, s.gw.d.half_open_count());  // telemetry's gauge
  s.put(mm2);
  s.pump();
  EXPECT_TRUE(s.active(0));
  EXPECT_EQ(real.d.status("c0").state, ConnState::kActive);
  EXPECT_EQ(s.gw.d.half_open_count(), kPeers - 1 + kMaxHalfOpen);  // promoted: no longer half-open
  // The spoofed ones time out; the totals come back to zero.
  for (int t = 0; t <= kHalfOpenTimeout.count() / 1000; ++t) {
    s.clock.t += Millis{1000};
    s.gw.d.tick();
    s.net.q.clear();
  }
  EXPECT_EQ(s.gw.d.half_open_count(), 0u);
  EXPECT_EQ(s.gw.d.half_open_extra_count(), 0u);
  EXPECT_TRUE(s.active(0));
}

// MM1s spoofed from a real peer's own address at a high rate, after its MM3 reached us: the
// per-peer cap evicts the oldest negotiation still waiting for MM3, never the real one that
// is past it (it waits for MM5), which then completes.
TEST_F(Quiet, FloodFromAPeersOwnAddressSparesItsNegotiationPastMm3) {
  Site s(2);
  Node& real = s.real_peer(0);
  real.d.tick();
  s.pump(3);                    // MM1, MM2, MM3
  const Packet mm4 = s.take();  // the gateway's MM4, held back while the flood comes
  constexpr std::size_t kFlood = 100;
  for (std::size_t k = 0; k < kFlood; ++k) s.spoof_mm1(0);
  EXPECT_EQ(s.gw.d.half_open_count(), kMaxHalfOpenPerPeer);
  EXPECT_EQ(s.gw.d.counters().half_open_peer_cap, kFlood - (kMaxHalfOpenPerPeer - 1));
  EXPECT_EQ(s.gw.d.counters().half_open_global_cap, 0u);
  s.put(mm4);
  s.pump();
  EXPECT_TRUE(s.active(0));
  EXPECT_EQ(real.d.status("c0").state, ConnState::kActive);
  EXPECT_EQ(s.gw.d.half_open_count(), kMaxHalfOpenPerPeer - 1);
  // The other peer was never touched: its first MM1 still has room.
  Node& other = s.real_peer(1);
  other.d.tick();
  s.pump();
  EXPECT_TRUE(s.active(1));
}

// A peer whose kMaxHalfOpenPerPeer negotiations are all past MM3 (here: real daemons at its
// address that got MM4): a further MM1 is refused, no state and no answer, counted as a
// per-peer cap hit; the eight complete.
TEST_F(Quiet, NewMm1IsRefusedWhenAllOfAPeersNegotiationsArePastMm3) {
  Site s(1);
  std::vector<Node*> reals;
  std::vector<Packet> mm4s;
  for (std::size_t k = 0; k < kMaxHalfOpenPerPeer; ++k) {
    reals.push_back(&s.real_peer(0));
    reals.back()->d.tick();
    // MM1, MM2, MM3 between the gateway and this daemon (the only one at the address that
    // gets the gateway's answers while we route them by hand).
    for (int m = 0; m < 3; ++m) {
      Packet p = s.take();
      Daemon& to = p.to.addr == kGw ? s.gw.d : reals.back()->d;
      to.on_datagram({p.to, p.from, p.data});
    }
    mm4s.push_back(s.take());
  }
  ASSERT_EQ(s.gw.d.half_open_count(), kMaxHalfOpenPerPeer);
  s.spoof_mm1(0);
  EXPECT_EQ(s.gw.d.half_open_count(), kMaxHalfOpenPerPeer);
  EXPECT_EQ(s.gw.d.counters().half_open_peer_cap, 1u);
  EXPECT_EQ(s.gw.d.counters().half_open_created, kMaxHalfOpenPerPeer);
  for (std::size_t k = 0; k < kMaxHalfOpenPerPeer; ++k) {
    reals[k]->d.on_datagram({mm4s[k].to, mm4s[k].from, mm4s[k].data});  // MM5 out
    Packet mm5 = s.take();
    s.gw.d.on_datagram({mm5.to, mm5.from, mm5.data});
    EXPECT_EQ(s.gw.d.half_open_count(), kMaxHalfOpenPerPeer - 1 - k);
    s.net.q.clear();  // MM6 (each daemon's Quick Mode is not the point here)
  }
}

}  // namespace
}  // namespace ipsecgw::ike::test
