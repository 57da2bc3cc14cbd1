// Clean shutdown: Daemon::delete_all_sas tells the peer, in protected informational
// exchanges, that every CHILD SA (the current pair and one still in its rekey grace period)
// and the ISAKMP SA are gone; the peer (B, our own implementation) acts on each Delete.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

std::string spi_hex(std::uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", spi);
  return b;
}

class Shutdown : public ::testing::Test {
 protected:
  void SetUp() override {
    set_log_sink([this](LogLevel, std::string_view l) { lines.emplace_back(l); });
  }
  void TearDown() override { set_log_sink(nullptr); }
  bool logged(const std::string& what) const {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(what) != std::string::npos; });
  }
  // A's connection after a rekey of its own, the replaced pair still in its grace period;
  // then A shuts down. Returns A's datagrams (queued, not delivered).
  std::deque<Packet> shut_down_after_rekey(Pair& p) {
    p.initiate();
    old_in = p.a.status("site").child->spi_in;
    p.run_for(50000, 500);
    for (int i = 0; i < 20 && p.a.status("site").child->spi_in == old_in; ++i) p.run_for(500, 500);
    now_in = p.a.status("site").child->spi_in;
    EXPECT_NE(now_in, old_in);
    EXPECT_EQ(p.ia.live_in.size(), 2u);  // the replaced pair's inbound SA still there
    EXPECT_TRUE(p.net.q.empty());
    EXPECT_EQ(p.a.delete_all_sas(), 1u);
    return p.net.q;
  }
  std::vector<std::string> lines;
  std::uint32_t old_in = 0, now_in = 0;
};

TEST_F(Shutdown, DeleteForEveryChildSaThenTheIsakmpSa) {
  Pair p(IkePolicy{}, short_child());
  const auto sent = shut_down_after_rekey(p);
  // Two ESP Deletes and the ISAKMP SA's, each its own protected informational to B.
  ASSERT_EQ(sent.size(), 3u);
  for (const auto& pk : sent) {
    EXPECT_EQ(pk.from.addr, kAddrA);
    EXPECT_TRUE(is_exchange(pk, ExchangeType::kInformational));
    ASSERT_GE(pk.data.size(), kHeaderLen);
    EXPECT_TRUE(pk.data[19] & kFlagEncryption);
  }
  // A's data-plane SAs stay for the gateway's exit report; the gateway stops next.
  EXPECT_EQ(p.ia.live_in.size(), 2u);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  lines.clear();
  p.pump();
  // B removed each pair because of its Delete (the SPI it names is B's outbound one).
  EXPECT_TRUE(logged("peer deleted replaced CHILD SA, SPI out " + spi_hex(old_in)));
  EXPECT_TRUE(logged("peer deleted the CHILD SA, SPI out " + spi_hex(now_in)));
  EXPECT_TRUE(p.ib.live_in.empty());
  EXPECT_EQ(p.ib.out_current, 0u);
  EXPECT_NE(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Shutdown, TheLastDeleteRemovesTheIsakmpSa) {
  Pair p(IkePolicy{}, short_child());
  const auto sent = shut_down_after_rekey(p);
  ASSERT_EQ(sent.size(), 3u);
  p.net.q.clear();
  lines.clear();
  const Packet& last = sent.back();
  p.b.on_datagram({last.to, last.from, last.data});
  EXPECT_TRUE(logged("peer deleted the ISAKMP SA"));
  EXPECT_TRUE(p.ib.live_in.empty());
  EXPECT_NE(p.b.status("site").state, ConnState::kActive);
}

// The two steps the gateway spaces apart: the CHILD SAs' Deletes first, once, then only the
// ISAKMP SA's. Each step's datagrams, delivered alone, do only their part at the peer.
TEST_F(Shutdown, ChildSaDeletesCanGoAheadOfTheIsakmpSasOwn) {
  auto rekeyed = [this](Pair& p) {
    p.initiate();
    old_in = p.a.status("site").child->spi_in;
    p.run_for(50000, 500);
    for (int i = 0; i < 20 && p.a.status("site").child->spi_in == old_in; ++i)
      p.run_for(500, 500);
    now_in = p.a.status("site").child->spi_in;
    ASSERT_NE(now_in, old_in);
    ASSERT_TRUE(p.net.q.empty());
  };
  {
    Pair p(IkePolicy{}, short_child());
    rekeyed(p);
    EXPECT_EQ(p.a.delete_all_child_sas(), 1u);
    EXPECT_EQ(p.net.q.size(), 2u);  // the replaced pair's and the current pair's
    EXPECT_EQ(p.a.delete_all_child_sas(), 1u);
    EXPECT_EQ(p.net.q.size(), 2u);  // once only
    lines.clear();
    p.pump();
    EXPECT_TRUE(logged("peer deleted replaced CHILD SA, SPI out " + spi_hex(old_in)));
    EXPECT_TRUE(logged("peer deleted the CHILD SA, SPI out " + spi_hex(now_in)));
    EXPECT_FALSE(logged("peer deleted the ISAKMP SA"));
    EXPECT_TRUE(p.ib.live_in.empty());
  }
  Pair p(IkePolicy{}, short_child());
  rekeyed(p);
  EXPECT_EQ(p.a.delete_all_child_sas(), 1u);
  p.net.q.clear();  // the CHILD SAs' Deletes lost
  EXPECT_EQ(p.a.delete_all_sas(), 1u);
  ASSERT_EQ(p.net.q.size(), 1u);  // no ESP Delete again
  EXPECT_TRUE(is_exchange(p.net.q.front(), ExchangeType::kInformational));
  lines.clear();
  p.pump();
  EXPECT_TRUE(logged("peer deleted the ISAKMP SA"));
  EXPECT_FALSE(logged("CHILD SA, SPI"));
  EXPECT_EQ(p.a.delete_all_sas(), 0u);  // done
  EXPECT_EQ(p.a.delete_all_child_sas(), 0u);
}

// A's rekey is negotiated but its outbound switch still waits: the pair the peer already
// installed on QM3 is deleted too.
TEST_F(Shutdown, APairWaitingForTheOutboundSwitchIsDeletedToo) {
  Pair p(IkePolicy{}, short_child());
  p.initiate();
  const std::size_t a_sas = p.ia.sas.size();
  for (int i = 0; i < 140 && p.ia.sas.size() == a_sas; ++i) p.run_for(500, 500);
  ASSERT_EQ(p.ia.sas.size(), a_sas + 1);  // the new inbound SA only: the switch is pending
  const std::uint32_t pending_in = p.ia.sas.back().spi;
  ASSERT_EQ(p.b.status("site").child->spi_out, pending_in);  // B switched on QM3
  EXPECT_EQ(p.a.delete_all_sas(), 1u);
  ASSERT_EQ(p.net.q.size(), 3u);  // current pair, pending pair, ISAKMP SA
  lines.clear();
  p.pump();
  EXPECT_TRUE(logged("peer deleted the CHILD SA, SPI out " + spi_hex(pending_in)));
}

TEST_F(Shutdown, NothingToSayWithoutAnEstablishedIsakmpSa) {
  Pair p(kDefaults);
  p.a.tick();  // MM1 queued, never answered
  p.net.q.clear();
  EXPECT_EQ(p.a.delete_all_sas(), 0u);
  EXPECT_TRUE(p.net.q.empty());
}

}  // namespace
}  // namespace ipsecgw::ike::test
