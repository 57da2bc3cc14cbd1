// Quick Mode: ESP proposal mismatch, RESPONDER-LIFETIME.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

TEST_F(Quiet, MismatchedEspPolicyGivesNoProposalChosen) {
  IkePolicy ike;
  IpsecPolicy ia{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha1_96, DhGroup::kModp1536, 3600};
  IpsecPolicy ib{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha256_128, DhGroup::kModp1536, 3600};
  Pair p(ike, ia, ike, ib);
  p.initiate();
  expect_no_proposal_chosen(p);
  EXPECT_TRUE(p.ib.sas.empty());
  EXPECT_EQ(p.ib.released.size(), 0u);  // responder never reserved an SPI
  EXPECT_EQ(p.ia.released.size(), 1u);  // initiator's reserved SPI is given back
}

TEST_F(Quiet, ResponderLifetimeShorterThanProposedIsHonoured) {
  IkePolicy ike;
  IpsecPolicy ia{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha1_96, DhGroup::kModp1536, 7200};
  IpsecPolicy ib = ia;
  ib.lifetime_s = 900;
  Pair p(ike, ia, ike, ib);
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.a.status("site").child->lifetime_s, 900u);
  EXPECT_EQ(p.b.status("site").child->lifetime_s, 900u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
