// Failures inside the daemon that must cost one SA, never the process or other tunnels: DH
// key generation, key hygiene, message-id memory, per-connection Quick Mode limits.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

TEST_F(Quiet, DhFailureAsResponderFailsThatSaNotTheProcess) {
  Pair p(kDefaults);
  p.kb.fail_dh = true;
  p.initiate();  // B's MM3 needs a key pair
  EXPECT_EQ(p.b.counters().dh_failures, 1u);
  EXPECT_EQ(p.b.status("site").reason.rfind("DH key generation failed", 0), 0u);
  p.kb.fail_dh = false;  // A gives up on this attempt and retries later
  p.run_for(120000, 1000);
  expect_both_active(p);
}

TEST_F(Quiet, DhFailureAsInitiatorFailsThatSaNotTheProcess) {
  Pair p(kDefaults);
  p.ka.fail_dh = true;
  p.initiate();  // A's MM3
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.a.status("site").reason.rfind("DH key generation failed", 0), 0u);
  EXPECT_EQ(p.a.counters().dh_failures, 1u);
}

TEST_F(Quiet, DhFailureInAQuickModeRekeyKeepsTheCurrentChildSa) {
  Pair p(kDefaults);
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto spi = p.a.status("site").child->spi_in;
  p.ka.fail_dh = true;
  p.ia.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound,
                         p.a.status("site").child->spi_out, 7});
  p.a.tick();  // rekey: QM1 needs a PFS key pair
  // B rekeys: A's answer to its QM1 needs one too.
  p.ib.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound,
                         p.b.status("site").child->spi_out, 9});
  p.b.tick();
  p.pump();
  EXPECT_EQ(p.a.counters().dh_failures, 2u);  // its own QM1, and answering B's
  EXPECT_EQ(p.b.counters().dh_failures, 0u);
  expect_both_active(p);
  EXPECT_EQ(p.a.status("site").child->spi_in, spi);
}

}  // namespace
}  // namespace ipsecgw::ike::test
