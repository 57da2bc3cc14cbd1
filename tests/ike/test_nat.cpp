// NAT traversal (RFC 3947, RFC 3948): floating to 4500, UDP encapsulation, peer moves
// only on authenticated messages, NAT keepalives.
#include <gtest/gtest.h>

#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

TEST_F(Quiet, NatBetweenPeersFloatsTo4500AndInstallsUdpEncapsulatedSas) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  // A is behind a NAPT; the NAT-D hashes then disagree.
  p.net.filter = [](Packet& pk) {
    napt_in_front_of_a(pk);
    return true;
  };
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_matching_sas(p, ip);
  const auto* a_out = p.ia.find(dp::Direction::kOutbound);
  const auto* b_out = p.ib.find(dp::Direction::kOutbound);
  EXPECT_TRUE(a_out->udp_encap);
  EXPECT_TRUE(b_out->udp_encap);
  EXPECT_EQ(a_out->local_port, 4500);
  EXPECT_EQ(a_out->peer_port, 4500);
  EXPECT_EQ(b_out->local_port, 4500);
  EXPECT_EQ(b_out->peer_port, 5500);  // the NAT's mapped port
}

// RFC 3947 §4: the peer's port is updated only from authenticated messages. A is behind a
// NAPT (4500 -> 5500). Datagrams from A's address but another source port that do not
// authenticate -- a replayed MM1, a forged Main Mode message with the SA's cookies, garbage
// "encrypted" Quick Mode and informational messages -- must not move B's idea of A's port:
// B sends nothing there, installs nothing for it, and its next rekey still goes to 5500.
// After a NAT rebinding (5500 -> 6500) a Quick Mode with a tampered HASH from a third port is
// dropped without an answer and without spoiling the exchange; the authentic retransmission
// from 6500 moves B: it answers there and the CHILD SAs installed from then on carry 6500. A
// replayed authentic informational from a third port is a replay, not a move.
// The test runs over 100 lines on purpose: its three phases (forgeries, rebinding, replay)
// each start from the NAT mapping, SPIs and cookies the previous phase left.
TEST_F(Quiet, OnlyAuthenticatedMessagesFromANewPortMoveThePeerAndItsSas) {
  IkePolicy ike;
  ike.hash = HashAlg::kSha256;  // HASH(1) then fills plaintext block 1 alone (see below)
  IpsecPolicy ip;
  Pair p(ike, ip);
  std::uint16_t nat_4500 = 5500;
  std::optional<Packet> mm1;
  Cookie ic{}, rc{};  // the SA's cookies, as an on-path attacker sees them
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA) {
      if (!mm1) mm1 = pk;
      if (auto h = parse_header(pk.data); h && h->rcookie != Cookie{}) ic = h->icookie, rc = h->rcookie;
      pk.from.port = pk.from.port == 4500 ? nat_4500 : static_cast<std::uint16_t>(pk.from.port + 1000);
    }
    if (pk.to.addr == kAddrA) {
      if (pk.to.port != 5500 && pk.to.port != 1500 && pk.to.port != nat_4500) return false;
      pk.to.port = pk.to.port == 1500 ? 500 : 4500;
    }
    return true;
  };
  p.initiate();
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.ib.find(dp::Direction::kOutbound)->peer_port, 5500);
  ASSERT_TRUE(mm1.has_value());
  const std::size_t b_sas = p.ib.sas.size();
  const auto b_child = *p.b.status("site").child;
  std::vector<Packet> b_sent;
  const dp::UdpEndpoint b_ep{kAddrB, 4500}, spoof{kAddrA, 6500};
  auto inject = [&](const Bytes& data) {
    p.b.on_datagram({b_ep, spoof, data});
    for (auto& pk : p.net.q) b_sent.push_back(pk);
    p.net.q.clear();
  };
  // 1. a replay of A's MM1 (answered, if at all, to the old port)
  inject(mm1->data);
  // 2..4: messages carrying the live SA's cookies: unencrypted ID_PROT, garbage QM and
  // garbage informational (fresh message ids, 32 random bytes of "ciphertext")
  ASSERT_NE(rc, Cookie{});
  auto forged = [&](ExchangeType ex, std::uint32_t mid) {
    Header h;
    h.icookie = ic;
    h.rcookie = rc;
    h.exchange = static_cast<std::uint8_t>(ex);
    h.message_id = mid;
    return undecryptable_message(h, 0x5a);
  };
  {
    PayloadChain c;
    c.add(PayloadType::kKe, Bytes(128, 1));
    c.add(PayloadType::kNonce, Bytes(16, 2));
    Header h;
    h.icookie = ic;
    h.rcookie = rc;
    h.exchange = static_cast<std::uint8_t>(ExchangeType::kIdentityProtection);
    inject(build_message(h, c));
  }
  inject(forged(ExchangeType::kQuickMode, 0x11223344));
  inject(forged(ExchangeType::kInformational, 0x55667788));
  for (const auto& pk : b_sent) EXPECT_NE(pk.to.port, 6500) << "B answered the unauthenticated port";
  EXPECT_EQ(p.ib.sas.size(), b_sas);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").child->spi_in, b_child.spi_in);
  // B still talks to 5500: its own rekey reaches A through the NAT and the new pair carries
  // the old, authenticated port.
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         b_child.spi_out, 9});
  p.run_for(1000 + static_cast<int>(kOutboundSwitchDelay.count()), 500);
  for (const auto& pk : b_sent) EXPECT_NE(pk.to.port, 6500);
  ASSERT_EQ(p.ib.sas.size(), b_sas + 2);
  EXPECT_EQ(p.ib.sas[b_sas].peer_port, 5500);
  EXPECT_EQ(p.ib.sas[b_sas + 1].peer_port, 5500);
  EXPECT_NE(p.b.status("site").child->spi_in, b_child.spi_in);
  const std::size_t b_sas2 = p.ib.sas.size();

  // NAT rebinding: A's 4500 now maps to 6500. A's rekey QM (authenticated) moves B.
  // Its first QM1 is lost on the way; a tampered copy arrives from yet another port: a CBC
  // bit flip in ciphertext block 1 garbles plaintext block 1 (HASH bytes 12..27) and flips
  // one HASH byte in block 2, so it decrypts and parses but its HASH does not verify.
  nat_4500 = 6500;
  std::optional<Packet> a_qm1;
  std::optional<Packet> a_info;  // A's last protected informational (a Delete after grace)
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA) {
      pk.from.port = pk.from.port == 4500 ? nat_4500 : pk.from.port;
      auto h = parse_header(pk.data);
      if (h && h->exchange == static_cast<std::uint8_t>(ExchangeType::kInformational))
        a_info = pk;
      if (h && h->exchange == static_cast<std::uint8_t>(ExchangeType::kQuickMode) && !a_qm1) {
        a_qm1 = pk;
        return false;
      }
    }
    if (pk.to.addr == kAddrA) {
      if (pk.to.port != nat_4500) return false;  // the old mapping is gone
      pk.to.port = 4500;
    }
    return true;
  };
  p.ia.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         p.a.status("site").child->spi_out, 7});
  p.initiate();
  ASSERT_TRUE(a_qm1.has_value());
  Bytes tampered = a_qm1->data;
  ASSERT_GE(tampered.size(), kHeaderLen + 48);
  tampered[kHeaderLen + 16] ^= 0x01;
  const dp::UdpEndpoint spoof2{kAddrA, 7500};
  p.b.on_datagram({b_ep, spoof2, tampered});
  for (auto& pk : p.net.q) EXPECT_NE(pk.to.port, 7500) << "B answered a message that failed its HASH";
  p.net.q.clear();
  EXPECT_EQ(p.ib.sas.size(), b_sas2);
  p.run_for(kRetransmitBase.count() + 1000, 500);  // A retransmits QM1 from 6500
  ASSERT_EQ(p.ib.sas.size(), b_sas2 + 2);
  EXPECT_EQ(p.ib.sas[b_sas2].peer_port, 6500);
  EXPECT_EQ(p.ib.sas[b_sas2 + 1].peer_port, 6500);
  EXPECT_EQ(p.b.status("site").child->peer_port, 6500);
  expect_both_active(p);

  // A replayed authentic informational (A's Delete of the replaced pair, HASH valid) from
  // another port is a replay, not a rebinding: B's next rekey still goes to 6500.
  p.run_for(kRekeyGrace.count() + 1000, 500);
  ASSERT_TRUE(a_info.has_value());
  p.net.q.clear();
  p.b.on_datagram({b_ep, spoof2, a_info->data});
  for (auto& pk : p.net.q) EXPECT_NE(pk.to.port, 7500);
  p.net.q.clear();
  const std::size_t b_sas3 = p.ib.sas.size();
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         p.b.status("site").child->spi_out, 9});
  p.run_for(1000 + static_cast<int>(kOutboundSwitchDelay.count()), 500);
  ASSERT_EQ(p.ib.sas.size(), b_sas3 + 2);
  EXPECT_EQ(p.ib.sas[b_sas3].peer_port, 6500);
  EXPECT_EQ(p.ib.sas[b_sas3 + 1].peer_port, 6500);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, NatKeepalivesGoFromTheSideBehindTheNatEvery20s) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  int ka_from_a = 0, ka_from_b = 0;
  p.net.filter = [&](Packet& pk) {
    const bool ka = pk.data == Bytes{0xff};
    if (ka) {
      EXPECT_EQ(pk.to.port, 4500);
      EXPECT_EQ(pk.from.port, 4500);  // as sent, before the NAT maps it
      (pk.from.addr == kAddrA ? ka_from_a : ka_from_b)++;
    }
    napt_in_front_of_a(pk);
    return !ka;  // B's data plane would not pass them to IKE
  };
  p.initiate();
  ASSERT_TRUE(p.a.status("site").child->udp_encap);
  p.run_for(61000, 500);
  EXPECT_GE(ka_from_a, 3);
  EXPECT_LE(ka_from_a, 4);
  EXPECT_EQ(ka_from_b, 0);
}

}  // namespace
}  // namespace ipsecgw::ike::test
