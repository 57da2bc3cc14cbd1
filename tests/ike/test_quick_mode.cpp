// Quick Mode: ESP proposal mismatch, RESPONDER-LIFETIME, duplicates of its messages.
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

// The Quick Mode messages of an exchange that ran to the end, as they crossed the network.
struct QuickModeSeen : Pair {
  QuickModeSeen() : Pair(kDefaults) {
    net.filter = [this](Packet& pk) {
      if (is_quick_mode_on_wire(pk)) qm.push_back(pk);
      return true;
    };
    initiate();
    net.filter = nullptr;
  }
  std::vector<Packet> qm;  // QM1, QM2, QM3
};

// strongSwan and ipsecgw ping-ponged: a copy of QM3 answered with QM2 makes the initiator
// answer that QM2 copy with QM3 again, and so on. QM3 ends the exchange: a copy of it gets
// no answer, and the exchange stays as it was.
TEST_F(Quiet, RepeatedQm3IsNotAnsweredWithQm2) {
  QuickModeSeen p;
  expect_both_active(p);
  ASSERT_EQ(p.qm.size(), 3u);
  const Packet qm3 = p.qm[2];
  ASSERT_EQ(qm3.from.addr, kAddrA);
  const int sent = p.net.sent;
  for (int i = 0; i < 3; ++i) p.b.on_datagram({qm3.to, qm3.from, qm3.data});
  EXPECT_TRUE(p.net.q.empty()) << "a copy of QM3 was answered";
  p.pump();
  EXPECT_EQ(p.net.sent, sent);
  expect_both_active(p);
  expect_matching_sas(p, IpsecPolicy{});
}

// A retransmitted QM1 (the peer missed our QM2) gets the stored QM2 again, not a new one.
TEST_F(Quiet, RetransmittedQm1GetsTheStoredQm2Again) {
  Pair p(kDefaults);
  std::vector<Packet> qm;
  p.net.filter = [&](Packet& pk) {
    if (!is_quick_mode_on_wire(pk)) return true;
    qm.push_back(pk);
    return qm.size() != 2;  // the first QM2 is lost
  };
  p.initiate();
  ASSERT_EQ(qm.size(), 2u);
  const Packet qm1 = qm[0];
  p.b.on_datagram({qm1.to, qm1.from, qm1.data});  // as A's retransmission would bring it
  ASSERT_EQ(p.net.q.size(), 1u);
  EXPECT_EQ(p.net.q.front().data, qm[1].data) << "QM1's copy was not answered from the cache";
  p.pump();
  expect_both_active(p);
  expect_matching_sas(p, IpsecPolicy{});
}

// Likewise MM6 ends Main Mode: a copy reaching the initiator before QM2 does is not answered
// with our last message (QM1 by then), which would start the same ping-pong.
TEST_F(Quiet, RepeatedMm6IsNotAnswered) {
  Pair p(kDefaults);
  int mm_from_b = 0, qm1_from_a = 0;
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA && is_quick_mode_on_wire(pk)) ++qm1_from_a;
    if (pk.from.addr == kAddrB && is_exchange(pk, ExchangeType::kIdentityProtection) &&
        ++mm_from_b == 3)
      p.net.q.push_front(pk);  // MM6 delivered twice in a row
    return true;
  };
  p.initiate();
  expect_both_active(p);
  EXPECT_EQ(mm_from_b, 4);        // MM2, MM4, MM6 and its copy
  EXPECT_EQ(qm1_from_a, 2);       // QM1 and QM3, no QM1 again for the copy of MM6
}

}  // namespace
}  // namespace ipsecgw::ike::test
