// SA creation (dataplane/sa.hpp: per-direction structs, algorithm parameters, header template,
// counters) and the outer-header parse of inbound packets (dataplane/esp.hpp: UDP 4500
// classification, esp_inbound_parse / esp_inbound_parse_l4 and the layout they record in the
// mbuf). The ESP data path itself is in test_esp.cpp.
#include <gtest/gtest.h>

#include <functional>
#include <type_traits>

#include "tests/dataplane/esp_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

// ---------------------------------------------------------------- SA creation

TEST(SaCreate, RejectsBadSpecsNamingTheField) {
  struct Case {
    std::function<void(SaSpec&)> mutate;
    const char* field;
  };
  const Case cases[] = {
      {[](SaSpec& s) { s.replay_window = 4097; }, "replay_window"},
      {[](SaSpec& s) { s.mtu = 100; }, "mtu"},
      {[](SaSpec& s) { s.spi = 3; }, "spi"},
      {[](SaSpec& s) { s.enc_key = crypto::SecureBytes(15); }, "enc_key"},
      {[](SaSpec& s) { s.auth_key = crypto::SecureBytes(16); }, "auth_key"},
      {[](SaSpec& s) { s.local_subnet = {0x0A010001, 16}; }, "local_subnet"},
      {[](SaSpec& s) { s.peer_subnet = {0, 33}; }, "peer_subnet"},
  };
  for (const auto& c : cases) {
    SaSpec s = make_spec(Direction::kOutbound, kCombos[0], false);
    c.mutate(s);
    auto r = sa_create<OutboundSa>(s);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_NE(r.error().find(c.field), std::string::npos) << r.error();
  }
  SaSpec ok = make_spec(Direction::kInbound, kCombos[0], false);
  ok.replay_window = 4096;
  auto r = sa_create<InboundSa>(ok);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.value()->replay.size(), 4096u);
  sa_destroy(r.value());
}

// An SA is built for the direction its struct serves; a spec of the other direction is refused.
TEST(SaCreate, RejectsASpecOfTheOtherDirection) {
  auto in = sa_create<InboundSa>(make_spec(Direction::kOutbound, kCombos[0], false));
  ASSERT_FALSE(in.ok());
  EXPECT_NE(in.error().find("dir"), std::string::npos) << in.error();
  auto out = sa_create<OutboundSa>(make_spec(Direction::kInbound, kCombos[0], false));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().find("dir"), std::string::npos) << out.error();
}

// Passing an SA of the wrong direction does not compile.
template <class S>
concept EncryptsWith = requires(crypto::EspEngine& e, std::span<rte_mbuf*> p, std::span<S* const> s,
                                LcoreStats& st) { esp_outbound(e, p, s, st); };
template <class S>
concept DecryptsWith = requires(crypto::EspEngine& e, std::span<rte_mbuf*> p, std::span<S* const> s,
                                LcoreStats& st) { esp_inbound(e, p, s, st); };
static_assert(EncryptsWith<OutboundSa> && !EncryptsWith<InboundSa>);
static_assert(DecryptsWith<InboundSa> && !DecryptsWith<OutboundSa>);
static_assert(!std::is_convertible_v<InboundSa*, OutboundSa*> &&
              !std::is_convertible_v<OutboundSa*, InboundSa*>);

// The algorithm parameters are the SA's, set at creation from its algorithms.
TEST(SaCreate, AlgorithmParametersComeFromTheAlgorithms) {
  for (const Combo& c : kCombos) {
    auto r = sa_create<OutboundSa>(make_spec(Direction::kOutbound, c, true));
    ASSERT_TRUE(r.ok()) << r.error();
    const OutboundSa& sa = *r.value();
    EXPECT_EQ(sa.alg.iv_len, 16u);  // AES-CBC, RFC 3602 §3
    EXPECT_EQ(sa.alg.block_align, 16u);
    EXPECT_EQ(sa.alg.cipher_offset, 8u + 16u);
    EXPECT_EQ(sa.alg.icv_len, crypto::icv_len(c.integ));
    EXPECT_EQ(sa.alg.key_len, crypto::cipher_key_len(c.cipher));
    EXPECT_EQ(sa.outer_hdr_len, 20u + 8u + 8u + 16u);
    EXPECT_EQ(std::memcmp(&sa.alg, &sa.keys.alg, sizeof sa.alg), 0) << "SA and key schedule agree";
    sa_destroy(r.value());
  }
}

TEST(SaCreate, BuildsHeaderTemplateAndReadsCounters) {
  auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[3], true, 0xdeadbeef));
  EXPECT_EQ(sa->outer_hdr_len, 20 + 8 + 8 + 16);
  EXPECT_EQ(sa->alg.icv_len, 16);
  EXPECT_EQ(sa->seq_next.load(), 1u);
  EXPECT_EQ(sa->hdr_template[0], 0x45);
  EXPECT_EQ(sa->hdr_template[9], 17);
  EXPECT_EQ(be32(sa->hdr_template + 12), kLocalGw);
  EXPECT_EQ(be32(sa->hdr_template + 16), kPeerGw);
  EXPECT_EQ(be16(sa->hdr_template + 22), 4500);
  EXPECT_EQ(be32(sa->hdr_template + 28), 0xdeadbeefu);
  sa->counters.packets.store(5);
  sa->counters.drops[static_cast<unsigned>(DropReason::kBadIcv)].store(2);
  SaCounters c = sa_read_counters(*sa);
  EXPECT_EQ(c.packets, 5u);
  EXPECT_EQ(c.drops[static_cast<unsigned>(DropReason::kBadIcv)], 2u);
}

// ---------------------------------------------------------------- parsing helpers

TEST(Udp4500, ClassifiesKeepaliveIkeAndEsp) {
  const std::uint8_t ka[1] = {0xFF};
  EXPECT_EQ(classify_udp4500(ka, 1), Udp4500Kind::kKeepalive);
  const std::uint8_t ike[12] = {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(classify_udp4500(ike, 12), Udp4500Kind::kIke);
  const std::uint8_t esp[8] = {0x12, 0x34, 0xab, 0xcd, 0, 0, 0, 1};
  EXPECT_EQ(classify_udp4500(esp, 8), Udp4500Kind::kEsp);
  EXPECT_EQ(classify_udp4500(esp, 7), Udp4500Kind::kRunt);
  EXPECT_EQ(classify_udp4500(esp, 0), Udp4500Kind::kRunt);
  const std::uint8_t zero1[1] = {0};
  EXPECT_EQ(classify_udp4500(zero1, 1), Udp4500Kind::kRunt);
}

class EspParse : public EspFixture {};

TEST_F(EspParse, ReadsSpiAndEncapOrNamesTheProblem) {
  auto sa_udp = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], true, 0x4242));
  auto sa_esp = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false, 0x4343));
  Bytes u = encrypt_all(sa_udp.get(), {make_inner(5)})[0];
  Bytes e = encrypt_all(sa_esp.get(), {make_inner(5)})[0];
  EspInboundInfo info;
  DropReason why{};
  ASSERT_TRUE(esp_inbound_parse(mbuf(u), &info, &why));
  EXPECT_EQ(info.spi, 0x4242u);
  EXPECT_TRUE(info.udp_encap);
  ASSERT_TRUE(esp_inbound_parse(mbuf(e), &info, &why));
  EXPECT_EQ(info.spi, 0x4343u);
  EXPECT_FALSE(info.udp_encap);
  // IKE on 4500 (non-ESP marker) is not ESP.
  Bytes ike = u;
  ike[28] = ike[29] = ike[30] = ike[31] = 0;
  EXPECT_FALSE(esp_inbound_parse(mbuf(ike), &info, &why));
  EXPECT_EQ(why, DropReason::kNotEsp);
  Bytes frag = e;
  frag[6] |= 0x20;  // MF
  EXPECT_FALSE(esp_inbound_parse(mbuf(frag), &info, &why));
  EXPECT_EQ(why, DropReason::kFragError);
  Bytes v6 = e;
  v6[0] = 0x65;
  EXPECT_FALSE(esp_inbound_parse(mbuf(v6), &info, &why));
  EXPECT_EQ(why, DropReason::kBadIpHeader);
  EXPECT_FALSE(esp_inbound_parse(mbuf(Bytes(e.begin(), e.begin() + 10)), &info, &why));
  EXPECT_EQ(why, DropReason::kRunt);
}

// The parse records the outer layout in the mbuf; esp_inbound_parse_l4 (the RX path, IPv4
// header already checked) records the same, and an unparsed mbuf has none.
TEST_F(EspParse, RecordsTheLayoutInTheMbuf) {
  auto sa_udp = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], true, 0x4242));
  auto sa_esp = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false, 0x4343));
  for (const bool udp : {true, false}) {
    const Bytes b = encrypt_all(udp ? sa_udp.get() : sa_esp.get(), {make_inner(40)})[0];
    rte_mbuf* m = mbuf(b);
    EXPECT_FALSE(esp_layout_recorded(m));
    EspInboundInfo info;
    DropReason why{};
    ASSERT_TRUE(esp_inbound_parse(m, &info, &why));
    ASSERT_TRUE(esp_layout_recorded(m));
    EXPECT_EQ(m->packet_type, udp ? kEspPtypeUdp : kEspPtype);
    EXPECT_EQ(esp_recorded_offset(m), udp ? 28u : 20u);
    EXPECT_EQ(m->tso_segsz, b.size());
    EXPECT_EQ(esp_recorded_spi(m), udp ? 0x4242u : 0x4343u);
    rte_mbuf* m2 = mbuf(b);
    ASSERT_TRUE(esp_inbound_parse_l4(m2, 20, &info, &why));
    EXPECT_EQ(m2->packet_type, m->packet_type);
    EXPECT_EQ(m2->tx_offload, m->tx_offload);
    EXPECT_EQ(info.spi, udp ? 0x4242u : 0x4343u);
  }
  // parse_l4 gives the UDP/ESP drop reasons of the full parse.
  Bytes ike = encrypt_all(sa_udp.get(), {make_inner(5)})[0];
  ike[28] = ike[29] = ike[30] = ike[31] = 0;
  EspInboundInfo info;
  DropReason why{};
  EXPECT_FALSE(esp_inbound_parse_l4(mbuf(ike), 20, &info, &why));
  EXPECT_EQ(why, DropReason::kNotEsp);
  Bytes shortudp = encrypt_all(sa_udp.get(), {make_inner(5)})[0];
  shortudp[24] = 0;
  shortudp[25] = 4;  // UDP length below the UDP header
  EXPECT_FALSE(esp_inbound_parse_l4(mbuf(shortudp), 20, &info, &why));
  EXPECT_EQ(why, DropReason::kRunt);
}

}  // namespace
}  // namespace ipsecgw::dp
