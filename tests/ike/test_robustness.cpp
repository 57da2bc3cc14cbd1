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


// An authentic informational (B's R-U-THERE) replayed after hundreds of later ones is still
// a replay: the message-id memory lasts as long as the ISAKMP SA.
TEST_F(Quiet, InformationalReplayedAfterManyLaterOnesIsStillDropped) {
  Pair p;
  auto ca = make_conn(true, {}, {});
  ca.dpd = {DpdAction::kHold, 100000, 200000};  // A never probes
  auto cb = make_conn(false, {}, {});
  cb.dpd = {DpdAction::kHold, 1, 1000};  // B probes every second
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
  std::optional<Packet> first;
  int from_a = 0;
  p.net.filter = [&](Packet& pk) {
    if (!is_exchange(pk, ExchangeType::kInformational)) return true;
    if (pk.from.addr == kAddrB && !first) first = pk;
    if (pk.from.addr == kAddrA) ++from_a;
    return true;
  };
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.run_for(300000, 1000);
  ASSERT_TRUE(first);
  ASSERT_GT(from_a, 280);  // A acknowledged each probe
  const int acks = from_a;
  const auto replays = p.a.counters().replay_drops;
  p.a.on_datagram({first->to, first->from, first->data});
  p.pump();
  EXPECT_EQ(from_a, acks) << "A acknowledged a replayed R-U-THERE";
  EXPECT_EQ(p.a.counters().replay_drops, replays + 1);
}


// Key hygiene: once phase 1 is up, the DH private key, g^xy and SKEYID are gone on both sides.
TEST_F(Quiet, Phase1SecretsBeyondSkeyidDaeAreWipedOnceEstablished) {
  Pair p(kDefaults);
  p.initiate();
  expect_both_active(p);
  EXPECT_EQ(p.a.sas_holding_spent_secrets(), 0u);
  EXPECT_EQ(p.b.sas_holding_spent_secrets(), 0u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
