// ESP outbound against the SA's MTU: the packet that fits, the one that does not, and
// OutboundSa::max_inner (the longest inner packet that fits, which the worker and esp_outbound
// compare lengths with) at every MTU the SA accepts.
#include <gtest/gtest.h>

#include "tests/dataplane/esp_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

class EspMtu : public EspFixture {};

TEST_F(EspMtu, TooBigForMtuIsDroppedAsMtuExceeded) {
  auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false));
  // 1500 - 20 - 8 - 16 - 12 = 1444: the padded payload is 1440 at most, so 1438 inner bytes.
  ASSERT_EQ(esp_outbound_size(*sa, 1438), 1496u);
  ASSERT_GT(esp_outbound_size(*sa, 1439), 1500u);
  EXPECT_EQ(sa->max_inner.load(), 1438u);
  rte_mbuf* ms[2] = {mbuf(make_inner(1438 - 20)), mbuf(make_inner(1439 - 20))};
  OutboundSa* sas[2] = {sa.get(), sa.get()};
  LcoreStats st;
  EXPECT_EQ(esp_outbound(*engine_, ms, sas, st), 1);
  EXPECT_EQ(st.dropped(DropReason::kMtuExceeded), 1u);
  EXPECT_EQ(sa->counters.drops[static_cast<unsigned>(DropReason::kMtuExceeded)].load(), 1u);
  EXPECT_EQ(ms[0]->pkt_len, 1496u);
}

TEST_F(EspMtu, MaxInnerIsTheLongestPacketThatFitsAtEveryMtu) {
  for (const Combo& c : kCombos) {
    for (bool encap : {false, true}) {
      SCOPED_TRACE(combo_name(c, encap));
      auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, c, encap));
      for (std::uint32_t mtu = 576; mtu <= 9216; ++mtu) {
        set_outbound_mtu(*sa, static_cast<std::uint16_t>(mtu));
        const std::uint32_t l = sa->max_inner.load();
        ASSERT_EQ(sa->mtu.load(), mtu);
        ASSERT_LE(esp_outbound_size(*sa, l), mtu) << "mtu " << mtu;
        ASSERT_GT(esp_outbound_size(*sa, l + 1), mtu) << "mtu " << mtu;
      }
      // What esp_outbound builds (its length checked by the round trips against Scapy): the
      // longest packet fits, one byte more is dropped, after an MTU change in place too.
      for (std::uint16_t mtu : {576, 1000, 1400, 1500}) {
        set_outbound_mtu(*sa, mtu);
        const std::uint32_t l = sa->max_inner.load();
        rte_mbuf* ms[2] = {mbuf(make_inner(l - 20)), mbuf(make_inner(l + 1 - 20))};
        OutboundSa* sas[2] = {sa.get(), sa.get()};
        LcoreStats st;
        EXPECT_EQ(esp_outbound(*engine_, ms, sas, st), 1) << "mtu " << mtu;
        EXPECT_EQ(st.dropped(DropReason::kMtuExceeded), 1u) << "mtu " << mtu;
        EXPECT_LE(ms[0]->pkt_len, mtu);
        EXPECT_GT(ms[0]->pkt_len + sa->alg.block_align, mtu);  // no block more would fit
      }
    }
  }
}

}  // namespace
}  // namespace ipsecgw::dp
