// ESP tunnel data path (dataplane/esp.hpp): our outbound -> our inbound round trips for every
// algorithm combination, the outer header fields, and each drop reason with its counters.
// Interoperability with an independent implementation is in test_esp_scapy.cpp.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "tests/dataplane/esp_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

std::size_t esp_offset(bool encap) { return 20 + (encap ? 8 : 0); }

std::uint64_t sa_drops(const SaHead& sa, DropReason r) {
  return sa.counters.drops[static_cast<unsigned>(r)].load();
}

// ---------------------------------------------------------------- round trips, all combos

class EspRoundTrip : public EspFixture,
                     public ::testing::WithParamInterface<std::tuple<int, bool>> {};

TEST_P(EspRoundTrip, OutboundThenInboundRestoresInnerPacketsAndHeadersAreCorrect) {
  const Combo combo = kCombos[std::get<0>(GetParam())];
  const bool encap = std::get<1>(GetParam());
  SaSpec out_spec = make_spec(Direction::kOutbound, combo, encap);
  out_spec.mtu = 1600;  // the largest inner packet here is 1430 bytes
  auto out_sa = create_sa<OutboundSa>(out_spec);
  auto in_sa = create_sa<InboundSa>(make_spec(Direction::kInbound, combo, encap));
  ASSERT_TRUE(out_sa && in_sa);

  const std::vector<std::size_t> sizes = {0, 1, 7, 8, 12, 13, 14, 15, 16, 17, 30, 64,
                                          100, 255, 256, 511, 512, 1000, 1399, 1400, 1410};
  std::vector<Bytes> inners;
  for (std::size_t i = 0; i < sizes.size(); ++i)
    inners.push_back(make_inner(sizes[i], kLocalHost + i, kPeerHost + 3 * i,
                                static_cast<std::uint8_t>(0x28 + 4 * i + (i & 3)), i % 2 == 0,
                                static_cast<std::uint8_t>(i)));

  std::vector<rte_mbuf*> ms;
  for (const auto& b : inners) ms.push_back(mbuf(b));
  std::vector<OutboundSa*> sas(ms.size(), out_sa.get());
  LcoreStats st;
  ASSERT_EQ(esp_outbound(*engine_, ms, sas, st), ms.size());
  EXPECT_EQ(st.esp_out_packets, inners.size());
  std::uint64_t inner_bytes = 0;
  for (const auto& b : inners) inner_bytes += b.size();
  EXPECT_EQ(st.esp_out_bytes, inner_bytes);
  EXPECT_EQ(out_sa->counters.packets.load(), inners.size());
  EXPECT_EQ(out_sa->counters.bytes.load(), inner_bytes);

  const std::size_t eo = esp_offset(encap);
  const std::size_t icv = crypto::icv_len(combo.integ);
  std::set<Bytes> ivs;
  std::vector<Bytes> outers;
  for (std::size_t i = 0; i < ms.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i) + " inner size " + std::to_string(inners[i].size()));
    Bytes o = to_bytes(ms[i]);
    outers.push_back(o);
    const std::uint8_t* p = o.data();
    ASSERT_EQ(o.size(), esp_outbound_size(*out_sa, static_cast<std::uint32_t>(inners[i].size())));
    // Outer IPv4.
    EXPECT_EQ(p[0], 0x45);
    EXPECT_EQ(p[1], inners[i][1]) << "TOS (DSCP and ECN) copied from the inner header";
    EXPECT_EQ(be16(p + 2), o.size());
    EXPECT_EQ(p[6] & 0x40, inners[i][6] & 0x40) << "DF copied (default policy)";
    EXPECT_EQ(be16(p + 6) & 0x3FFF, 0) << "no fragment offset / MF";
    EXPECT_EQ(p[8], 64) << "TTL";
    EXPECT_EQ(p[9], encap ? 17 : 50);
    EXPECT_EQ(inet_checksum(p, 20), 0) << "outer header checksum valid";
    EXPECT_EQ(be32(p + 12), kLocalGw);
    EXPECT_EQ(be32(p + 16), kPeerGw);
    if (encap) {
      EXPECT_EQ(be16(p + 20), 4500);
      EXPECT_EQ(be16(p + 22), 4500);
      EXPECT_EQ(be16(p + 24), o.size() - 20);
      EXPECT_EQ(be16(p + 26), 0) << "UDP checksum zero (RFC 3948 §3.1.2)";
    }
    EXPECT_EQ(be32(p + eo), 0x1234abcdu) << "SPI";
    EXPECT_EQ(be32(p + eo + 4), i + 1) << "sequence numbers from 1";
    const std::size_t clen = o.size() - eo - 24 - icv;
    EXPECT_EQ(clen % 16, 0u);
    EXPECT_LT(clen - inners[i].size() - 2, 16u) << "minimal padding";
    ivs.insert(Bytes(p + eo + 8, p + eo + 24));
    // The payload is not sent in the clear.
    if (inners[i].size() >= 64) {
      EXPECT_EQ(std::search(o.begin(), o.end(), inners[i].begin() + 20, inners[i].begin() + 64),
                o.end());
    }
  }
  EXPECT_EQ(ivs.size(), ms.size()) << "every packet has its own IV";

  LcoreStats in_st;
  std::vector<rte_mbuf*> in_ms;
  ASSERT_EQ(decrypt_burst(in_sa.get(), outers, in_st, in_ms), outers.size());
  for (std::size_t i = 0; i < in_ms.size(); ++i)
    EXPECT_EQ(to_bytes(in_ms[i]), inners[i]) << "packet " << i;
  EXPECT_EQ(in_st.esp_in_packets, inners.size());
  EXPECT_EQ(in_st.esp_in_bytes, inner_bytes);
  EXPECT_EQ(in_sa->counters.packets.load(), inners.size());
  EXPECT_EQ(in_sa->replay.top(), inners.size());
  for (auto d : in_st.drops) EXPECT_EQ(d, 0u);
}

INSTANTIATE_TEST_SUITE_P(AllCombos, EspRoundTrip,
                         ::testing::Combine(::testing::Range(0, 6), ::testing::Bool()),
                         [](const auto& info) {
                           return combo_name(kCombos[std::get<0>(info.param)],
                                             std::get<1>(info.param));
                         });

// ---------------------------------------------------------------- outbound header policies

class EspOutbound : public EspFixture {};

TEST_F(EspOutbound, DfPolicyCopySetClear) {
  const Combo c = kCombos[0];
  for (DfPolicy pol : {DfPolicy::kCopy, DfPolicy::kSet, DfPolicy::kClear}) {
    SaSpec spec = make_spec(Direction::kOutbound, c, false);
    spec.df = pol;
    spec.ttl = 17;
    auto sa = create_sa<OutboundSa>(spec);
    auto outs = encrypt_all(sa.get(), {make_inner(40, kLocalHost, kPeerHost, 0, true),
                                       make_inner(40, kLocalHost, kPeerHost, 0, false)});
    ASSERT_EQ(outs.size(), 2u);
    const bool want_df[3][2] = {{true, false}, {true, true}, {false, false}};
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ((outs[k][6] & 0x40) != 0, want_df[static_cast<int>(pol)][k])
          << "policy " << static_cast<int>(pol) << " inner DF " << (k == 0);
      EXPECT_EQ(outs[k][8], 17);
      EXPECT_EQ(inet_checksum(outs[k].data(), 20), 0);
    }
    EXPECT_NE(be16(outs[0].data() + 4), be16(outs[1].data() + 4)) << "fresh IP ID per packet";
  }
}

TEST_F(EspOutbound, EcnAndDscpAreCopiedToTheOuterHeader) {
  auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false));
  for (std::uint8_t tos : {0x00, 0xB8, 0xB9, 0xBA, 0xBB, 0x03}) {
    auto outs = encrypt_all(sa.get(), {make_inner(10, kLocalHost, kPeerHost, tos)});
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0][1], tos);
  }
}

TEST_F(EspOutbound, MultiSegmentPacketIsLinearizedAndEncrypted) {
  auto out_sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[3], true));
  auto in_sa = create_sa<InboundSa>(make_spec(Direction::kInbound, kCombos[3], true));
  Bytes inner = make_inner(300);
  rte_mbuf* head = mbuf(Bytes(inner.begin(), inner.begin() + 100));
  rte_mbuf* tail = rte_pktmbuf_alloc(pool_);
  ASSERT_NE(tail, nullptr);
  std::memcpy(rte_pktmbuf_append(tail, static_cast<std::uint16_t>(inner.size() - 100)),
              inner.data() + 100, inner.size() - 100);
  ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
  rte_mbuf* ms[1] = {head};
  OutboundSa* sas[1] = {out_sa.get()};
  LcoreStats st;
  ASSERT_EQ(esp_outbound(*engine_, ms, sas, st), 1);
  EXPECT_EQ(head->nb_segs, 1);
  LcoreStats in_st;
  std::vector<rte_mbuf*> in_ms;
  ASSERT_EQ(decrypt_burst(in_sa.get(), {to_bytes(head)}, in_st, in_ms), 1);
  EXPECT_EQ(to_bytes(in_ms[0]), inner);
}

TEST_F(EspOutbound, SequenceExhaustionDropsAndRaisesEvent) {
  auto sa = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false));
  sa->seq_next.store(0xFFFFFFFEull);
  std::vector<rte_mbuf*> ms;
  for (int i = 0; i < 4; ++i) ms.push_back(mbuf(make_inner(10 + i)));
  Bytes second_inner = to_bytes(ms[1]);
  std::vector<OutboundSa*> sas(4, sa.get());
  LcoreStats st;
  EXPECT_EQ(esp_outbound(*engine_, ms, sas, st), 2);
  EXPECT_EQ(be32(to_bytes(ms[0]).data() + 24), 0xFFFFFFFEu);
  EXPECT_EQ(be32(to_bytes(ms[1]).data() + 24), 0xFFFFFFFFu);
  EXPECT_EQ(st.dropped(DropReason::kSeqExhausted), 2u);
  EXPECT_EQ(sa_drops(*sa, DropReason::kSeqExhausted), 2u);
  EXPECT_TRUE(sa->events.load() & kEvSeqExhausted);
  // Later bursts never send a wrapped number.
  rte_mbuf* more[1] = {mbuf(make_inner(5))};
  OutboundSa* one[1] = {sa.get()};
  EXPECT_EQ(esp_outbound(*engine_, more, one, st), 0);
  EXPECT_EQ(st.dropped(DropReason::kSeqExhausted), 3u);
}

TEST_F(EspOutbound, BurstContractGoodFirstInOrderThenBad) {
  auto a = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[0], false, 0x1000));
  auto b = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[5], true, 0x2000));
  auto dead = create_sa<OutboundSa>(make_spec(Direction::kOutbound, kCombos[1], false, 0x3000));
  dead->dead.store(true);
  // good(a) bad(null) good(a) bad(dead) good(b) bad(mtu, a) good(b) bad(runt, b) good(a)
  std::vector<rte_mbuf*> ms = {mbuf(make_inner(1)), mbuf(make_inner(2)), mbuf(make_inner(3)),
                               mbuf(make_inner(4)), mbuf(make_inner(5)), mbuf(make_inner(1470)),
                               mbuf(make_inner(7)), mbuf(Bytes(10, 0x45)), mbuf(make_inner(9))};
  std::vector<OutboundSa*> sas = {a.get(), nullptr, a.get(), dead.get(), b.get(),
                          a.get(), b.get(), b.get(), a.get()};
  const std::vector<rte_mbuf*> orig = ms;
  LcoreStats st;
  ASSERT_EQ(esp_outbound(*engine_, ms, sas, st), 5);
  const std::vector<rte_mbuf*> want = {orig[0], orig[2], orig[4], orig[6], orig[8],
                                       orig[1], orig[3], orig[5], orig[7]};
  EXPECT_EQ(ms, want);
  EXPECT_EQ(st.dropped(DropReason::kNoSa), 1u);
  EXPECT_EQ(st.dropped(DropReason::kSaDown), 1u);
  EXPECT_EQ(st.dropped(DropReason::kMtuExceeded), 1u);
  EXPECT_EQ(st.dropped(DropReason::kRunt), 1u);
  EXPECT_EQ(st.esp_out_packets, 5u);
  // Sequence numbers per SA, in packet order, across runs.
  EXPECT_EQ(be32(to_bytes(orig[0]).data() + 24), 1u);
  EXPECT_EQ(be32(to_bytes(orig[2]).data() + 24), 2u);
  EXPECT_EQ(be32(to_bytes(orig[8]).data() + 24), 3u);
  EXPECT_EQ(be32(to_bytes(orig[4]).data() + 32), 1u);
  EXPECT_EQ(be32(to_bytes(orig[6]).data() + 32), 2u);
  EXPECT_EQ(a->counters.packets.load(), 3u);
  EXPECT_EQ(b->counters.packets.load(), 2u);
  EXPECT_EQ(sa_drops(*dead, DropReason::kSaDown), 1u);
}

TEST_F(EspOutbound, SoftAndHardPacketLimits) {
  SaSpec spec = make_spec(Direction::kOutbound, kCombos[0], false);
  spec.soft_packets = 2;
  spec.hard_packets = 3;
  auto sa = create_sa<OutboundSa>(spec);
  std::vector<rte_mbuf*> ms;
  for (int i = 0; i < 5; ++i) ms.push_back(mbuf(make_inner(10)));
  std::vector<OutboundSa*> sas(5, sa.get());
  LcoreStats st;
  EXPECT_EQ(esp_outbound(*engine_, ms, sas, st), 3);
  EXPECT_EQ(st.dropped(DropReason::kSaDown), 2u);
  EXPECT_TRUE(sa->dead.load());
  EXPECT_EQ(sa->events.load() & (kEvSoftLimit | kEvHardLimit), kEvSoftLimit | kEvHardLimit);
  rte_mbuf* more[1] = {mbuf(make_inner(5))};
  OutboundSa* one[1] = {sa.get()};
  EXPECT_EQ(esp_outbound(*engine_, more, one, st), 0);
  EXPECT_EQ(sa_drops(*sa, DropReason::kSaDown), 3u);
}

// The soft limit is raised by the packet that reaches it, whether the run before it passed
// without a per-packet check or not, and the runs after it pass up to the hard limit.
TEST_F(EspOutbound, SoftLimitsRaisedByThePacketThatReachesThem) {
  for (const bool bytes : {false, true}) {
    SaSpec spec = make_spec(Direction::kOutbound, kCombos[0], false);
    // Inner packets of 40 bytes (make_inner(20)): the 4th reaches 4 packets / 160 bytes.
    if (bytes) spec.soft_bytes = 160, spec.hard_bytes = 400;
    else spec.soft_packets = 4, spec.hard_packets = 10;
    auto sa = create_sa<OutboundSa>(spec);
    auto burst = [&](int n) {
      std::vector<rte_mbuf*> ms;
      for (int i = 0; i < n; ++i) ms.push_back(mbuf(make_inner(20)));
      std::vector<OutboundSa*> sas(ms.size(), sa.get());
      LcoreStats st;
      const auto good = esp_outbound(*engine_, ms, sas, st);
      return good;
    };
    EXPECT_EQ(burst(3), 3) << bytes;
    EXPECT_EQ(sa->events.load(), 0) << "3 packets, 120 bytes: below the soft limits " << bytes;
    EXPECT_EQ(burst(1), 1) << bytes;
    EXPECT_EQ(sa->events.load(), kEvSoftLimit) << "the 4th packet reaches it " << bytes;
    sa->events.store(0);
    EXPECT_EQ(burst(6), 6) << bytes;  // 10 packets, 400 bytes: at the hard limits, not past
    EXPECT_EQ(sa->events.load(), 0) << bytes;
    EXPECT_FALSE(sa->dead.load()) << bytes;
    EXPECT_EQ(burst(1), 0) << bytes;
    EXPECT_TRUE(sa->dead.load()) << bytes;
    EXPECT_EQ(sa->counters.packets.load(), 10u) << bytes;
  }
}

TEST_F(EspOutbound, SoftByteLimitRaisesEventOnlyOnCrossing) {
  SaSpec spec = make_spec(Direction::kOutbound, kCombos[0], false);
  spec.soft_bytes = 100;
  auto sa = create_sa<OutboundSa>(spec);
  encrypt_all(sa.get(), {make_inner(20)});  // 40 bytes
  EXPECT_EQ(sa->events.load(), 0);
  encrypt_all(sa.get(), {make_inner(50)});  // 110 bytes
  EXPECT_EQ(sa->events.load(), kEvSoftLimit);
  sa->events.store(0);  // the control plane consumed it
  encrypt_all(sa.get(), {make_inner(50)});
  EXPECT_EQ(sa->events.load(), 0) << "raised once";
  EXPECT_FALSE(sa->dead.load());
}

// ---------------------------------------------------------------- inbound negative tests

class EspInbound : public EspFixture {
 protected:
  void make_pair(int combo = 0, bool encap = false, std::uint32_t window = 64) {
    c_ = kCombos[combo];
    encap_ = encap;
    out_ = create_sa<OutboundSa>(make_spec(Direction::kOutbound, c_, encap));
    SaSpec in = make_spec(Direction::kInbound, c_, encap);
    in.replay_window = window;
    in_ = create_sa<InboundSa>(in);
    ASSERT_TRUE(out_ && in_);
  }
  // One inbound packet; returns whether it passed (inner bytes in *inner).
  bool receive(const Bytes& outer, LcoreStats& st, Bytes* inner = nullptr,
               InboundSa* sa = nullptr) {
    rte_mbuf* ms[1] = {mbuf(outer)};
    InboundSa* sas[1] = {sa ? sa : in_.get()};
    const bool ok = esp_inbound(*engine_, ms, sas, st) == 1;
    if (ok && inner) *inner = to_bytes(ms[0]);
    return ok;
  }
  // Decrypts an outer packet of ours in place with the engine, lets `mutate` edit the plaintext
  // (ciphertext region: inner packet + padding + pad length + next header), re-encrypts it with
  // the same IV and recomputes the ICV: a well-authenticated packet with a crafted trailer.
  Bytes recraft(Bytes outer, const std::function<void(std::uint8_t* pt, std::size_t len)>& mutate) {
    const std::size_t eo = esp_offset(encap_), icv = crypto::icv_len(c_.integ);
    const std::size_t clen = outer.size() - eo - 24 - icv;
    Bytes iv(outer.begin() + eo + 8, outer.begin() + eo + 24);
    crypto::EspCryptoOp op;
    op.ks = &out_->keys;
    op.data = outer.data() + eo;
    op.auth_len = static_cast<std::uint32_t>(24 + clen);
    op.cipher_offset = 24;
    op.cipher_len = static_cast<std::uint32_t>(clen);
    op.iv = iv.data();
    op.icv = outer.data() + eo + 24 + clen;
    engine_->decrypt(std::span(&op, 1));
    EXPECT_EQ(op.status, crypto::OpStatus::kOk);
    mutate(outer.data() + eo + 24, clen);
    op.status = crypto::OpStatus::kOk;
    engine_->encrypt(std::span(&op, 1));
    EXPECT_EQ(op.status, crypto::OpStatus::kOk);
    return outer;
  }
  Combo c_;
  bool encap_ = false;
  OutSaPtr out_;
  InSaPtr in_;
};

// esp_inbound_recorded on packets whose layout was recorded at parse time gives what
// esp_inbound gives on the same packets: good packets, inner bytes, drops (bad ICV, replay).
TEST_F(EspInbound, RecordedLayoutGivesTheSameResults) {
  for (const bool encap : {false, true}) {
    make_pair(1, encap);
    std::vector<Bytes> outers = encrypt_all(out_.get(), {make_inner(10), make_inner(300),
                                                         make_inner(64), make_inner(1)});
    outers.push_back(outers[1]);  // replayed
    outers[2][outers[2].size() - 1] ^= 1;  // ICV
    LcoreStats st_a, st_b;
    std::vector<rte_mbuf*> a, b;
    for (const Bytes& o : outers) {
      a.push_back(mbuf(o));
      b.push_back(mbuf(o));
      EspInboundInfo info;
      DropReason why{};
      ASSERT_TRUE(esp_inbound_parse(b.back(), &info, &why));
    }
    std::vector<InboundSa*> sas(outers.size(), in_.get());
    const auto good_a = esp_inbound(*engine_, a, sas, st_a);
    in_->replay.reset(64);
    const auto good_b = esp_inbound_recorded(*engine_, b, sas, st_b);
    ASSERT_EQ(good_a, 3u);
    ASSERT_EQ(good_b, good_a);
    for (unsigned i = 0; i < good_a; ++i) EXPECT_EQ(to_bytes(a[i]), to_bytes(b[i])) << i;
    for (unsigned r = 0; r < kDropReasonCount; ++r) EXPECT_EQ(st_a.drops[r], st_b.drops[r]) << r;
    EXPECT_EQ(st_b.dropped(DropReason::kBadIcv), 1u);
    EXPECT_EQ(st_b.dropped(DropReason::kReplay), 1u);
    EXPECT_EQ(st_a.esp_in_bytes, st_b.esp_in_bytes);
  }
}

TEST_F(EspInbound, RecraftWithoutChangesStillPasses) {
  make_pair(1, true);
  Bytes inner = make_inner(33);
  Bytes outer = recraft(encrypt_all(out_.get(), {inner})[0], [](std::uint8_t*, std::size_t) {});
  LcoreStats st;
  Bytes got;
  ASSERT_TRUE(receive(outer, st, &got));
  EXPECT_EQ(got, inner);
}

TEST_F(EspInbound, FlippedIcvBitIsBadIcvAndDoesNotMoveTheWindow) {
  make_pair(3, false);
  Bytes outer = encrypt_all(out_.get(), {make_inner(100)})[0];
  LcoreStats st;
  for (std::size_t bit : {0ul, 7ul, 8ul * 15 + 3}) {
    Bytes bad = outer;
    bad[bad.size() - 16 + bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(receive(bad, st));
  }
  // A flipped ciphertext bit fails the ICV too.
  Bytes bad = outer;
  bad[20 + 30] ^= 1;
  EXPECT_FALSE(receive(bad, st));
  EXPECT_EQ(st.dropped(DropReason::kBadIcv), 4u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kBadIcv), 4u);
  EXPECT_EQ(in_->replay.top(), 0u) << "forged packets never move the window";
  EXPECT_TRUE(receive(outer, st));
  EXPECT_EQ(st.esp_in_packets, 1u);
}

TEST_F(EspInbound, ReplayedPacketIsDropped) {
  make_pair(0, true);
  auto outs = encrypt_all(out_.get(), {make_inner(10), make_inner(20)});
  LcoreStats st;
  EXPECT_TRUE(receive(outs[1], st));
  EXPECT_TRUE(receive(outs[0], st));  // reordered inside the window: fine
  EXPECT_FALSE(receive(outs[1], st));
  EXPECT_FALSE(receive(outs[0], st));
  EXPECT_EQ(st.dropped(DropReason::kReplay), 2u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kReplay), 2u);
}

TEST_F(EspInbound, DuplicateInsideOneBurstIsDropped) {
  make_pair(0, false);
  auto outs = encrypt_all(out_.get(), {make_inner(10)});
  LcoreStats st;
  std::vector<rte_mbuf*> ms;
  EXPECT_EQ(decrypt_burst(in_.get(), {outs[0], outs[0]}, st, ms), 1);
  EXPECT_EQ(st.dropped(DropReason::kReplay), 1u);
}

TEST_F(EspInbound, SequenceLeftOfWindowIsOutsideWindow) {
  make_pair(0, false, 32);
  std::vector<Bytes> inners(40, make_inner(10));
  auto outs = encrypt_all(out_.get(), inners);
  LcoreStats st;
  ASSERT_TRUE(receive(outs[39], st));  // seq 40
  EXPECT_FALSE(receive(outs[7], st));  // seq 8 = 40 - 32: left of the window
  EXPECT_TRUE(receive(outs[8], st));   // seq 9: the left edge
  EXPECT_EQ(st.dropped(DropReason::kOutsideWindow), 1u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kOutsideWindow), 1u);
}

TEST_F(EspInbound, DisabledWindowAcceptsReplays) {
  make_pair(0, false, 0);
  auto outs = encrypt_all(out_.get(), {make_inner(10)});
  LcoreStats st;
  EXPECT_TRUE(receive(outs[0], st));
  EXPECT_TRUE(receive(outs[0], st));
}

TEST_F(EspInbound, TruncatedAtEveryLengthNeverPasses) {
  for (bool encap : {false, true}) {
    make_pair(5, encap);
    const Bytes full = encrypt_all(out_.get(), {make_inner(61)})[0];
    LcoreStats st;
    std::uint64_t dropped = 0;
    for (std::size_t len = 0; len < full.size(); ++len) {
      SCOPED_TRACE("len " + std::to_string(len) + (encap ? " udp" : " esp"));
      // As received: cut short, header lengths unchanged.
      Bytes cut(full.begin(), full.begin() + len);
      EXPECT_FALSE(receive(cut, st));
      // Lengths fixed up to the cut (as a middlebox that truncates and rewrites would).
      if (len >= 28) {
        put16(cut.data() + 2, static_cast<std::uint16_t>(len));
        cut[10] = cut[11] = 0;
        put16(cut.data() + 10, inet_checksum(cut.data(), 20));
        if (encap) put16(cut.data() + 24, static_cast<std::uint16_t>(len - 20));
        EXPECT_FALSE(receive(cut, st));
        ++dropped;
      }
      ++dropped;
      std::uint64_t total = 0;
      for (auto d : st.drops) total += d;
      ASSERT_EQ(total, dropped);
    }
    EXPECT_EQ(st.esp_in_packets, 0u);
    EXPECT_GT(st.dropped(DropReason::kRunt), 0u);
    EXPECT_GT(st.dropped(DropReason::kBadLength), 0u);
    EXPECT_GT(st.dropped(DropReason::kBadIcv), 0u);
    std::uint64_t expected_kinds = st.dropped(DropReason::kRunt) +
                                   st.dropped(DropReason::kBadLength) +
                                   st.dropped(DropReason::kBadIcv) +
                                   st.dropped(DropReason::kBadIpHeader);
    EXPECT_EQ(expected_kinds, dropped);
    EXPECT_TRUE(receive(full, st)) << "the untouched packet still passes";
  }
}

TEST_F(EspInbound, BadPaddingBytesWithValidIcvIsBadPadding) {
  make_pair(4, true);
  // inner 61 bytes -> 61 + 2 = 63 -> 1 pad byte; inner 50 -> 12 pad bytes.
  LcoreStats st;
  for (std::size_t payload : {41ul, 30ul}) {
    Bytes outer = encrypt_all(out_.get(), {make_inner(payload)})[0];
    Bytes bad = recraft(outer, [](std::uint8_t* pt, std::size_t len) {
      const std::uint8_t pad = pt[len - 2];
      ASSERT_GT(pad, 0);
      pt[len - 2 - 1] ^= 0x80;  // the last padding byte no longer equals pad
    });
    EXPECT_FALSE(receive(bad, st));
  }
  // Pad length larger than the payload.
  Bytes outer = encrypt_all(out_.get(), {make_inner(10)})[0];
  EXPECT_FALSE(receive(recraft(outer, [](std::uint8_t* pt, std::size_t len) { pt[len - 2] = 250; }),
                       st));
  EXPECT_EQ(st.dropped(DropReason::kBadPadding), 3u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kBadPadding), 3u);
  EXPECT_EQ(st.esp_in_packets, 0u);
}

TEST_F(EspInbound, NextHeaderOtherThanIpv4IsBadNextHeader) {
  make_pair(2, false);
  auto outers = encrypt_all(out_.get(), std::vector<Bytes>(4, make_inner(64)));  // seq 1..4
  LcoreStats st;
  const std::uint8_t nhs[4] = {41, 59, 6, 0};
  for (int k = 0; k < 4; ++k) {
    const std::uint8_t nh = nhs[k];
    EXPECT_FALSE(receive(
        recraft(outers[k], [nh](std::uint8_t* pt, std::size_t len) { pt[len - 1] = nh; }), st));
  }
  EXPECT_EQ(st.dropped(DropReason::kBadNextHeader), 4u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kBadNextHeader), 4u);
}

TEST_F(EspInbound, MalformedInnerHeaderIsBadIpHeader) {
  make_pair(0, false);
  auto o = encrypt_all(out_.get(), std::vector<Bytes>(3, make_inner(64)));  // seq 1..3
  LcoreStats st;
  EXPECT_FALSE(receive(recraft(o[0], [](std::uint8_t* pt, std::size_t) { pt[0] = 0x65; }), st));
  EXPECT_FALSE(receive(recraft(o[1], [](std::uint8_t* pt, std::size_t) { pt[0] = 0x44; }), st));
  // Total length longer than what was decrypted (84 bytes of inner packet).
  EXPECT_FALSE(receive(recraft(o[2], [](std::uint8_t* pt, std::size_t) { put16(pt + 2, 85); }), st));
  EXPECT_EQ(st.dropped(DropReason::kBadIpHeader), 3u);
}

TEST_F(EspInbound, UnknownSpiIsNoSa) {
  make_pair(0, false);
  auto outs = encrypt_all(out_.get(), {make_inner(10), make_inner(11)});
  std::vector<rte_mbuf*> ms = {mbuf(outs[0]), mbuf(outs[1])};
  std::vector<InboundSa*> sas = {nullptr, in_.get()};
  LcoreStats st;
  EXPECT_EQ(esp_inbound(*engine_, ms, sas, st), 1);
  EXPECT_EQ(st.dropped(DropReason::kNoSa), 1u);
  EXPECT_EQ(ms[1], owned_[owned_.size() - 2]) << "the bad packet goes after the good one";
}

TEST_F(EspInbound, InnerAddressOutsideSelectorsIsSelectorMismatch) {
  make_pair(0, false);
  auto outs = encrypt_all(out_.get(), {make_inner(10, 0x0A090001, kPeerHost),    // src outside
                                       make_inner(10, kLocalHost, 0x0A030001),    // dst outside
                                       make_inner(10, kLocalHost, kPeerHost)});
  LcoreStats st;
  std::vector<rte_mbuf*> ms;
  EXPECT_EQ(decrypt_burst(in_.get(), outs, st, ms), 1);
  EXPECT_EQ(st.dropped(DropReason::kSelectorMismatch), 2u);
  EXPECT_EQ(sa_drops(*in_, DropReason::kSelectorMismatch), 2u);
}

TEST_F(EspInbound, EncapsulationMustMatchTheSa) {
  make_pair(0, true);  // peer sends ESP-in-UDP
  SaSpec plain = make_spec(Direction::kInbound, c_, false);
  auto plain_sa = create_sa<InboundSa>(plain);
  auto outs = encrypt_all(out_.get(), {make_inner(10)});
  LcoreStats st;
  EXPECT_FALSE(receive(outs[0], st, nullptr, plain_sa.get()));
  auto plain_out = create_sa<OutboundSa>(make_spec(Direction::kOutbound, c_, false));
  auto outs2 = encrypt_all(plain_out.get(), {make_inner(10)});
  EXPECT_FALSE(receive(outs2[0], st));
  EXPECT_EQ(st.dropped(DropReason::kEncapMismatch), 2u);
  EXPECT_EQ(sa_drops(*plain_sa, DropReason::kEncapMismatch), 1u);
}

TEST_F(EspInbound, CeMarkOnOuterReachesEcnCapableInner) {
  make_pair(0, false);
  auto outs = encrypt_all(out_.get(), {make_inner(10, kLocalHost, kPeerHost, 0x02),
                                       make_inner(10, kLocalHost, kPeerHost, 0x00)});
  for (auto& o : outs) {
    o[1] |= 0x03;  // a router on the way marks CE (outer header is not authenticated)
    o[10] = o[11] = 0;
    put16(o.data() + 10, inet_checksum(o.data(), 20));
  }
  LcoreStats st;
  std::vector<rte_mbuf*> ms;
  ASSERT_EQ(decrypt_burst(in_.get(), outs, st, ms), 2);
  Bytes a = to_bytes(ms[0]), b = to_bytes(ms[1]);
  EXPECT_EQ(a[1], 0x03);
  EXPECT_EQ(inet_checksum(a.data(), 20), 0);
  EXPECT_EQ(b[1], 0x00) << "not-ECT inner stays not-ECT";
}

TEST_F(EspInbound, HardPacketLimitStopsTheSa) {
  c_ = kCombos[0];
  out_ = create_sa<OutboundSa>(make_spec(Direction::kOutbound, c_, false));
  SaSpec in = make_spec(Direction::kInbound, c_, false);
  in.hard_packets = 2;
  in_ = create_sa<InboundSa>(in);
  auto outs = encrypt_all(out_.get(), {make_inner(1), make_inner(2), make_inner(3)});
  LcoreStats st;
  std::vector<rte_mbuf*> ms;
  EXPECT_EQ(decrypt_burst(in_.get(), outs, st, ms), 2);
  EXPECT_EQ(st.dropped(DropReason::kSaDown), 1u);
  EXPECT_EQ(in_->counters.packets.load(), 2u) << "the two packets within the limit are counted";
  EXPECT_EQ(in_->counters.drops[static_cast<unsigned>(DropReason::kSaDown)].load(), 1u);
  EXPECT_EQ(st.esp_in_packets, 2u);
  EXPECT_TRUE(in_->dead.load());
  EXPECT_TRUE(in_->events.load() & kEvHardLimit);
}

// Issue #12 (many tunnels): every byte the per-packet path reads or writes of an AES-128 /
// HMAC-SHA1 SA lies in the 7 lines the lookups prefetch (kSaHotLines), for both directions;
// before the SA was packed, outbound touched 12 lines and the prefetch list named 12.
std::set<std::size_t> lines_of(
    const void* base, std::initializer_list<std::pair<const void*, std::size_t>> ranges) {
  std::set<std::size_t> lines;
  const auto b = reinterpret_cast<std::uintptr_t>(base);
  for (auto [p, n] : ranges) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    for (std::uintptr_t x = a; x < a + n; ++x) lines.insert((x - b) / 64 * 64);
  }
  return lines;
}

TEST(SaLayout, PerPacketBytesLieInThePrefetchedLines) {
  const Combo aes128{crypto::CipherAlg::kAes128Cbc, crypto::IntegAlg::kHmacSha1_96};
  const std::set<std::size_t> hot(std::begin(kSaHotLines), std::end(kSaHotLines));
  ASSERT_EQ(hot.size(), 7u);
  auto out = create_sa<OutboundSa>(make_spec(Direction::kOutbound, aes128, false));
  auto in = create_sa<InboundSa>(make_spec(Direction::kInbound, aes128, false));
  ASSERT_TRUE(out && in);
  for (std::size_t off : kSaHotLines) EXPECT_EQ(off % 64, 0u);
  // What esp_outbound reads (SA fields, limits, counters, template line) and ipsec-mb reads
  // (engine parameters, the SHA-1 ipad/opad states, the 11 AES-128 encryption round keys).
  const OutboundSa& o = *out;
  const auto out_lines = lines_of(&o, {
      {&o.spi, sizeof o.spi}, {&o.flags, 1}, {&o.alg, sizeof o.alg}, {&o.dead, 1},
      {&o.owner, sizeof o.owner}, {&o.published, sizeof o.published},
      {&o.run_max_packets, 16}, {&o.counters.packets, 24},
      {&o.keys.alg, sizeof o.keys.alg}, {&o.keys.engine_path, 1},
      {o.keys.ipad, 20}, {o.keys.opad, 20}, {o.keys.enc_keys(), 11 * 16},
      {o.hdr_template, sizeof o.hdr_template}, {&o.outer_hdr_len, 2}, {&o.mtu, 2},
      {&o.max_inner, 2}, {&o.df, 1}, {&o.seq_next, sizeof o.seq_next},
      {&o.ip_cksum_base, sizeof o.ip_cksum_base}, {&o.df_set, 2}, {&o.df_copy_mask, 2}});
  for (std::size_t l : out_lines) EXPECT_TRUE(hot.count(l)) << "outbound line at " << l;
  EXPECT_EQ(out_lines.size(), 7u);
  // Inbound: the decryption round keys instead, the selectors, and the replay window's top,
  // size, ring mask and first bitmap word (all a 64-packet window uses).
  const InboundSa& i = *in;
  const auto in_lines = lines_of(&i, {
      {&i.spi, sizeof i.spi}, {&i.flags, 1}, {&i.alg, sizeof i.alg}, {&i.dead, 1},
      {&i.owner, sizeof i.owner}, {&i.published, sizeof i.published},
      {&i.local_subnet, sizeof i.local_subnet}, {&i.peer_subnet, sizeof i.peer_subnet},
      {&i.run_max_packets, 16}, {&i.counters.packets, 24},
      {&i.keys.alg, sizeof i.keys.alg}, {&i.keys.engine_path, 1},
      {i.keys.ipad, 20}, {i.keys.opad, 20}, {i.keys.dec_keys(), 11 * 16},
      {&i.replay, 16}});
  for (std::size_t l : in_lines) EXPECT_TRUE(hot.count(l)) << "inbound line at " << l;
  EXPECT_EQ(in_lines.size(), 7u);
  EXPECT_EQ(i.replay.size(), 64u);
}

}  // namespace
}  // namespace ipsecgw::dp
