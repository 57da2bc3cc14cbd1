// poll_events() (the control side's read of the SA events a worker raised) walks the installed
// SAs only after one was raised (dataplane/sa_events.hpp): with 10,000 tunnels a walk per IKE
// tick was 20,000 SA cache lines every 20 ms for nothing (issue #12). Counted, not timed.
#include <gtest/gtest.h>

#include "dataplane/sa_events.hpp"
#include "sa_table_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using testutil::make_spec;

constexpr std::uint32_t kTunnels = 200;

class SaEvents : public testutil::InstallerTest<2 * kTunnels> {
 protected:
  void install() {
    for (std::uint32_t i = 0; i < kTunnels; ++i) {
      const Ipv4Prefix local{0x0a400000u + (i << 8), 24}, peer{0x0a800000u + (i << 8), 24};
      ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x10000 + i, local, peer, i + 1)));
      ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x20000 + i, local, peer, i + 1)));
    }
  }
  static std::uint64_t visits() { return g_sa_event_walk_visits.load(); }
};

TEST_F(SaEvents, NoWalkWithoutAnEvent) {
  install();
  (void)inst_->poll_events();  // the first poll may walk (events raised before it)
  const std::uint64_t before = visits();
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(inst_->poll_events().empty());
  EXPECT_EQ(visits() - before, 0u) << "poll_events walked the SAs without a raised event";
}

TEST_F(SaEvents, ARaisedEventIsReportedOnce) {
  install();
  (void)inst_->poll_events();
  auto sas = inst_->all_sas();
  ASSERT_EQ(sas.size(), 2 * kTunnels);
  const SaHead* target = sas[kTunnels / 2];
  raise_sa_event(const_cast<SaHead&>(*target), kEvSoftLimit);
  const std::uint64_t before = visits();
  auto ev = inst_->poll_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, SaEventKind::kSoftLimit);
  EXPECT_EQ(ev[0].spi, target->spi);
  EXPECT_EQ(visits() - before, 2u * kTunnels);  // one walk
  EXPECT_TRUE(inst_->poll_events().empty());
  EXPECT_EQ(visits() - before, 2u * kTunnels);  // and no more
}

}  // namespace
}  // namespace ipsecgw::dp
