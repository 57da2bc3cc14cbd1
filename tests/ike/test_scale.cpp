// The IKE daemon's work per datagram and per tick does not grow with the number of
// connections (issue #12). A gateway daemon A with N connections, each to its own peer
// address, against one daemon B that holds all N peer addresses (as one strongSwan charon with
// many addresses does in scripts/bench-ike). Daemon::sa_visits() counts the IKE SAs A examined
// (finding a datagram's SA, ticking, data-plane events); it is compared for N = 10 and 1,000.
// Before the indexes and the timer heap, every datagram walked all peers' SAs and every tick
// ticked every SA: thousands of visits per tunnel at N = 1,000 instead of a few.
#include <cstdio>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

dp::Ipv4 peer_addr(int i) { return 0xcb000000U + 0x10000U + static_cast<dp::Ipv4>(i); }

ConnectionConfig conn(bool a_side, int i) {
  IkePolicy ike;
  ike.group = crypto::DhGroup::kModp1024;  // cheap DH: the test is about the daemon's walks
  IpsecPolicy ipsec;
  ipsec.pfs = crypto::DhGroup::kModp1024;
  ConnectionConfig c = make_conn(a_side, ike, ipsec);
  c.name = "c" + std::to_string(i);
  c.id = static_cast<std::uint32_t>(i + 1);
  const dp::Ipv4 local = 0x0a000000U + (static_cast<dp::Ipv4>(i) << 8);   // 10.x.y.0/24
  const dp::Ipv4 remote = 0xac100000U + (static_cast<dp::Ipv4>(i) << 8);  // 172.16+.y.0/24
  c.local_addr = a_side ? kAddrA : peer_addr(i);
  c.peer_addr = a_side ? peer_addr(i) : kAddrA;
  c.local_subnet = {a_side ? local : remote, 24};
  c.peer_subnet = {a_side ? remote : local, 24};
  return c;
}

struct Many {
  explicit Many(int n) : n(n) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(b.add_connection(conn(false, i)).ok());
  }
  // A's connections, 8 per 20 ms tick: B sees every MM1 from A's one address and keeps at
  // most kMaxHalfOpenPerPeer (8) half-open negotiations per address.
  void bring_up() {
    for (int i = 0; i < n; i += 8) {
      for (int k = i; k < std::min(n, i + 8); ++k)
        EXPECT_TRUE(a.add_connection(conn(true, k)).ok());
      step();
    }
    for (int i = 0; i < 50 && active() < n; ++i) step();
  }
  void pump() {
    while (!net.q.empty()) {
      Packet p = net.q.front();
      net.q.pop_front();
      if (p.to.addr == kAddrA) {
        to_a.push_back(p);
        a.on_datagram({p.to, p.from, p.data});
      } else {
        b.on_datagram({p.to, p.from, p.data});
      }
    }
  }
  void step(int ms = 20) {  // the gateway ticks IKE every 20 ms
    clock.t += Millis{ms};
    a.tick();
    b.tick();
    pump();
  }
  int active() const {
    int k = 0;
    for (int i = 0; i < n; ++i) k += a.status("c" + std::to_string(i)).state == ConnState::kActive;
    return k;
  }
  int n;
  FakeClock clock;
  Network net;
  FakeSender sa{net}, sb{net};
  FakeInstaller ia{0x1000}, ib{0x40000000};
  Daemon a{sa, ia, clock}, b{sb, ib, clock};
  std::vector<Packet> to_a;
};

struct Work {
  double setup_per_tunnel;     // visits from the first connection until all are ACTIVE, per tunnel
  std::uint64_t max_tick;      // the most visits in one 20 ms step over 40 s
  double per_tunnel_second;    // visits per tunnel and second over 40 s (DPD included)
  std::uint64_t unknown_cookie;  // visits for one datagram with cookies nobody holds
  std::uint64_t known_cookie;    // visits for one (replayed) datagram of the last peer's SA
};

Work measure(int n) {
  Many m(n);
  Work w{};
  const std::uint64_t v0 = m.a.sa_visits();
  m.bring_up();
  EXPECT_EQ(m.active(), n);
  w.setup_per_tunnel = static_cast<double>(m.a.sa_visits() - v0) / n;
  m.step();  // the peers touched by the last datagrams are ticked once
  std::uint64_t v = m.a.sa_visits();
  const std::uint64_t v40 = v;
  for (int i = 0; i < 2000; ++i) {
    m.step();
    w.max_tick = std::max(w.max_tick, m.a.sa_visits() - v);
    v = m.a.sa_visits();
  }
  w.per_tunnel_second = static_cast<double>(v - v40) / n / 40.0;
  EXPECT_EQ(m.active(), n);
  // A datagram nobody's cookies match (dropped, counted) and a replay of the last message the
  // last peer sent (the last in the old walk's order): found by cookie, not by a walk.
  Header h{};
  h.icookie = {1, 2, 3, 4, 5, 6, 7, 8};
  h.rcookie = {8, 7, 6, 5, 4, 3, 2, 1};
  h.exchange = static_cast<std::uint8_t>(ExchangeType::kInformational);
  h.flags = kFlagEncryption;
  h.message_id = 0x12345678;
  h.next_payload = 8;  // hash
  h.length = 28 + 32;
  Bytes junk;
  write_header(h, junk);
  junk.resize(h.length, 0xab);
  v = m.a.sa_visits();
  m.a.on_datagram({{kAddrA, 500}, {peer_addr(n - 1), 500}, junk});
  w.unknown_cookie = m.a.sa_visits() - v;
  const Packet* last = nullptr;
  for (const auto& p : m.to_a)
    if (p.from.addr == peer_addr(n - 1)) last = &p;
  EXPECT_NE(last, nullptr);
  v = m.a.sa_visits();
  if (last != nullptr) m.a.on_datagram({last->to, last->from, last->data});
  w.known_cookie = m.a.sa_visits() - v;
  std::printf("N=%d: setup %.1f visits/tunnel, at most %llu in one step, %.2f visits/tunnel/s, "
              "unknown cookie %llu, known cookie %llu\n",
              n, w.setup_per_tunnel, static_cast<unsigned long long>(w.max_tick),
              w.per_tunnel_second, static_cast<unsigned long long>(w.unknown_cookie),
              static_cast<unsigned long long>(w.known_cookie));
  return w;
}

TEST_F(Quiet, WorkPerDatagramAndTickDoesNotGrowWithConnections) {
  const Work small = measure(10);
  const Work large = measure(1000);
  // Bring-up: the same few visits per tunnel (its datagrams and the ticks they cause).
  EXPECT_LE(large.setup_per_tunnel, small.setup_per_tunnel + 2);
  // One step visits the peers whose deadline came: the tunnels set up in the same step (8 at
  // a time, see bring_up) share their DPD deadlines (a counter poll, R-U-THERE out, the ACK
  // and the peer's own R-U-THERE in: up to 5 visits each), never all 1,000.
  EXPECT_LE(small.max_tick, 60u);
  EXPECT_LE(large.max_tick, 60u);
  // Over 40 s: the DPD counter poll (every kDpdPoll = 2 s) and the DPD exchange at the
  // 30 s interval, about one visit per tunnel and second, not one per 20 ms tick (50).
  EXPECT_LE(small.per_tunnel_second, 1.0);
  EXPECT_LE(large.per_tunnel_second, 1.0);
  // One datagram: the SAs of the peers that hold its cookie, no others.
  EXPECT_EQ(small.unknown_cookie, 0u);
  EXPECT_EQ(large.unknown_cookie, 0u);
  EXPECT_LE(large.known_cookie, 2u);
  EXPECT_EQ(large.known_cookie, small.known_cookie);
}

// 300 peers that all start Main Mode in the same tick (a restart of the gateway, a shared
// uplink back), as charon's 300 addresses do in scripts/bench-ike: here B initiates to A, whose
// connections are response-only. Each peer's first half-open negotiation is outside the global
// cap, so A keeps all 300 until their MM3s come and every tunnel comes up. With one cap of 128
// for all, the oldest were evicted before their MM3 (docs/performance.md: 132/300 with charon).
TEST_F(Quiet, ManyPeersStartingMainModeAtOnceAllComeUp) {
  constexpr int n = 300;
  Many m(n);
  for (int k = 0; k < n; ++k) {
    ConnectionConfig gw = conn(true, k);
    gw.initiator = InitiatorMode::kResponseOnly;
    EXPECT_TRUE(m.a.add_connection(std::move(gw)).ok());
    ConnectionConfig peer = conn(false, k);
    peer.initiator = InitiatorMode::kBidirectional;
    EXPECT_TRUE(m.b.update_in_place(std::move(peer)).ok());
  }
  m.clock.t += Millis{20};
  m.b.tick();  // 300 MM1s on the network before any answer
  ASSERT_EQ(m.net.q.size(), static_cast<std::size_t>(n));
  for (int k = 0; k < n; ++k) {
    Packet p = m.net.q.front();
    m.net.q.pop_front();
    m.a.on_datagram({p.to, p.from, p.data});
  }
  EXPECT_EQ(m.a.half_open_count(), static_cast<std::size_t>(n));
  EXPECT_EQ(m.a.half_open_extra_count(), 0u);
  m.pump();
  EXPECT_EQ(m.active(), n);
  EXPECT_EQ(m.a.half_open_count(), 0u);
  EXPECT_EQ(m.a.counters().half_open_global_cap, 0u);
  EXPECT_EQ(m.a.counters().half_open_peer_cap, 0u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
