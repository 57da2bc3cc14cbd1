// Issue #10.4: the slow path under a flood. IKE has a ring of its own that a ping or fragment
// flood cannot fill, and ICMP echo replies are rate limited (GatewayConfig::icmp_echo_per_second)
// before they reach the slow path; every drop is counted under its own reason.
#include <rte_ip_frag.h>

#include <chrono>
#include <thread>

#include "gateway_test.hpp"

namespace ipsecgw::dp {
namespace {

constexpr auto kBound = std::chrono::seconds(10);

class GatewayFloodTest : public GatewayTest {
 protected:
  // Enqueues `frame` on u_ or p_, waiting while the worker empties a full RX ring.
  void push(RingPort& rp, const Bytes& frame) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (!try_inject(rp, 0, frame)) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "RX ring never drained";
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  // Waits until the worker decided the fate of `n` frames, without running the control loop
  // (GatewayTest::wait_rx runs it and so would empty the slow-path rings).
  void wait_fates(std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (std::chrono::steady_clock::now() < deadline) {
      const LcoreStats t = gw_->total_stats();
      if (t.rx_packets >= n && fates(t) >= n) return;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ADD_FAILURE() << "the worker did not take " << n << " frames: " << gw_->report();
  }
  static Bytes echo_request(std::uint16_t seq) {
    Bytes echo = {8, 0, 0, 0, 0x12, 0x34, 0, 0, 'f', 'l', 'o', 'o', 'd'};
    put16(echo.data() + 6, seq);
    put16(echo.data() + 2, inet_checksum(echo.data(), echo.size()));
    return echo;
  }
};

// A flood of outer fragments (never completed) and ICMP echo requests to our unprotected
// address, with the control lcore busy (not polling): it fills the slow-path ring. IKE
// datagrams arriving after it must all still reach the IKE handler. Before the fix they shared
// that ring and were dropped as ring_full.
TEST_F(GatewayFloodTest, SlowPathFloodDoesNotDropIke) {
  boot();
  constexpr unsigned kFrags = 1200, kEchoes = 1200, kIke = 64;
  std::uint64_t sent = 0;
  for (unsigned i = 0; i < kFrags; ++i) {
    Bytes ip = ipv4(kPeerGw, kUnprotAddr, 17, Bytes(64, 0xab));
    put16(ip.data() + 4, static_cast<std::uint16_t>(i));  // its own datagram: never completes
    put16(ip.data() + 6, 0x2000);                          // MF, offset 0
    ip[10] = ip[11] = 0;
    put16(ip.data() + 10, inet_checksum(ip.data(), 20));
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800, ip)));
    ++sent;
  }
  for (unsigned i = 0; i < kEchoes; ++i) {
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800,
                                         ipv4(kPeerGw, kUnprotAddr, 1,
                                              echo_request(static_cast<std::uint16_t>(i))))));
    ++sent;
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(sent));
  {
    const LcoreStats t = gw_->total_stats();
    ASSERT_GT(t.dropped(DropReason::kPuntRingFull) + t.dropped(DropReason::kRingFull), 0u)
        << "the flood must fill the slow-path ring: " << gw_->report();
  }
  for (unsigned i = 0; i < kIke; ++i) {
    Bytes ike(40, static_cast<std::uint8_t>(i + 1));  // the handler gets it as is
    const auto sport = static_cast<std::uint16_t>(10000 + i);
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800,
                                         ipv4(kPeerGw, kUnprotAddr, 17, udp(sport, 500, ike)))));
    ++sent;
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(sent));
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (handler_.got.size() < kIke && std::chrono::steady_clock::now() < deadline) {
    gw_->control_poll();
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  for (int i = 0; i < 200; ++i) gw_->control_poll();  // the rest of the flood
  const LcoreStats t = gw_->total_stats();
  ASSERT_EQ(handler_.got.size(), kIke) << gw_->report();
  for (unsigned i = 0; i < kIke; ++i) {
    EXPECT_EQ(handler_.got[i].v.remote.port, 10000 + i);
    EXPECT_EQ(handler_.got[i].payload, Bytes(40, static_cast<std::uint8_t>(i + 1)));
  }
  EXPECT_EQ(t.dropped(DropReason::kIkeRingFull), 0u);
  EXPECT_GT(t.dropped(DropReason::kPuntRingFull), 0u) << "slow-path overflow has its own reason";
  EXPECT_EQ(t.dropped(DropReason::kRingFull), 0u) << "not counted as inject/hand-off overflow";
}

// A ping flood is answered at the configured rate at most: the bucket holds one second's worth
// (50) and refills at 50/s, so over `elapsed` seconds at most 50 + 50 * elapsed + 1 replies go
// out; the rest are counted as icmp_echo_rate_limited (the worker never punts them).
TEST_F(GatewayFloodTest, EchoRepliesAreRateLimited) {
  constexpr unsigned kRate = 50, kEchoes = 600;
  boot([&](GatewayConfig& c) { c.icmp_echo_per_second = kRate; });
  const auto t0 = std::chrono::steady_clock::now();
  std::size_t replies = 0;
  for (unsigned i = 0; i < kEchoes; ++i) {
    ASSERT_NO_FATAL_FAILURE(push(p_, eth(p_.mac, kHostMac, 0x0800,
                                         ipv4(kLocalHost, kProtAddr, 1,
                                              echo_request(static_cast<std::uint16_t>(i))))));
    gw_->control_poll();
    replies += of_type(take_tx(p_), 0x0800, 1).size();
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(kEchoes));
  for (int i = 0; i < 50; ++i) {
    gw_->control_poll();
    replies += of_type(take_tx(p_), 0x0800, 1).size();
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const LcoreStats t = gw_->total_stats();
  EXPECT_GE(replies, kRate) << "a burst of one second's worth is answered";
  EXPECT_LE(static_cast<double>(replies), kRate + kRate * elapsed + 1)
      << "over " << elapsed << " s: " << gw_->report();
  EXPECT_EQ(t.dropped(DropReason::kIcmpEchoRateLimited), kEchoes - replies) << gw_->report();
  EXPECT_EQ(t.dropped(DropReason::kPuntRingFull), 0u);
}

// icmp_echo_per_second = 0: no echo is answered, each one counted.
TEST_F(GatewayFloodTest, EchoRateZeroAnswersNone) {
  boot([](GatewayConfig& c) { c.icmp_echo_per_second = 0; });
  for (unsigned i = 0; i < 10; ++i)
    ASSERT_NO_FATAL_FAILURE(push(p_, eth(p_.mac, kHostMac, 0x0800,
                                         ipv4(kLocalHost, kProtAddr, 1,
                                              echo_request(static_cast<std::uint16_t>(i))))));
  ASSERT_NO_FATAL_FAILURE(wait_fates(10));
  for (int i = 0; i < 20; ++i) gw_->control_poll();
  EXPECT_TRUE(of_type(take_tx(p_), 0x0800, 1).empty());
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kIcmpEchoRateLimited), 10u);
}

}  // namespace
}  // namespace ipsecgw::dp

namespace ipsecgw::dp {
namespace {

// A fragment flood's victims were freed silently: the fragments the reassembly gives up on (here
// one too many for one datagram: DPDK drops all it held) are counted as reassembly_dropped.
// DPDK keeps RTE_LIBRTE_IP_FRAG_MAX_FRAG slots per datagram, one of them for the last fragment:
// a first fragment and MAX - 1 middle ones (no last) overflow it with the final middle one.
TEST_F(GatewayFloodTest, FragmentsTheReassemblyDropsAreCounted) {
  boot();
  constexpr unsigned kFrags = RTE_LIBRTE_IP_FRAG_MAX_FRAG;
  for (unsigned k = 0; k < kFrags; ++k) {
    Bytes ip = ipv4(kPeerGw, kUnprotAddr, 50, Bytes(16, 0xab));
    put16(ip.data() + 4, 77);  // one datagram, never complete: a first fragment and middle ones
    put16(ip.data() + 6, static_cast<std::uint16_t>(0x2000 | (k == 0 ? 0 : 4 * k)));
    ip[10] = ip[11] = 0;
    put16(ip.data() + 10, inet_checksum(ip.data(), 20));
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800, ip)));
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(kFrags));
  for (int i = 0; i < 20; ++i) gw_->control_poll();
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kReassemblyDropped), kFrags) << gw_->report();
  EXPECT_EQ(rte_mempool_in_use_count(pool_), base_in_use_);
}

}  // namespace
}  // namespace ipsecgw::dp

namespace ipsecgw::dp {
namespace {

// An ISAKMP header (RFC 2408 §3.1) with these cookies, Main Mode, and `extra` bytes of payload.
Bytes isakmp(std::uint8_t icookie, std::uint8_t rcookie, std::size_t extra = 20) {
  Bytes h(28 + extra, 0);
  std::fill(h.begin(), h.begin() + 8, icookie);
  std::fill(h.begin() + 8, h.begin() + 16, rcookie);
  h[16] = 1;     // next payload: SA
  h[17] = 0x10;  // version 1.0
  h[18] = 2;     // Identity Protection (Main Mode)
  put16(h.data() + 26, static_cast<std::uint16_t>(h.size()));
  return h;
}

// A flood of MM1s (zero responder cookie, on 500 and on 4500 behind the non-ESP marker) that
// fills the IKE ring while the control lcore is busy must not cost the messages of exchanges
// in progress (a Quick Mode, a DPD, an MM3: non-zero responder cookie) that arrive after it.
// Before, both shared one ring and those were dropped as ike_ring_full.
TEST_F(GatewayFloodTest, Mm1FloodDoesNotDropExchangesInProgress) {
  boot();
  constexpr unsigned kMm1 = 1200, kOngoing = 48;
  std::uint64_t sent = 0;
  for (unsigned i = 0; i < kMm1; ++i) {
    const auto sport = static_cast<std::uint16_t>(20000 + i);
    Bytes pl = isakmp(static_cast<std::uint8_t>(i | 1), 0);
    if (i % 4 == 0) pl.insert(pl.begin(), 4, 0);  // NAT-T: the non-ESP marker
    const std::uint16_t dport = i % 4 == 0 ? 4500 : 500;
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800,
                                         ipv4(kPeerGw, kUnprotAddr, 17, udp(sport, dport, pl)))));
    ++sent;
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(sent));
  ASSERT_GT(gw_->total_stats().dropped(DropReason::kIkeNewRingFull) +
                gw_->total_stats().dropped(DropReason::kIkeRingFull),
            0u)
      << "the MM1 flood must fill its ring: " << gw_->report();
  for (unsigned i = 0; i < kOngoing; ++i) {
    Bytes pl = isakmp(0x77, static_cast<std::uint8_t>(i + 1));
    const bool nat = i % 2 == 1;
    if (nat) pl.insert(pl.begin(), 4, 0);
    ASSERT_NO_FATAL_FAILURE(push(u_, eth(u_.mac, kUnprotGwMac, 0x0800,
                                         ipv4(kPeerGw, kUnprotAddr, 17,
                                              udp(static_cast<std::uint16_t>(nat ? 4500 : 500),
                                                  nat ? 4500 : 500, pl)))));
    ++sent;
  }
  ASSERT_NO_FATAL_FAILURE(wait_fates(sent));
  handler_.got.clear();
  gw_->control_poll();  // one poll: the exchanges in progress come first
  std::vector<std::uint8_t> ongoing;
  for (const auto& g : handler_.got)
    if (g.payload.size() >= 16 && g.payload[8] != 0) ongoing.push_back(g.payload[8]);
  for (int i = 0; i < 300; ++i) gw_->control_poll();
  ASSERT_EQ(ongoing.size(), kOngoing) << gw_->report();
  for (unsigned i = 0; i < kOngoing; ++i) EXPECT_EQ(ongoing[i], i + 1);
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kIkeRingFull), 0u) << gw_->report();
  EXPECT_GT(t.dropped(DropReason::kIkeNewRingFull), 0u) << "the MM1 overflow has its own reason";
}

}  // namespace
}  // namespace ipsecgw::dp
