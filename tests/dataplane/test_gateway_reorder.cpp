// The reordering a peer sees on one outbound SA when two workers receive its traffic
// (tests/dpdk_main_3lcore.cpp: the control lcore and two workers). The protected port has two
// RX queues, one per worker: queue 0 gets large packets (slow to encrypt), queue 1 small ones
// (fast), both for the one tunnel. The ESP the gateway transmits, in the order it leaves, is
// what a peer with a 32-packet anti-replay window (strongSwan's default, RFC 4303 §3.4.3) sees:
// every sequence number must be fewer than 32 behind the highest seen before it, or that peer
// drops the packet. The gateway's bound (docs/design.md, dataplane/sa.hpp: one worker owns an
// outbound SA and the others hand it the packets) is stronger: no reordering at all.
#include <gtest/gtest.h>
#include <rte_ring.h>

#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include "dataplane/gateway.hpp"
#include "gateway_fixture.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

constexpr auto kBound = std::chrono::seconds(20);
constexpr std::uint32_t kPeerWindow = 32;  // strongSwan's default replay_window

class GatewayReorderTest : public GatewayFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(GatewayFixture::SetUp());
    ASSERT_EQ(rte_lcore_count(), 3u) << "needs the control lcore and two workers";
    // Two RX queues (one per worker), three TX queues (two workers + the control lcore) onto
    // one ring: the order in that ring is the order on the wire.
    u_ = make_ring_port({"gwro", 2, 0, 3, 8192}, 0x10);
    p_ = make_ring_port({"gwro", 2, 0, 3, 8192}, 0x20);
    GatewayConfig c = ring_test_config(u_.port, p_.port);
    c.telemetry = false;
    start_gateway(c);
  }

  // The ESP sequence numbers of outbound SA kSpiOut in what the unprotected port sent so far,
  // in order (other frames, e.g. ARP, are skipped).
  void drain_seqs() {
    for (const Bytes& f : take_tx(u_)) {
      if (f.size() < 14 + 28 || be16(f.data() + 12) != 0x0800) continue;
      const std::uint8_t* ip = f.data() + 14;
      const unsigned ihl = (ip[0] & 0x0f) * 4u;
      if (ip[9] != 50 || f.size() < 14 + ihl + 8 || be32(ip + ihl) != kSpiOut) continue;
      seqs_.push_back(be32(ip + ihl + 4));
    }
  }
  bool run_until(const std::function<bool()>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (std::chrono::steady_clock::now() < deadline) {
      gw_->control_poll();
      drain_seqs();
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return false;
  }

  std::vector<std::uint32_t> seqs_;
};

TEST_F(GatewayReorderTest, PeerWithA32PacketWindowAcceptsEveryPacketOfAnSaFedByTwoWorkers) {
  install_tunnel();
  // Queue 0: 1400-byte inner packets from one host; queue 1: 64-byte ones from another, so the
  // two workers' bursts take very different times to encrypt.
  const Bytes big = eth(p_.mac, kHostMac, 0x0800, make_inner(1380, kLocalHost, kPeerHost));
  const Bytes small =
      eth(p_.mac, kHostMac, 0x0800, make_inner(44, kLocalHost + 1, kPeerHost + 1));
  constexpr unsigned kRounds = 12, kBig = 96, kSmall = 288;
  std::uint64_t sent = 0;
  for (unsigned r = 0; r < kRounds; ++r) {
    for (unsigned i = 0; i < kSmall; ++i) {
      if (i % 3 == 0) inject(p_, 0, big);
      inject(p_, 1, small);
    }
    sent += kBig + kSmall;
    ASSERT_TRUE(run_until([&] { return seqs_.size() >= sent; }))
        << "round " << r << ": " << seqs_.size() << " of " << sent << "\n" << gw_->report();
  }
  ASSERT_EQ(seqs_.size(), sent) << gw_->report();

  // The peer's view: each number once, and none 32 or more behind the highest before it.
  std::set<std::uint32_t> unique(seqs_.begin(), seqs_.end());
  EXPECT_EQ(unique.size(), seqs_.size()) << "a sequence number sent twice";
  EXPECT_EQ(*unique.begin(), 1u);
  EXPECT_EQ(*unique.rbegin(), sent);
  std::uint32_t highest = 0, worst_lag = 0, outside = 0, late = 0;
  for (std::uint32_t s : seqs_) {
    if (s < highest) {
      ++late;
      worst_lag = std::max(worst_lag, highest - s);
      if (highest - s >= kPeerWindow) ++outside;
    }
    highest = std::max(highest, s);
  }
  EXPECT_EQ(outside, 0u) << "packets a 32-packet replay window drops; worst lag " << worst_lag;
  EXPECT_EQ(late, 0u) << "the stated bound: the packets of an SA leave in sequence order";

  // One worker encrypted everything; the other handed its packets over.
  const auto ls = gw_->lcore_stats();  // worker 0, worker 1, control
  ASSERT_EQ(ls.size(), 3u);
  const unsigned owner = ls[0].esp_out_packets != 0 ? 0 : 1, other = 1 - owner;
  EXPECT_EQ(ls[owner].esp_out_packets, sent) << gw_->report();
  EXPECT_EQ(ls[other].esp_out_packets, 0u) << gw_->report();
  EXPECT_EQ(ls[owner].rx_packets + ls[other].rx_packets, sent);
  EXPECT_EQ(ls[other].handed_off, ls[other].rx_packets) << gw_->report();
  std::uint64_t drops = 0;
  for (auto d : gw_->total_stats().drops) drops += d;
  EXPECT_EQ(drops, 0u) << gw_->report();
}

}  // namespace
}  // namespace ipsecgw::dp
