// The gateway runtime end to end inside one process: two net_ring ports created from rte_rings
// (the test enqueues frames on a port's RX ring and reads what the gateway transmitted from its
// TX ring), one worker lcore (tests/dpdk_main_2lcore.cpp) and the control loop driven by the
// test. ESP output is checked by decrypting it with an independently created twin SA; frames
// built by the gateway (ARP, ICMP, UDP) are checked field by field against RFC layouts with
// checksums computed by the test's own RFC 1071 code.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "dataplane/gateway.hpp"
#include "dataplane/gateway_impl.hpp"
#include "dataplane/neighbor_table.hpp"
#include "dataplane/sa_table.hpp"
#include "gateway_fixture.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

constexpr Ipv4 kOnLinkPeer = 0xC0000202;   // 192.0.2.2
constexpr MacAddr kPeerMac = {0x02, 0xcc, 0, 0, 0, 0x02};  // 192.0.2.2
constexpr MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
MacAddr mac_at(const std::uint8_t* p) {
  MacAddr m;
  std::copy(p, p + 6, m.begin());
  return m;
}

Bytes arp(std::uint16_t op, const MacAddr& sha, Ipv4 sip, const MacAddr& tha, Ipv4 tip) {
  Bytes a(28);
  put16(a.data(), 1);        // Ethernet
  put16(a.data() + 2, 0x0800);
  a[4] = 6;
  a[5] = 4;
  put16(a.data() + 6, op);
  std::copy(sha.begin(), sha.end(), a.begin() + 8);
  put32(a.data() + 14, sip);
  std::copy(tha.begin(), tha.end(), a.begin() + 18);
  put32(a.data() + 24, tip);
  return a;
}

// IPv4 header + payload with a correct header checksum.
Bytes ipv4(Ipv4 src, Ipv4 dst, std::uint8_t proto, const Bytes& payload, bool df = false) {
  Bytes p(20);
  p[0] = 0x45;
  put16(p.data() + 2, static_cast<std::uint16_t>(20 + payload.size()));
  put16(p.data() + 4, 0x4242);
  p[6] = df ? 0x40 : 0;
  p[8] = 64;
  p[9] = proto;
  put32(p.data() + 12, src);
  put32(p.data() + 16, dst);
  put16(p.data() + 10, inet_checksum(p.data(), 20));
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}

Bytes udp(std::uint16_t sport, std::uint16_t dport, const Bytes& payload) {
  Bytes u(8);
  put16(u.data(), sport);
  put16(u.data() + 2, dport);
  put16(u.data() + 4, static_cast<std::uint16_t>(8 + payload.size()));
  u.insert(u.end(), payload.begin(), payload.end());
  return u;  // checksum 0 (none), allowed for IPv4 (RFC 768)
}

// RFC 768 checksum over the pseudo-header of the IPv4 packet `ip` (0 when correct).
std::uint16_t udp_checksum_residue(const Bytes& ip) {
  const std::size_t ihl = (ip[0] & 0x0f) * 4u;
  Bytes ph(ip.begin() + 12, ip.begin() + 20);
  ph.push_back(0);
  ph.push_back(17);
  const std::uint16_t l4 = static_cast<std::uint16_t>(ip.size() - ihl);
  ph.push_back(static_cast<std::uint8_t>(l4 >> 8));
  ph.push_back(static_cast<std::uint8_t>(l4));
  ph.insert(ph.end(), ip.begin() + static_cast<long>(ihl), ip.end());
  return inet_checksum(ph.data(), ph.size());
}

struct RecordingHandler : DatagramHandler {
  struct Got {
    DatagramView v;
    Bytes payload;
  };
  std::vector<Got> got;
  void on_datagram(const DatagramView& d) override {
    got.push_back({d, Bytes(d.payload.begin(), d.payload.end())});
  }
};

class GatewayTest : public GatewayFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(GatewayFixture::SetUp());
    ASSERT_GE(rte_lcore_count(), 2u);
  }

  // Creates the ports and the gateway; `u_txq` TX queues on the unprotected port (1 = no queue
  // for the control lcore: its frames go through the worker's hand-off ring).
  void boot(const std::function<void(GatewayConfig&)>& tweak = {}, unsigned u_txq = 2) {
    u_ = make_port(u_txq, 0x10);
    p_ = make_port(2, 0x20);
    GatewayConfig c = ring_test_config(u_.port, p_.port);
    if (tweak) tweak(c);
    start_gateway(c, &handler_);
  }

  // One RX queue, `ntx` TX queues.
  static RingPort make_port(unsigned ntx, std::uint8_t tag) {
    return make_ring_port({"gwt", 1, RING_F_SP_ENQ | RING_F_SC_DEQ, ntx, 1024}, tag);
  }

  using GatewayFixture::inject;
  void inject(RingPort& rp, const Bytes& frame) { inject(rp, 0, frame); }

  // Runs the control loop and collects what `rp` transmitted until `pred` holds for the frames
  // gathered so far (bounded: gives up after 5 s).
  std::vector<Bytes> collect(RingPort& rp, const std::function<bool(const std::vector<Bytes>&)>& pred,
                             int ms = 5000) {
    std::vector<Bytes> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      gw_->control_poll();
      for (Bytes& f : take_tx(rp)) out.push_back(std::move(f));
      if (pred(out)) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return out;
  }
  static std::vector<Bytes> of_type(const std::vector<Bytes>& v, std::uint16_t type,
                                    std::uint8_t proto = 0) {
    std::vector<Bytes> r;
    for (const Bytes& f : v)
      if (f.size() >= 14 && be16(f.data() + 12) == type &&
          (proto == 0 || (f.size() >= 34 && f[23] == proto)))
        r.push_back(f);
    return r;
  }
  std::vector<Bytes> wait_for(RingPort& rp, std::uint16_t type, std::size_t n,
                              std::uint8_t proto = 0) {
    return of_type(collect(rp, [&](const auto& v) { return of_type(v, type, proto).size() >= n; }),
                   type, proto);
  }
  // Waits until the workers received n frames AND finished with them: rx_packets is counted
  // when a burst arrives, each frame's fate (a drop, punt, forward, ESP, keepalive, hand-off)
  // while the burst is processed, so waiting on rx_packets alone races with the worker.
  static std::uint64_t fates(const LcoreStats& t) {
    std::uint64_t all = t.punted + t.forwarded + t.keepalives + t.handed_off + t.esp_in_packets +
                        t.esp_out_packets;
    for (auto d : t.drops) all += d;
    return all;
  }
  void wait_rx(std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      const LcoreStats t = gw_->total_stats();
      if (t.rx_packets >= n && fates(t) >= n) break;
      gw_->control_poll();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  RecordingHandler handler_;
};

void expect_arp_reply_from_us(const Bytes& f, const MacAddr& our_mac, Ipv4 our_ip,
                              const MacAddr& asker_mac, Ipv4 asker_ip) {
  ASSERT_GE(f.size(), 42u);
  const Bytes want = eth(asker_mac, our_mac, 0x0806, arp(2, our_mac, our_ip, asker_mac, asker_ip));
  EXPECT_EQ(Bytes(f.begin(), f.begin() + 42), want);
}

TEST_F(GatewayTest, AnswersArpRequestForItsAddressOnBothPorts) {
  boot();
  inject(u_, eth(kBroadcast, kPeerMac, 0x0806, arp(1, kPeerMac, kOnLinkPeer, {}, kUnprotAddr)));
  inject(p_, eth(kBroadcast, kHostMac, 0x0806, arp(1, kHostMac, kLocalHost, {}, kProtAddr)));
  // A request for someone else is not answered.
  inject(u_, eth(kBroadcast, kPeerMac, 0x0806, arp(1, kPeerMac, kOnLinkPeer, {}, 0xC0000209)));
  auto fu = wait_for(u_, 0x0806, 1);
  auto fp = wait_for(p_, 0x0806, 1);
  ASSERT_EQ(fu.size(), 1u);
  ASSERT_EQ(fp.size(), 1u);
  expect_arp_reply_from_us(fu[0], u_.mac, kUnprotAddr, kPeerMac, kOnLinkPeer);
  expect_arp_reply_from_us(fp[0], p_.mac, kProtAddr, kHostMac, kLocalHost);
}

TEST_F(GatewayTest, ControlFramesUseTheHandoffRingWhenThePortHasOneTxQueue) {
  boot({}, /*u_txq=*/1);
  inject(u_, eth(kBroadcast, kPeerMac, 0x0806, arp(1, kPeerMac, kOnLinkPeer, {}, kUnprotAddr)));
  auto fu = wait_for(u_, 0x0806, 1);
  ASSERT_EQ(fu.size(), 1u);
  expect_arp_reply_from_us(fu[0], u_.mac, kUnprotAddr, kPeerMac, kOnLinkPeer);
}

TEST_F(GatewayTest, ResolvesAnOnLinkPeerByArpAndSendsQueuedIkeDatagram) {
  boot();
  const Bytes ike = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  DatagramView d;
  d.local = {kUnprotAddr, 500};
  d.remote = {kOnLinkPeer, 500};
  d.payload = ike;
  ASSERT_TRUE(gw_->datagram_sender().send(d).ok());
  // First an ARP request for the peer (RFC 826), broadcast, from our address.
  auto reqs = collect(u_, [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) {
      return be16(f.data() + 12) == 0x0806 && be32(f.data() + 14 + 24) == kOnLinkPeer;
    });
  });
  const Bytes* req = nullptr;
  for (const Bytes& f : reqs)
    if (be16(f.data() + 12) == 0x0806 && be32(f.data() + 14 + 24) == kOnLinkPeer) req = &f;
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(Bytes(req->begin(), req->begin() + 42),
            eth(kBroadcast, u_.mac, 0x0806, arp(1, u_.mac, kUnprotAddr, {}, kOnLinkPeer)));
  // The reply makes the queued datagram leave, to the learned MAC.
  inject(u_, eth(u_.mac, kPeerMac, 0x0806, arp(2, kPeerMac, kOnLinkPeer, u_.mac, kUnprotAddr)));
  auto ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  const Bytes& f = ip[0];
  EXPECT_EQ(mac_at(f.data()), kPeerMac);
  EXPECT_EQ(mac_at(f.data() + 6), u_.mac);
  const Bytes pkt(f.begin() + 14, f.end());
  EXPECT_EQ(pkt, [&] {
    Bytes want = ipv4(kUnprotAddr, kOnLinkPeer, 17, udp(500, 500, ike));
    // Copy the fields the gateway chooses (identification) and fix the checksums to compare
    // the rest byte for byte.
    want[4] = pkt[4];
    want[5] = pkt[5];
    want[6] = 0;
    want[10] = want[11] = 0;
    put16(want.data() + 10, inet_checksum(want.data(), 20));
    want[26] = pkt[26];
    want[27] = pkt[27];
    return want;
  }());
  EXPECT_EQ(inet_checksum(pkt.data(), 20), 0);
  EXPECT_NE(be16(pkt.data() + 26), 0) << "the UDP checksum must be computed";
  EXPECT_EQ(udp_checksum_residue(pkt), 0);
}

TEST_F(GatewayTest, IkeOnPort4500GetsTheNonEspMarkerAndIsStrippedOnReceive) {
  boot([](GatewayConfig& c) { c.neighbors.push_back({kOnLinkPeer, kPeerMac}); });
  const Bytes ike = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8};
  DatagramView d;
  d.local = {kUnprotAddr, 4500};
  d.remote = {kOnLinkPeer, 4500};
  d.payload = ike;
  ASSERT_TRUE(gw_->datagram_sender().send(d).ok());
  auto ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  const Bytes pkt(ip[0].begin() + 14, ip[0].end());
  ASSERT_EQ(pkt.size(), 20u + 8 + 4 + ike.size());
  EXPECT_EQ(Bytes(pkt.begin() + 28, pkt.begin() + 32), Bytes(4, 0));  // RFC 3948 §2.2
  EXPECT_EQ(Bytes(pkt.begin() + 32, pkt.end()), ike);
  EXPECT_EQ(udp_checksum_residue(pkt), 0);

  // Receive: UDP 500 as is, 4500 with the marker stripped, keepalives counted, not delivered.
  Bytes with_marker(4, 0);
  with_marker.insert(with_marker.end(), ike.begin(), ike.end());
  inject(u_, eth(u_.mac, kPeerMac, 0x0800, ipv4(kOnLinkPeer, kUnprotAddr, 17, udp(500, 500, ike))));
  inject(u_, eth(u_.mac, kPeerMac, 0x0800,
                 ipv4(kOnLinkPeer, kUnprotAddr, 17, udp(4501, 4500, with_marker))));
  inject(u_, eth(u_.mac, kPeerMac, 0x0800, ipv4(kOnLinkPeer, kUnprotAddr, 17, udp(4501, 4500, {0xff}))));
  wait_rx(3);
  collect(u_, [&](const auto&) { return handler_.got.size() >= 2; });
  ASSERT_EQ(handler_.got.size(), 2u);
  EXPECT_EQ(handler_.got[0].payload, ike);
  EXPECT_EQ(handler_.got[0].v.remote, (UdpEndpoint{kOnLinkPeer, 500}));
  EXPECT_EQ(handler_.got[0].v.local, (UdpEndpoint{kUnprotAddr, 500}));
  EXPECT_EQ(handler_.got[1].payload, ike);
  EXPECT_EQ(handler_.got[1].v.remote, (UdpEndpoint{kOnLinkPeer, 4501}));
  EXPECT_EQ(gw_->total_stats().keepalives, 1u);
}

TEST_F(GatewayTest, NatKeepaliveIsSentAsOneByteWithoutTheNonEspMarker) {
  boot([](GatewayConfig& c) { c.neighbors.push_back({kOnLinkPeer, kPeerMac}); });
  const Bytes keepalive = {0xff};
  DatagramView d;
  d.local = {kUnprotAddr, 4500};
  d.remote = {kOnLinkPeer, 4500};
  d.payload = keepalive;
  ASSERT_TRUE(gw_->datagram_sender().send(d).ok());
  auto ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  const Bytes pkt(ip[0].begin() + 14, ip[0].end());
  // RFC 3948 §2.3: the UDP payload is the single octet 0xFF.
  ASSERT_EQ(pkt.size(), 20u + 8 + 1);
  EXPECT_EQ(be16(pkt.data() + 24), 9u);  // UDP length
  EXPECT_EQ(pkt[28], 0xff);
  EXPECT_EQ(udp_checksum_residue(pkt), 0);
}

TEST_F(GatewayTest, AnswersIcmpEchoToItsAddress) {
  boot();
  Bytes echo = {8, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, 'p', 'i', 'n', 'g', 1, 2, 3};
  put16(echo.data() + 2, inet_checksum(echo.data(), echo.size()));
  inject(p_, eth(p_.mac, kHostMac, 0x0800, ipv4(kLocalHost, kProtAddr, 1, echo)));
  auto r = wait_for(p_, 0x0800, 1, 1);
  ASSERT_EQ(r.size(), 1u);
  const Bytes& f = r[0];
  EXPECT_EQ(mac_at(f.data()), kHostMac);
  EXPECT_EQ(mac_at(f.data() + 6), p_.mac);
  const Bytes pkt(f.begin() + 14, f.end());
  ASSERT_EQ(pkt.size(), 20 + echo.size());
  EXPECT_EQ(be32(pkt.data() + 12), kProtAddr);
  EXPECT_EQ(be32(pkt.data() + 16), kLocalHost);
  EXPECT_EQ(inet_checksum(pkt.data(), 20), 0);
  Bytes reply = echo;
  reply[0] = 0;  // RFC 792 echo reply: same identifier, sequence number and data
  reply[2] = reply[3] = 0;
  put16(reply.data() + 2, inet_checksum(reply.data(), reply.size()));
  EXPECT_EQ(Bytes(pkt.begin() + 20, pkt.end()), reply);
}

TEST(Ipv4HeaderChecksum, AgreesWithRfc1071ReferenceForValidCorruptedAndRandomHeaders) {
  std::mt19937_64 rng(7);
  auto random_header = [&](std::size_t len) {
    Bytes h(len);
    for (auto& b : h) b = static_cast<std::uint8_t>(rng());
    return h;
  };
  for (std::size_t len : {20u, 24u, 60u}) {
    SCOPED_TRACE("header length " + std::to_string(len));
    for (int n = 0; n < 2000; ++n) {
      Bytes h = random_header(len);
      h[10] = h[11] = 0;
      put16(h.data() + 10, inet_checksum(h.data(), len));  // the test's own RFC 1071 code
      const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(h.data());
      ASSERT_TRUE(dp::ipv4_header_checksum_ok(ip, static_cast<std::uint32_t>(len)));
      ASSERT_EQ(rte_raw_cksum(h.data(), len), 0xFFFF);
      // Any single flipped bit breaks it.
      const std::size_t bit = rng() % (len * 8);
      h[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      ASSERT_FALSE(dp::ipv4_header_checksum_ok(ip, static_cast<std::uint32_t>(len))) << bit;
      // Random headers: the same verdict as the RFC 1071 reference and as DPDK's own
      // rte_raw_cksum (written by neither of us).
      Bytes r = random_header(len);
      const bool ref = inet_checksum(r.data(), len) == 0;
      ASSERT_EQ(rte_raw_cksum(r.data(), len) == 0xFFFF, ref);
      ASSERT_EQ(dp::ipv4_header_checksum_ok(reinterpret_cast<const rte_ipv4_hdr*>(r.data()),
                                            static_cast<std::uint32_t>(len)),
                ref);
    }
  }
  // The one's-complement corner: an all-0xFF header sums to 0xFFFF (-0), valid per RFC 1071.
  Bytes ff(20, 0xFF);
  EXPECT_EQ(dp::ipv4_header_checksum_ok(reinterpret_cast<const rte_ipv4_hdr*>(ff.data()), 20),
            inet_checksum(ff.data(), 20) == 0);
}

TEST_F(GatewayTest, NicIpChecksumVerdictIsUsedWhenGivenElseComputed) {
  boot();
  const Bytes good_ip = ipv4(kLocalHost, kPeerHost, 17, udp(1, 2, Bytes(10, 7)));
  Bytes bad_sum = good_ip;
  bad_sum[10] ^= 0x55;
  // The NIC said BAD: dropped although the checksum is right.
  ASSERT_TRUE(try_inject(p_, 0, eth(p_.mac, kHostMac, 0x0800, good_ip), RTE_MBUF_F_RX_IP_CKSUM_BAD));
  // The NIC said GOOD (or NONE: integrity verified): trusted, so it goes on to the policy lookup.
  ASSERT_TRUE(try_inject(p_, 0, eth(p_.mac, kHostMac, 0x0800, bad_sum), RTE_MBUF_F_RX_IP_CKSUM_GOOD));
  ASSERT_TRUE(try_inject(p_, 0, eth(p_.mac, kHostMac, 0x0800, bad_sum), RTE_MBUF_F_RX_IP_CKSUM_NONE));
  // No verdict (UNKNOWN, as on vdevs): computed, and the wrong one dropped.
  ASSERT_TRUE(try_inject(p_, 0, eth(p_.mac, kHostMac, 0x0800, bad_sum)));
  wait_rx(4);
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kBadIpHeader), 2u);  // NIC BAD, software-computed bad
  EXPECT_EQ(t.dropped(DropReason::kNoPolicy), 2u);     // GOOD / NONE: no tunnel for them
}

TEST_F(GatewayTest, MalformedFramesAreCountedAndFreed) {
  boot();
  const Bytes good_ip = ipv4(kLocalHost, kPeerHost, 17, udp(1, 2, Bytes(10, 7)));
  inject(p_, Bytes(10, 0));                                 // runt Ethernet
  inject(p_, eth(p_.mac, kHostMac, 0x0800, Bytes(12, 0x45)));  // IPv4 shorter than 20
  Bytes bad_ihl = good_ip;
  bad_ihl[0] = 0x43;
  inject(p_, eth(p_.mac, kHostMac, 0x0800, bad_ihl));
  Bytes bad_ver = good_ip;
  bad_ver[0] = 0x65;
  inject(p_, eth(p_.mac, kHostMac, 0x0800, bad_ver));
  Bytes truncated = good_ip;
  truncated.resize(25);  // total length says 38
  inject(p_, eth(p_.mac, kHostMac, 0x0800, truncated));
  Bytes bad_sum = good_ip;
  bad_sum[10] ^= 0x55;
  inject(p_, eth(p_.mac, kHostMac, 0x0800, bad_sum));
  inject(p_, eth(p_.mac, kHostMac, 0x86dd, Bytes(40, 0)));  // IPv6: not handled
  inject(u_, eth(u_.mac, kPeerMac, 0x0800, ipv4(kOnLinkPeer, kUnprotAddr, 17, udp(9, 1234, {}))));
  inject(p_, eth(p_.mac, kHostMac, 0x0800, good_ip));  // no tunnel, policy drop
  wait_rx(9);
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.rx_packets, 9u);
  EXPECT_EQ(t.dropped(DropReason::kRunt), 3u);  // runt frame, short IPv4, truncated
  EXPECT_EQ(t.dropped(DropReason::kBadIpHeader), 3u);  // IHL, version, checksum
  EXPECT_EQ(t.dropped(DropReason::kNotForUs), 2u);     // IPv6, UDP to a closed port
  EXPECT_EQ(t.dropped(DropReason::kNoPolicy), 1u);
  std::uint64_t all = 0;
  for (auto d : t.drops) all += d;
  EXPECT_EQ(all, 9u);
  EXPECT_NE(gw_->report().find("drop_bad_ip_header=3"), std::string::npos) << gw_->report();
}

TEST_F(GatewayTest, OutboundPacketLeavesAsEspThatThePeerDecrypts) {
  boot();
  install_tunnel();
  const Bytes inner = make_inner(100, kLocalHost, kPeerHost);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, inner));
  auto out = wait_for(u_, 0x0800, 1, 50);
  ASSERT_EQ(out.size(), 1u);
  const Bytes& f = out[0];
  EXPECT_EQ(mac_at(f.data()), kUnprotGwMac) << "peer is off-link: via unprotected.gateway";
  EXPECT_EQ(mac_at(f.data() + 6), u_.mac);
  const Bytes outer(f.begin() + 14, f.end());
  EXPECT_EQ(be32(outer.data() + 12), kLocalGw);
  EXPECT_EQ(be32(outer.data() + 16), kPeerGw);
  EXPECT_EQ(be32(outer.data() + 20), kSpiOut);
  InSaPtr rx = peer_rx_sa();
  EXPECT_EQ(decrypt(rx.get(), outer), forwarded(inner));
  EXPECT_EQ(gw_->total_stats().esp_out_packets, 1u);
}

TEST_F(GatewayTest, InboundEspIsDecryptedAndRoutedToTheProtectedHost) {
  boot();
  install_tunnel();
  OutSaPtr tx = peer_tx_sa();
  const Bytes inner = make_inner(200, kPeerHost, kLocalHost);
  const Bytes outer = encrypt(tx.get(), inner);
  ASSERT_FALSE(outer.empty());
  inject(u_, eth(u_.mac, kUnprotGwMac, 0x0800, outer));
  auto out = wait_for(p_, 0x0800, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(mac_at(out[0].data()), kHostMac);
  EXPECT_EQ(mac_at(out[0].data() + 6), p_.mac);
  EXPECT_EQ(Bytes(out[0].begin() + 14, out[0].end()), forwarded(inner));
  EXPECT_EQ(gw_->total_stats().esp_in_packets, 1u);
}

TEST_F(GatewayTest, OuterFragmentsAreReassembledBeforeDecryption) {
  boot();
  install_tunnel();
  OutSaPtr tx = peer_tx_sa();
  const Bytes inner = make_inner(1000, kPeerHost, kLocalHost);
  const Bytes outer = encrypt(tx.get(), inner);
  ASSERT_GT(outer.size(), 600u);
  // Two RFC 791 fragments: 576 payload bytes (a multiple of 8) with MF, then the rest.
  const auto [f1, f2] = fragment_in_two(outer, 576);
  inject(u_, eth(u_.mac, kUnprotGwMac, 0x0800, f2));  // out of order
  inject(u_, eth(u_.mac, kUnprotGwMac, 0x0800, f1));
  auto out = wait_for(p_, 0x0800, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Bytes(out[0].begin() + 14, out[0].end()), forwarded(inner));
}

TEST_F(GatewayTest, TooBigWithDfGetsIcmpFragNeededWithTheTunnelMtu) {
  boot();
  install_tunnel(1400);
  const Bytes inner = make_inner(1380, kLocalHost, kPeerHost, 0, /*df=*/true);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, inner));
  auto out = wait_for(p_, 0x0800, 1, 1);
  ASSERT_EQ(out.size(), 1u) << gw_->report();
  const Bytes& f = out[0];
  EXPECT_EQ(mac_at(f.data()), kHostMac);
  const Bytes pkt(f.begin() + 14, f.end());
  EXPECT_EQ(be32(pkt.data() + 12), kProtAddr);
  EXPECT_EQ(be32(pkt.data() + 16), kLocalHost);
  EXPECT_EQ(inet_checksum(pkt.data(), 20), 0);
  const std::uint8_t* icmp = pkt.data() + 20;
  EXPECT_EQ(icmp[0], 3);  // destination unreachable
  EXPECT_EQ(icmp[1], 4);  // fragmentation needed and DF set
  EXPECT_EQ(inet_checksum(icmp, pkt.size() - 20), 0);
  // RFC 1191 next-hop MTU: the largest inner packet whose ESP packet fits 1400 bytes:
  // 20 (IPv4) + 8 (SPI, seq) + 16 (IV) + roundup(L + 2, 16) + 12 (ICV) <= 1400 -> L = 1342.
  EXPECT_EQ(be16(icmp + 4), 0);
  EXPECT_EQ(be16(icmp + 6), 1342);
  // The quote starts with the original header (RFC 792).
  EXPECT_EQ(Bytes(icmp + 8, icmp + 28), Bytes(inner.begin(), inner.begin() + 20));
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kMtuExceeded), 1u);
  EXPECT_TRUE(of_type(collect(u_, [](const auto&) { return true; }), 0x0800, 50).empty());
}

TEST_F(GatewayTest, TooBigWithoutDfIsFragmentedBeforeEncryption) {
  boot();
  install_tunnel(1400);
  const Bytes inner = make_inner(1780, kLocalHost, kPeerHost);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, inner));
  auto out = wait_for(u_, 0x0800, 2, 50);
  ASSERT_EQ(out.size(), 2u);
  InSaPtr rx = peer_rx_sa();
  std::map<unsigned, Bytes> frags;  // offset -> fragment
  for (const Bytes& f : out) {
    const Bytes outer(f.begin() + 14, f.end());
    EXPECT_LE(outer.size(), 1400u);
    Bytes fr = decrypt(rx.get(), outer);
    ASSERT_FALSE(fr.empty());
    EXPECT_EQ(inet_checksum(fr.data(), 20), 0);
    frags[(be16(fr.data() + 6) & 0x1fff) * 8u] = fr;
  }
  // Reassemble (RFC 791) and compare with the original, as forwarded (TTL - 1).
  ASSERT_TRUE(frags.count(0));
  Bytes whole(frags[0].begin(), frags[0].begin() + 20);
  unsigned next = 0;
  for (auto& [off, fr] : frags) {
    EXPECT_EQ(off, next);
    EXPECT_EQ(be16(fr.data() + 4), be16(inner.data() + 4)) << "same identification";
    whole.insert(whole.end(), fr.begin() + 20, fr.end());
    next += static_cast<unsigned>(fr.size() - 20);
  }
  EXPECT_NE(be16(frags.begin()->second.data() + 6) & 0x2000, 0) << "MF on the first";
  EXPECT_EQ(be16(frags.rbegin()->second.data() + 6) & 0x2000, 0) << "no MF on the last";
  put16(whole.data() + 2, static_cast<std::uint16_t>(whole.size()));
  whole[6] = whole[7] = 0;
  whole[10] = whole[11] = 0;
  put16(whole.data() + 10, inet_checksum(whole.data(), 20));
  EXPECT_EQ(whole, forwarded(inner));
}

TEST_F(GatewayTest, UnmatchedTrafficIsForwardedInTheClearWhenPolicySaysSo) {
  boot([](GatewayConfig& c) { c.unmatched = UnmatchedPolicy::kForward; });
  const Bytes inner = make_inner(50, kLocalHost, 0x08080808);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, inner));
  auto out = wait_for(u_, 0x0800, 1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(mac_at(out[0].data()), kUnprotGwMac);
  EXPECT_EQ(Bytes(out[0].begin() + 14, out[0].end()), forwarded(inner));
}

// DPD hold / expiry / peer Delete: the connection's trap keeps its selectors in the SPD, so
// its traffic is held back (counted as trapped, IKE asked for an SA) and never leaks in the
// clear, even where unmatched traffic is forwarded. A new outbound SA fills the trap again.
TEST_F(GatewayTest, TrappedTrafficIsHeldAndAcquiresButIsNeverForwardedInTheClear) {
  boot([](GatewayConfig& c) { c.unmatched = UnmatchedPolicy::kForward; });
  install_tunnel();
  SaInstaller& inst = gw_->installer();
  ASSERT_TRUE(inst.install_trap(7, {0x0A010000, 16}, {0x0A020000, 16}));
  ASSERT_TRUE(inst.del_sa(Direction::kOutbound, kSpiOut));  // the tunnel goes down
  for (int i = 0; i < 3; ++i)
    inject(p_, eth(p_.mac, kHostMac, 0x0800, make_inner(60, kLocalHost, kPeerHost)));
  // Unmatched traffic after them, still forwarded: once it is out, the trapped ones were seen.
  const Bytes other = make_inner(50, kLocalHost, 0x08080808);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, other));
  wait_rx(4);
  auto out = wait_for(u_, 0x0800, 1);
  ASSERT_EQ(out.size(), 1u) << "only the unmatched packet may leave";
  EXPECT_EQ(Bytes(out[0].begin() + 14, out[0].end()), forwarded(other));
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kTrapped), 3u);
  EXPECT_EQ(t.dropped(DropReason::kNoPolicy), 0u);
  EXPECT_EQ(t.forwarded, 1u);
  EXPECT_EQ(t.esp_out_packets, 0u);
  EXPECT_NE(gw_->report().find("drop_trapped=3"), std::string::npos) << gw_->report();
  // One acquire for the connection (worker flags collapse until the control plane polls).
  std::vector<SaEvent> acq;
  for (const auto& e : inst.poll_events())
    if (e.kind == SaEventKind::kAcquire) acq.push_back(e);
  ASSERT_EQ(acq.size(), 1u);
  EXPECT_EQ(acq[0].conn_id, 7u);
  EXPECT_EQ(acq[0].spi, 0u);
  EXPECT_EQ(acq[0].dir, Direction::kOutbound);

  // IKE negotiated a new SA: the same policy carries traffic again.
  SaSpec o = make_spec(Direction::kOutbound, kCombos[0], false, kSpiOut);
  ASSERT_TRUE(inst.add_sa(std::move(o)).ok());
  const Bytes inner = make_inner(100, kLocalHost, kPeerHost);
  inject(p_, eth(p_.mac, kHostMac, 0x0800, inner));
  auto esp = wait_for(u_, 0x0800, 1, 50);
  ASSERT_EQ(esp.size(), 1u);
  InSaPtr rx = peer_rx_sa();
  EXPECT_EQ(decrypt(rx.get(), Bytes(esp[0].begin() + 14, esp[0].end())), forwarded(inner));
}

TEST_F(GatewayTest, UnresolvedNextHopIsDroppedAndResolved) {
  boot([](GatewayConfig& c) { c.neighbors.clear(); });
  install_tunnel();
  inject(p_, eth(p_.mac, kHostMac, 0x0800, make_inner(60, kLocalHost, kPeerHost)));
  wait_rx(1);
  auto reqs = wait_for(u_, 0x0806, 1);  // sent at start() already: the default next hop
  ASSERT_GE(reqs.size(), 1u);
  EXPECT_EQ(be32(reqs[0].data() + 14 + 24), kUnprotGw);
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kNoRoute), 1u);
  // Learn the gateway; the next packet leaves as ESP.
  inject(u_, eth(u_.mac, kUnprotGwMac, 0x0806, arp(2, kUnprotGwMac, kUnprotGw, u_.mac, kUnprotAddr)));
  collect(u_, [](const auto&) { return true; });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<Bytes> esp;
  while (esp.empty() && std::chrono::steady_clock::now() < deadline) {
    inject(p_, eth(p_.mac, kHostMac, 0x0800, make_inner(60, kLocalHost, kPeerHost)));
    esp = of_type(collect(u_, [](const auto& v) { return !v.empty(); }, 100), 0x0800, 50);
  }
  ASSERT_FALSE(esp.empty()) << gw_->report();
  EXPECT_EQ(mac_at(esp[0].data()), kUnprotGwMac);
}

// dpdk-telemetry.py's protocol: a SOCK_SEQPACKET unix socket in the runtime directory; the
// server greets with a JSON line, then answers each command with {"<cmd>": <data>}.
nlohmann::json telemetry_query(const std::string& cmd) {
  const std::string path = std::string(rte_eal_get_runtime_dir()) + "/dpdk_telemetry.v2";
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (fd < 0) return {};
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  nlohmann::json j;
  std::vector<char> buf(1 << 16);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
      recv(fd, buf.data(), buf.size(), 0) > 0 && send(fd, cmd.data(), cmd.size(), 0) > 0) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) j = nlohmann::json::parse(std::string(buf.data(), static_cast<std::size_t>(n)), nullptr, false);
  }
  close(fd);
  return j;
}

TEST_F(GatewayTest, TelemetryReportsStatsPortsAndSas) {
  boot();
  install_tunnel();
  inject(p_, eth(p_.mac, kHostMac, 0x0800, Bytes(12, 0x45)));  // one runt
  wait_rx(1);
  gw_->control_poll();
  const auto st = telemetry_query("/ipsecgw/stats");
  ASSERT_TRUE(st.contains("/ipsecgw/stats")) << st.dump();
  const auto& s = st["/ipsecgw/stats"];
  EXPECT_EQ(s["total_drop_runt"], 1);
  EXPECT_EQ(s["lcores"].size(), 2u);
  EXPECT_EQ(s["drop_runt"][0], 1);  // the worker
  const auto po = telemetry_query("/ipsecgw/ports");
  ASSERT_TRUE(po.contains("/ipsecgw/ports")) << po.dump();
  EXPECT_EQ(po["/ipsecgw/ports"]["protected_port_id"], p_.port);
  EXPECT_EQ(po["/ipsecgw/ports"]["protected_ipackets"], 1);
  // SA rows are refreshed once a second by the control loop.
  nlohmann::json sa;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    gw_->control_poll();
    sa = telemetry_query("/ipsecgw/sa");
  } while (sa["/ipsecgw/sa"]["count"] != 2 && std::chrono::steady_clock::now() < deadline);
  ASSERT_EQ(sa["/ipsecgw/sa"]["count"], 2) << sa.dump();
  auto spis = sa["/ipsecgw/sa"]["spi"].get<std::vector<std::uint64_t>>();
  std::sort(spis.begin(), spis.end());
  EXPECT_EQ(spis, (std::vector<std::uint64_t>{kSpiOut, kSpiIn}));
}

}  // namespace
}  // namespace ipsecgw::dp

namespace ipsecgw::dp {
namespace {

TEST(NeighborTable, LookupSeesInsertsAndUpdatesPerSide) {
  NeighborTable t;
  MacAddr m;
  EXPECT_FALSE(t.lookup(Side::kUnprotected, 0xC0000202, &m));
  ASSERT_TRUE(t.set(Side::kUnprotected, 0xC0000202, kPeerMac));
  ASSERT_TRUE(t.lookup(Side::kUnprotected, 0xC0000202, &m));
  EXPECT_EQ(m, kPeerMac);
  EXPECT_FALSE(t.lookup(Side::kProtected, 0xC0000202, &m)) << "sides are separate";
  ASSERT_TRUE(t.set(Side::kUnprotected, 0xC0000202, kHostMac));
  ASSERT_TRUE(t.lookup(Side::kUnprotected, 0xC0000202, &m));
  EXPECT_EQ(m, kHostMac);
  t.invalidate(Side::kUnprotected, 0xC0000202);
  EXPECT_FALSE(t.lookup(Side::kUnprotected, 0xC0000202, &m));
  // Many colliding entries still resolve, and a full table refuses new ones.
  for (Ipv4 ip = 1; ip < NeighborTable::kSize - 1; ++ip) ASSERT_TRUE(t.set(Side::kProtected, ip, kHostMac));
  EXPECT_FALSE(t.set(Side::kProtected, 0x7f000001, kHostMac));
  for (Ipv4 ip = 1; ip < NeighborTable::kSize - 1; ++ip) ASSERT_TRUE(t.lookup(Side::kProtected, ip, &m));
}

// net_null ports receive an endless stream of all-zero 64-byte frames (Ethernet type 0): the
// gateway must count and free every one of them, and stop cleanly.
TEST(GatewayNullPorts, GarbageStreamIsCountedAndStopIsClean) {
  ASSERT_EQ(rte_eal_hotplug_add("vdev", "net_null_gw0", ""), 0);
  ASSERT_EQ(rte_eal_hotplug_add("vdev", "net_null_gw1", ""), 0);
  std::uint16_t u = 0, p = 0;
  ASSERT_EQ(rte_eth_dev_get_port_by_name("net_null_gw0", &u), 0);
  ASSERT_EQ(rte_eth_dev_get_port_by_name("net_null_gw1", &p), 0);
  GatewayConfig c;
  c.unprotected = {u, {0xC0000200, 24}, kUnprotAddr, 0, 1500};
  c.protected_port = {p, {0x0A010000, 16}, kProtAddr, 0, 1500};
  c.rx_desc = c.tx_desc = 256;
  c.telemetry = false;
  auto g = Gateway::create(c);
  ASSERT_TRUE(g.ok()) << g.error();
  auto gw = std::move(g.value());
  ASSERT_TRUE(gw->start().ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (gw->total_stats().rx_packets < 10000 && std::chrono::steady_clock::now() < deadline)
    gw->control_poll();
  gw->stop();
  const LcoreStats t = gw->total_stats();
  EXPECT_GE(t.rx_packets, 10000u);
  EXPECT_EQ(t.dropped(DropReason::kNotForUs), t.rx_packets);
  EXPECT_EQ(gw->port_counters(false).ipackets + gw->port_counters(true).ipackets, t.rx_packets);
  gw.reset();
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_null_gw0"), 0);
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_null_gw1"), 0);
}

}  // namespace
}  // namespace ipsecgw::dp
