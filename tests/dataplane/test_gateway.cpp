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
#include <set>
#include <thread>

#include "dataplane/gateway.hpp"
#include "dataplane/gateway_impl.hpp"
#include "dataplane/neighbor_table.hpp"
#include "dataplane/sa_table.hpp"
#include "gateway_test.hpp"

namespace ipsecgw::dp {
namespace {

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

// Sends a small IKE datagram to kOnLinkPeer through the DatagramSender.
void send_to_on_link_peer(Gateway& gw) {
  static const Bytes ike = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  DatagramView d;
  d.local = {kUnprotAddr, 500};
  d.remote = {kOnLinkPeer, 500};
  d.payload = ike;
  ASSERT_TRUE(gw.datagram_sender().send(d).ok());
}
bool is_arp_request_for(const Bytes& f, Ipv4 ip) {
  return f.size() >= 42 && be16(f.data() + 12) == 0x0806 && be16(f.data() + 20) == 1 &&
         be32(f.data() + 14 + 24) == ip;
}

// Issue #11.5: an ARP reply nobody asked for creates no entry and overwrites none (RFC 826
// merge still takes a gratuitous ARP for an entry we have).
TEST_F(GatewayTest, UnsolicitedArpRepliesNeitherCreateNorOverwriteEntries) {
  boot();
  const MacAddr evil = {0x02, 0xee, 0, 0, 0, 0x66}, moved = {0x02, 0xcc, 0, 0, 0, 0x99};
  auto reply = [&](const MacAddr& sha, Ipv4 sip, Ipv4 tip) {
    inject(u_, eth(u_.mac, sha, 0x0806, arp(2, sha, sip, u_.mac, tip)));
  };
  auto settle = [&](std::uint64_t rx) {  // the workers punted rx frames; handle them
    wait_rx(rx);
    for (int i = 0; i < 20; ++i) gw_->control_poll();
  };
  reply(evil, kOnLinkPeer, kUnprotAddr);
  settle(1);
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kArpUnsolicited), 1u);
  send_to_on_link_peer(*gw_);
  auto first = collect(u_, [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); });
  });
  EXPECT_TRUE(of_type(first, 0x0800).empty()) << "sent to the MAC of an unsolicited reply";
  reply(kPeerMac, kOnLinkPeer, kUnprotAddr);  // the answer to our request
  auto ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  EXPECT_EQ(mac_at(ip[0].data()), kPeerMac);

  reply(evil, kOnLinkPeer, kUnprotAddr);  // unsolicited, for an entry we have
  settle(3);
  send_to_on_link_peer(*gw_);
  ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  EXPECT_EQ(mac_at(ip[0].data()), kPeerMac) << "entry overwritten by an unsolicited reply";
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kArpUnsolicited), 2u);

  // Gratuitous ARP (sender = target) from a known neighbour: merged (RFC 826, RFC 5227 §3).
  inject(u_, eth(kBroadcast, moved, 0x0806, arp(1, moved, kOnLinkPeer, {}, kOnLinkPeer)));
  settle(4);
  send_to_on_link_peer(*gw_);
  ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u);
  EXPECT_EQ(mac_at(ip[0].data()), moved);
}

// Issue #11.5: a learned entry not confirmed for arp_timeout_s is asked for again and, when
// nobody answers, removed: traffic to it stops instead of going to a stale MAC forever.
TEST_F(GatewayTest, LearnedArpEntriesAgeOut) {
  boot([](GatewayConfig& c) { c.arp_timeout_s = 1; });
  send_to_on_link_peer(*gw_);
  collect(u_, [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); });
  });
  inject(u_, eth(u_.mac, kPeerMac, 0x0806, arp(2, kPeerMac, kOnLinkPeer, u_.mac, kUnprotAddr)));
  ASSERT_EQ(wait_for(u_, 0x0800, 1, 17).size(), 1u);
  // Re-asked after the timeout (the entry still in use meanwhile), then given up on.
  auto again = collect(u_, [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); });
  }, 4000);
  ASSERT_TRUE(std::any_of(again.begin(), again.end(),
                          [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); }))
      << "no re-confirmation after arp_timeout_s";
  // The unanswered re-asking runs its course (wall-clock tries): wait until no request has
  // come for 2.5 s (times kTimeScale), bounded, so a slow, loaded machine cannot end the wait
  // early.
  const auto asks = [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); });
  };
  const auto give_up = std::chrono::steady_clock::now() + testing_time::scaled(30000);
  auto last_ask = std::chrono::steady_clock::now();
  do {
    if (asks(collect(u_, asks, 100))) last_ask = std::chrono::steady_clock::now();
  } while (std::chrono::steady_clock::now() - last_ask < testing_time::scaled(2500) &&
           std::chrono::steady_clock::now() < give_up);
  send_to_on_link_peer(*gw_);
  auto after = collect(u_, [](const auto& v) { return !of_type(v, 0x0800).empty(); }, 1500);
  EXPECT_TRUE(of_type(after, 0x0800).empty()) << "still sent to the aged-out MAC";
}

// Issue #11.5: ARP requests addressed to us from thousands of (spoofed) addresses must not
// fill the table: the next hops and peers the gateway asks for still get their entries.
TEST_F(GatewayTest, ArpRequestFloodNeverBlocksEntriesWeAskFor) {
  boot();
  constexpr unsigned kFlood = 4200, kBatch = 400;
  const MacAddr flood_mac = {0x02, 0xdd, 0, 0, 0, 0x01};
  std::uint64_t sent = 0;
  for (unsigned i = 0; i < kFlood; i += kBatch) {
    for (unsigned k = i; k < i + kBatch && k < kFlood; ++k) {
      const Ipv4 sip = 0x0A010100 + k;  // 10.1.1.0 + k, inside 10.1/16
      inject(p_, eth(kBroadcast, flood_mac, 0x0806, arp(1, flood_mac, sip, {}, kProtAddr)));
      ++sent;
    }
    wait_rx(sent);
    for (int j = 0; j < 20; ++j) {
      gw_->control_poll();
      take_tx(p_);
    }
  }
  EXPECT_GT(gw_->total_stats().dropped(DropReason::kArpTableFull), 0u);
  send_to_on_link_peer(*gw_);
  collect(u_, [](const auto& v) {
    return std::any_of(v.begin(), v.end(), [](const Bytes& f) { return is_arp_request_for(f, kOnLinkPeer); });
  });
  inject(u_, eth(u_.mac, kPeerMac, 0x0806, arp(2, kPeerMac, kOnLinkPeer, u_.mac, kUnprotAddr)));
  auto ip = wait_for(u_, 0x0800, 1, 17);
  ASSERT_EQ(ip.size(), 1u) << "the peer's entry was refused";
  EXPECT_EQ(mac_at(ip[0].data()), kPeerMac);
}

// Issue #11.10: a UDP checksum failure on an IKE datagram was counted as bad_ip_header.
TEST_F(GatewayTest, IkeDatagramWithBadUdpChecksumIsCountedAsSuch) {
  boot();
  Bytes ip = ipv4(kOnLinkPeer, kUnprotAddr, 17, udp(500, 500, Bytes(28, 0x11)));
  put16(ip.data() + 26, 0x1234);  // non-zero and wrong
  inject(u_, eth(u_.mac, kPeerMac, 0x0800, ip));
  wait_rx(1);
  for (int i = 0; i < 20; ++i) gw_->control_poll();
  EXPECT_TRUE(handler_.got.empty());
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kBadUdpChecksum), 1u);
  EXPECT_EQ(gw_->total_stats().dropped(DropReason::kBadIpHeader), 0u);
}

// Issue #11.10: one table gives every drop reason a distinct snake_case name and a description.
TEST(DropReasons, OneTableNamesEveryReasonOnce) {
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < kDropReasonCount; ++i) {
    const auto r = static_cast<DropReason>(i);
    const std::string_view n = to_string(r);
    EXPECT_FALSE(n.empty());
    EXPECT_EQ(n.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_"), std::string_view::npos)
        << n;
    EXPECT_TRUE(seen.insert(n).second) << "duplicate name " << n;
    EXPECT_FALSE(describe(r).empty()) << n;
  }
  EXPECT_EQ(to_string(DropReason::kCount), "unknown");
  EXPECT_EQ(to_string(DropReason::kBadUdpChecksum), "bad_udp_checksum");
}

TEST_F(GatewayTest, IkeOnPort4500GetsTheNonEspMarkerAndIsStrippedOnReceive) {
  boot([](GatewayConfig& c) { c.neighbors.push_back({kOnLinkPeer, kPeerMac}); });
  const Bytes ike = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8};
  const Bytes pkt = send_from_port_4500(ike);
  ASSERT_FALSE(pkt.empty());
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
  const Bytes pkt = send_from_port_4500({0xff});
  ASSERT_FALSE(pkt.empty());
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
  EXPECT_EQ(t.dropped(DropReason::kNotIpv4), 1u);          // IPv6
  EXPECT_EQ(t.dropped(DropReason::kUdpClosedPort), 1u);    // UDP to a closed port
  EXPECT_EQ(t.dropped(DropReason::kNoPolicy), 1u);
  std::uint64_t all = 0;
  for (auto d : t.drops) all += d;
  EXPECT_EQ(all, 9u);
  EXPECT_NE(gw_->report().find("drop_bad_ip_header=3"), std::string::npos) << gw_->report();
}

// ESP to our public address is parsed at RX (plain ESP inline in the worker's RX step): an ESP
// header that does not fit in the packet is a runt; a whole one goes on to the SA lookup (no
// SA has this SPI). A fast path that let a 7-byte header through would count two kNoSa.
TEST_F(GatewayTest, EspHeaderCutShortIsARuntAWholeOneGoesOn) {
  boot();
  const Bytes spi_seq = {0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1};
  inject(u_, eth(u_.mac, kPeerMac, 0x0800,
                 ipv4(kOnLinkPeer, kUnprotAddr, 50, Bytes(spi_seq.begin(), spi_seq.begin() + 7))));
  inject(u_, eth(u_.mac, kPeerMac, 0x0800, ipv4(kOnLinkPeer, kUnprotAddr, 50, spi_seq)));
  wait_rx(2);
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kRunt), 1u);  // 7 bytes of ESP header
  EXPECT_EQ(t.dropped(DropReason::kNoSa), 1u);  // 8 bytes: parsed, SPI 0xdeadbeef unknown
}

TEST_F(GatewayTest, UnresolvedNextHopIsDroppedAndResolved) {
  boot([](GatewayConfig& c) { c.neighbors.clear(); });
  install_tunnel();
  inject(p_, eth(p_.mac, kHostMac, 0x0800, make_inner(60, kLocalHost, kPeerHost)));
  wait_rx(1);
  auto reqs = wait_for(u_, 0x0806, 1);  // sent at start() already: the default next hop
  ASSERT_GE(reqs.size(), 1u);
  EXPECT_EQ(be32(reqs[0].data() + 14 + 24), kUnprotGw);
  // wait_rx sees the packet's first fate (encrypted: esp_out_packets); its drop for want of a
  // next hop comes after it in the same burst.
  EXPECT_EQ(wait_dropped(DropReason::kNoRoute, 1), 1u);
  // Learn the gateway; the next packet leaves as ESP.
  inject(u_, eth(u_.mac, kUnprotGwMac, 0x0806, arp(2, kUnprotGwMac, kUnprotGw, u_.mac, kUnprotAddr)));
  collect(u_, [](const auto&) { return true; });
  const auto deadline = std::chrono::steady_clock::now() + testing_time::scaled(5000);
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
  const auto deadline = std::chrono::steady_clock::now() + testing_time::scaled(5000);
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
  const auto deadline = std::chrono::steady_clock::now() + testing_time::scaled(5000);
  while (gw->total_stats().rx_packets < 10000 && std::chrono::steady_clock::now() < deadline)
    gw->control_poll();
  gw->stop();
  const LcoreStats t = gw->total_stats();
  EXPECT_GE(t.rx_packets, 10000u);
  // net_null's frames are zeros: destination MAC 00:00:00:00:00:00, not ours.
  EXPECT_EQ(t.dropped(DropReason::kWrongDstMac), t.rx_packets);
  EXPECT_EQ(gw->port_counters(false).ipackets + gw->port_counters(true).ipackets, t.rx_packets);
  gw.reset();
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_null_gw0"), 0);
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_null_gw1"), 0);
}

}  // namespace
}  // namespace ipsecgw::dp
