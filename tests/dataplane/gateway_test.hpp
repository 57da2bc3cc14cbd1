// The single-worker GatewayTest fixture of test_gateway*.cpp (net_ring ports, the control loop
// driven by the test) and the frame builders its tests share: ARP, IPv4, UDP, checksums.
#pragma once

#include <gtest/gtest.h>
#include <rte_lcore.h>
#include <rte_ring.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "dataplane/gateway.hpp"
#include "gateway_fixture.hpp"

namespace ipsecgw::dp::testing_time {
// Every wait in the gateway tests is for a condition, with a deadline that only bounds it. Under
// the sanitizers (several times slower, scripts/test's build-asan) the deadlines stretch by
// kTimeScale; a passing wait still ends as soon as its condition holds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int kTimeScale = 4;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr int kTimeScale = 4;
#else
inline constexpr int kTimeScale = 1;
#endif
#else
inline constexpr int kTimeScale = 1;
#endif
inline std::chrono::milliseconds scaled(int ms) {
  return std::chrono::milliseconds(ms * kTimeScale);
}
}  // namespace ipsecgw::dp::testing_time

namespace ipsecgw::dp {

using namespace testutil;

constexpr Ipv4 kOnLinkPeer = 0xC0000202;   // 192.0.2.2
constexpr MacAddr kPeerMac = {0x02, 0xcc, 0, 0, 0, 0x02};  // 192.0.2.2
constexpr MacAddr kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

inline void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}
inline MacAddr mac_at(const std::uint8_t* p) {
  MacAddr m;
  std::copy(p, p + 6, m.begin());
  return m;
}

inline Bytes arp(std::uint16_t op, const MacAddr& sha, Ipv4 sip, const MacAddr& tha, Ipv4 tip) {
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
inline Bytes ipv4(Ipv4 src, Ipv4 dst, std::uint8_t proto, const Bytes& payload, bool df = false) {
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

inline Bytes udp(std::uint16_t sport, std::uint16_t dport, const Bytes& payload) {
  Bytes u(8);
  put16(u.data(), sport);
  put16(u.data() + 2, dport);
  put16(u.data() + 4, static_cast<std::uint16_t>(8 + payload.size()));
  u.insert(u.end(), payload.begin(), payload.end());
  return u;  // checksum 0 (none), allowed for IPv4 (RFC 768)
}

// RFC 768 checksum over the pseudo-header of the IPv4 packet `ip` (0 when correct).
inline std::uint16_t udp_checksum_residue(const Bytes& ip) {
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
  // Enqueues all `frames` at once (one rte_ring bulk enqueue), so that the worker receives
  // them in one RX burst when there are at most 32.
  void inject_burst(RingPort& rp, const std::vector<Bytes>& frames) {
    std::vector<rte_mbuf*> ms;
    for (const Bytes& f : frames) {
      rte_mbuf* m = rte_pktmbuf_alloc(pool_);
      ASSERT_NE(m, nullptr);
      std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      ms.push_back(m);
    }
    ASSERT_EQ(rte_ring_enqueue_bulk(rp.rx[0], reinterpret_cast<void**>(ms.data()),
                                    static_cast<unsigned>(ms.size()), nullptr),
              ms.size());
  }

  // Runs the control loop and collects what `rp` transmitted until `pred` holds for the frames
  // gathered so far (bounded: gives up after `ms`, 5 s by default, times kTimeScale).
  std::vector<Bytes> collect(RingPort& rp, const std::function<bool(const std::vector<Bytes>&)>& pred,
                             int ms = 5000) {
    std::vector<Bytes> out;
    poll_until([&] {
      for (Bytes& f : take_tx(rp)) out.push_back(std::move(f));
      return pred(out);
    }, ms);
    return out;
  }
  // Runs the control loop until `done` holds (bounded: `ms`, 5 s by default, times kTimeScale);
  // returns whether it did.
  bool poll_until(const std::function<bool()>& done, int ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + testing_time::scaled(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      gw_->control_poll();
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return false;
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
    poll_until([&] {
      const LcoreStats t = gw_->total_stats();
      return t.rx_packets >= n && fates(t) >= n;
    });
  }

  // Waits (bounded) until `n` packets were dropped for `r`; returns the count then. A fate that
  // comes after another in the same burst (an outbound packet is counted as ESP, then dropped
  // by l2_out for want of a next hop) is not covered by wait_rx.
  std::uint64_t wait_dropped(DropReason r, std::uint64_t n) {
    poll_until([&] { return gw_->total_stats().dropped(r) >= n; });
    return gw_->total_stats().dropped(r);
  }

  // An inner packet of `payload` bytes from the peer's host to ours, and the peer's ESP packet
  // of it (outer IPv4 header first), made with the twin of the installed inbound SA.
  struct PeerPacket {
    Bytes inner, outer;
  };
  PeerPacket peer_packet(std::size_t payload) {
    OutSaPtr tx = peer_tx_sa();
    PeerPacket pp;
    pp.inner = make_inner(payload, kPeerHost, kLocalHost);
    pp.outer = encrypt(tx.get(), pp.inner);
    return pp;
  }

  // Sends `payload` through the gateway's DatagramSender from our port 4500 to kOnLinkPeer's
  // and returns the IPv4 packet the unprotected port transmitted (empty when not exactly one
  // came out).
  Bytes send_from_port_4500(const Bytes& payload) {
    DatagramView d;
    d.local = {kUnprotAddr, 4500};
    d.remote = {kOnLinkPeer, 4500};
    d.payload = payload;
    EXPECT_TRUE(gw_->datagram_sender().send(d).ok());
    auto ip = wait_for(u_, 0x0800, 1, 17);
    EXPECT_EQ(ip.size(), 1u);
    if (ip.size() != 1) return {};
    return Bytes(ip[0].begin() + 14, ip[0].end());
  }

  RecordingHandler handler_;
};

inline void expect_arp_reply_from_us(const Bytes& f, const MacAddr& our_mac, Ipv4 our_ip,
                              const MacAddr& asker_mac, Ipv4 asker_ip) {
  ASSERT_GE(f.size(), 42u);
  const Bytes want = eth(asker_mac, our_mac, 0x0806, arp(2, our_mac, our_ip, asker_mac, asker_ip));
  EXPECT_EQ(Bytes(f.begin(), f.begin() + 42), want);
}

}  // namespace ipsecgw::dp
