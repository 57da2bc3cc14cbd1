// ESP bursts at their bounds: a whole burst of kMaxBurst (128, the workers' RX burst) in one call
// each way, and the most a call takes (2 x kMaxBurst) with every packet bad.
#include <gtest/gtest.h>

#include <set>

#include "tests/dataplane/esp_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

class EspBurst : public EspFixture {};

// A whole burst (kMaxBurst, 128: the workers' RX burst) in one call each way, two SAs taking
// turns in runs of 1 to 3 packets, and what comes past kMaxBurst dropped as kBurstOverflow.
TEST_F(EspBurst, FullBurstBothWaysAndItsOverflow) {
  static_assert(kMaxBurst >= 128, "bursts of 128 carry the crypto (dataplane/esp.hpp)");
  constexpr unsigned kOver = 5;
  auto a = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false, 0x1000));
  auto b = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false, 0x2000));
  auto a_in = create_sa<InboundSa>(make_spec(Direction::kInbound, kCombos[0], false, 0x1000));
  auto b_in = create_sa<InboundSa>(make_spec(Direction::kInbound, kCombos[0], false, 0x2000));
  std::vector<Bytes> inners;
  std::vector<rte_mbuf*> ms;
  std::vector<OutboundSa*> sas;
  std::vector<InboundSa*> in_sas;
  for (unsigned i = 0; i < kMaxBurst + kOver; ++i) {
    const bool to_a = (i / (1 + i % 3)) % 2 == 0;
    inners.push_back(make_inner(16 + i));
    ms.push_back(mbuf(inners.back()));
    sas.push_back(to_a ? a.get() : b.get());
    in_sas.push_back(to_a ? a_in.get() : b_in.get());
  }
  const std::vector<rte_mbuf*> orig = ms;
  LcoreStats st;
  ASSERT_EQ(esp_outbound(*engine_, ms, sas, st), kMaxBurst);
  EXPECT_TRUE(std::equal(orig.begin(), orig.end(), ms.begin()));  // all good: order kept
  EXPECT_EQ(st.dropped(DropReason::kBurstOverflow), kOver);
  EXPECT_EQ(st.esp_out_packets, kMaxBurst);
  std::uint32_t next_a = 1, next_b = 1;
  for (unsigned i = 0; i < kMaxBurst + kOver; ++i) {
    if (i >= kMaxBurst) {
      EXPECT_EQ(to_bytes(ms[i]), inners[i]) << i;  // an overflow packet is left as it came
      continue;
    }
    std::uint32_t& next = sas[i] == a.get() ? next_a : next_b;
    EXPECT_EQ(be32(to_bytes(ms[i]).data() + 24), next++) << i;
  }
  EXPECT_EQ(a->counters.packets.load() + b->counters.packets.load(), kMaxBurst);
  EXPECT_EQ(a->counters.packets.load(), next_a - 1);

  std::vector<Bytes> outers;
  for (unsigned i = 0; i < kMaxBurst; ++i) outers.push_back(to_bytes(ms[i]));
  for (unsigned i = 0; i < kOver; ++i) outers.push_back(outers[i]);  // past kMaxBurst
  std::vector<rte_mbuf*> back;
  for (const Bytes& o : outers) back.push_back(mbuf(o));
  LcoreStats in_st;
  in_sas.resize(outers.size());
  for (unsigned i = 0; i < kOver; ++i) in_sas[kMaxBurst + i] = in_sas[i];
  ASSERT_EQ(esp_inbound(*engine_, back, in_sas, in_st), kMaxBurst);
  EXPECT_EQ(in_st.dropped(DropReason::kBurstOverflow), kOver);
  for (unsigned i = 0; i < kMaxBurst; ++i) EXPECT_EQ(to_bytes(back[i]), inners[i]) << i;
}
// The most a call takes, 2 x kMaxBurst packets, every one of them bad (no SA, then overflow):
// all handed back, none good. (partition_burst once set aside 64 bad packets, 2 x the old
// burst of 32: past that it wrote beyond its array; the asan build catches it.)
TEST_F(EspBurst, TwiceKMaxBurstAllBadAreAllHandedBack) {
  std::vector<rte_mbuf*> ms;
  for (unsigned i = 0; i < 2 * kMaxBurst; ++i) ms.push_back(mbuf(make_inner(1)));
  const std::set<rte_mbuf*> orig(ms.begin(), ms.end());
  std::vector<OutboundSa*> sas(ms.size(), nullptr);
  LcoreStats st;
  EXPECT_EQ(esp_outbound(*engine_, ms, sas, st), 0);
  EXPECT_EQ(std::set<rte_mbuf*>(ms.begin(), ms.end()), orig);
  EXPECT_EQ(st.dropped(DropReason::kNoSa), kMaxBurst);
  EXPECT_EQ(st.dropped(DropReason::kBurstOverflow), kMaxBurst);
  std::vector<InboundSa*> in_sas(ms.size(), nullptr);
  LcoreStats in_st;
  EXPECT_EQ(esp_inbound(*engine_, ms, in_sas, in_st), 0);
  EXPECT_EQ(std::set<rte_mbuf*>(ms.begin(), ms.end()), orig);
  EXPECT_EQ(in_st.dropped(DropReason::kBurstOverflow), kMaxBurst);
}

}  // namespace
}  // namespace ipsecgw::dp
