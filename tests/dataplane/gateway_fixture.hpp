// Shared by the gateway runtime tests (test_gateway.cpp: one worker; test_gateway_mq.cpp: two
// workers on multi-queue ports): the addresses of the test topology, Ethernet and fragment
// builders, net_ring ports made of rte_rings the test fills and drains, and a fixture holding
// the mbuf pool, an ESP engine for the peer's side, the gateway and its two ports.
#pragma once

#include <gtest/gtest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/gateway.hpp"
#include "esp_test_util.hpp"

namespace ipsecgw::dp::testutil {

constexpr Ipv4 kUnprotAddr = 0xC0000201;  // 192.0.2.1 (= kLocalGw)
constexpr Ipv4 kUnprotGw = 0xC00002FE;    // 192.0.2.254: the way to 198.51.100.0/24
constexpr Ipv4 kProtAddr = 0x0A010001;    // 10.1.0.1
constexpr MacAddr kUnprotGwMac = {0x02, 0xaa, 0, 0, 0, 0xfe};
constexpr MacAddr kHostMac = {0x02, 0xbb, 0, 0, 0, 0x05};  // 10.1.0.5 (kLocalHost)
constexpr std::uint32_t kSpiOut = 0x1000, kSpiIn = 0x2000;

inline Bytes eth(const MacAddr& dst, const MacAddr& src, std::uint16_t type, const Bytes& payload) {
  Bytes f(14);
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(src.begin(), src.end(), f.begin() + 6);
  put16(f.data() + 12, type);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

// What a router makes of `ip` when it forwards it: TTL - 1, checksum recomputed.
inline Bytes forwarded(Bytes ip) {
  ip[8]--;
  ip[10] = ip[11] = 0;
  put16(ip.data() + 10, inet_checksum(ip.data(), (ip[0] & 0x0f) * 4u));
  return ip;
}

// The two RFC 791 fragments of `ip` (a 20-byte header): the first carries `cut` payload bytes
// (a multiple of 8) with MF set, the second the rest at offset cut / 8; checksums recomputed.
inline std::pair<Bytes, Bytes> fragment_in_two(const Bytes& ip, std::size_t cut) {
  const auto split = ip.begin() + 20 + static_cast<long>(cut);
  Bytes f1(ip.begin(), split), f2(ip.begin(), ip.begin() + 20);
  f2.insert(f2.end(), split, ip.end());
  put16(f1.data() + 2, static_cast<std::uint16_t>(f1.size()));
  put16(f1.data() + 6, 0x2000);  // MF
  put16(f2.data() + 2, static_cast<std::uint16_t>(f2.size()));
  put16(f2.data() + 6, static_cast<std::uint16_t>(cut / 8));
  for (Bytes* f : {&f1, &f2}) {
    (*f)[10] = (*f)[11] = 0;
    put16(f->data() + 10, inet_checksum(f->data(), 20));
  }
  return {std::move(f1), std::move(f2)};
}

// A net_ring port: RX queue q reads ring rx[q] (the test enqueues, the worker polling q
// dequeues); every TX queue writes the one ring tx, which the test drains.
struct RingPort {
  static constexpr unsigned kMaxRxQueues = 2;
  rte_ring* rx[kMaxRxQueues] = {nullptr, nullptr};
  rte_ring* tx = nullptr;
  std::uint16_t port = 0;
  MacAddr mac{};
};

// How make_ring_port builds a port (RX rings hold 1024 mbufs).
struct RingPortShape {
  const char* name_prefix;    // of the port and its rings, made unique per process and port
  unsigned rx_queues;         // 1..RingPort::kMaxRxQueues
  unsigned rx_ring_flags;     // rte_ring_create flags of the RX rings
  unsigned tx_queues;         // all onto the one TX ring
  unsigned tx_ring_size;
};

// Creates the rings and the port; its MAC address is 02:<tag>:00:00:00:01.
inline RingPort make_ring_port(const RingPortShape& s, std::uint8_t tag) {
  static unsigned seq = 0;
  RingPort rp;
  EXPECT_LE(s.rx_queues, RingPort::kMaxRxQueues);
  const unsigned nrx = std::min(s.rx_queues, RingPort::kMaxRxQueues);
  const std::string name =
      s.name_prefix + std::to_string(getpid() % 1000) + "_" + std::to_string(seq++);
  for (unsigned q = 0; q < nrx; ++q) {
    rp.rx[q] = rte_ring_create((name + "r" + std::to_string(q)).c_str(), 1024, SOCKET_ID_ANY,
                               s.rx_ring_flags);
    EXPECT_NE(rp.rx[q], nullptr);
  }
  rp.tx = rte_ring_create((name + "t").c_str(), s.tx_ring_size, SOCKET_ID_ANY, RING_F_SC_DEQ);
  EXPECT_NE(rp.tx, nullptr);
  std::vector<rte_ring*> txs(s.tx_queues, rp.tx);
  const int id = rte_eth_from_rings(name.c_str(), rp.rx, nrx, txs.data(), s.tx_queues,
                                    SOCKET_ID_ANY);
  EXPECT_GE(id, 0);
  rp.port = static_cast<std::uint16_t>(id);
  rte_ether_addr a = {{0x02, tag, 0, 0, 0, 0x01}};
  (void)rte_eth_dev_default_mac_addr_set(rp.port, &a);
  rte_eth_macaddr_get(rp.port, &a);
  std::copy(a.addr_bytes, a.addr_bytes + 6, rp.mac.begin());
  return rp;
}

// Frees the mbufs left in the port's rings, then the rings; `rp` is reset.
inline void free_ring_port(RingPort& rp) {
  for (rte_ring* r : {rp.rx[0], rp.rx[1], rp.tx}) {
    if (r == nullptr) continue;
    void* o;
    while (rte_ring_dequeue(r, &o) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(o));
    rte_ring_free(r);
  }
  rp = RingPort{};
}

// Every frame `rp` transmitted so far, Ethernet header included.
inline std::vector<Bytes> take_tx(RingPort& rp) {
  std::vector<Bytes> out;
  void* o;
  while (rte_ring_dequeue(rp.tx, &o) == 0) {
    auto* m = static_cast<rte_mbuf*>(o);
    out.push_back(to_bytes(m));
    rte_pktmbuf_free(m);
  }
  return out;
}

// The configuration both tests start from: unprotected 192.0.2.0/24 (default next hop
// 192.0.2.254), protected 10.1.0.0/16, the next hop's and the local host's MACs known.
inline GatewayConfig ring_test_config(std::uint16_t unprotected_port, std::uint16_t protected_port) {
  GatewayConfig c;
  c.unprotected = {unprotected_port, {0xC0000200, 24}, kUnprotAddr, kUnprotGw, 1500};
  c.protected_port = {protected_port, {0x0A010000, 16}, kProtAddr, 0, 1500};
  c.neighbors = {{kUnprotGw, kUnprotGwMac}, {kLocalHost, kHostMac}};
  c.rx_desc = c.tx_desc = 256;
  c.idle_sleep_us = 20;  // the test machine is small
  return c;
}

// The mbuf pool (shared by the suite), an ESP engine for the peer's side of the tunnel, the
// gateway and its two ring ports u_ (unprotected) and p_ (protected). TearDown stops the
// gateway, frees the ports and checks that no mbuf leaked.
class GatewayFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (pool_ == nullptr)
      pool_ = rte_pktmbuf_pool_create("gw_test_pool", 4095, 0, 0, 2048 + RTE_PKTMBUF_HEADROOM,
                                      SOCKET_ID_ANY);
  }

  void SetUp() override {
    ASSERT_NE(pool_, nullptr);
    base_in_use_ = rte_mempool_in_use_count(pool_);
    auto e = crypto::EspEngine::create();
    ASSERT_TRUE(e.ok());
    engine_ = std::move(e.value());
  }

  void TearDown() override {
    if (gw_) {
      gw_->stop();
      gw_.reset();
    }
    free_ring_port(u_);
    free_ring_port(p_);
    EXPECT_EQ(rte_mempool_in_use_count(pool_), base_in_use_) << "test mbufs leaked";
  }

  // Creates and starts the gateway; `handler` (if any) receives its IKE datagrams.
  void start_gateway(const GatewayConfig& c, DatagramHandler* handler = nullptr) {
    auto g = Gateway::create(c);
    ASSERT_TRUE(g.ok()) << g.error();
    gw_ = std::move(g.value());
    if (handler != nullptr) gw_->set_datagram_handler(handler);
    auto s = gw_->start();
    ASSERT_TRUE(s.ok()) << s.error();
  }

  // Enqueues `frame` on RX queue `q` of `rp`; false when the ring or the pool is full.
  // `ol_flags`: what a NIC's RX would have set (e.g. RTE_MBUF_F_RX_IP_CKSUM_GOOD).
  static bool try_inject(RingPort& rp, unsigned q, const Bytes& frame, std::uint64_t ol_flags = 0) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) return false;
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size())), frame.data(),
                frame.size());
    m->ol_flags |= ol_flags;
    if (rte_ring_enqueue(rp.rx[q], m) != 0) {
      rte_pktmbuf_free(m);
      return false;
    }
    return true;
  }
  void inject(RingPort& rp, unsigned q, const Bytes& frame) { ASSERT_TRUE(try_inject(rp, q, frame)); }

  // The tunnel 10.1/16 <-> 10.2/16 with the peer 198.51.100.2: AES-128-CBC + HMAC-SHA1-96,
  // outbound SPI kSpiOut (limited to `mtu` bytes), inbound SPI kSpiIn; ESP-in-UDP (port 4500,
  // RFC 3948) when `encap`.
  void install_tunnel(std::uint16_t mtu = 1500, bool encap = false) {
    const Combo c = kCombos[0];
    SaSpec in = make_spec(Direction::kOutbound, c, encap, kSpiIn);
    in.dir = Direction::kInbound;  // from 198.51.100.2 (10.2/16) to us (10.1/16)
    ASSERT_TRUE(gw_->installer().add_sa(std::move(in)).ok());
    SaSpec out = make_spec(Direction::kOutbound, c, encap, kSpiOut);
    out.mtu = mtu;
    ASSERT_TRUE(gw_->installer().add_sa(std::move(out)).ok());
  }
  void remove_tunnel() {
    ASSERT_TRUE(gw_->installer().del_sa(Direction::kInbound, kSpiIn).ok());
    ASSERT_TRUE(gw_->installer().del_sa(Direction::kOutbound, kSpiOut).ok());
  }
  // The peer's view: decrypts what we send, encrypts what it sends us.
  InSaPtr peer_rx_sa() {
    return create_sa<InboundSa>(make_spec(Direction::kInbound, kCombos[0], false, kSpiOut));
  }
  OutSaPtr peer_tx_sa(bool encap = false) {
    SaSpec s = make_spec(Direction::kInbound, kCombos[0], encap, kSpiIn);
    s.dir = Direction::kOutbound;
    return create_sa<OutboundSa>(s);
  }

  // Runs one packet through `sa` (esp_outbound for an OutboundSa, esp_inbound for an
  // InboundSa); empty when it does not pass (verify).
  template <class S>
  Bytes run_esp(S* sa, const Bytes& in) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(in.size())), in.data(), in.size());
    LcoreStats st;
    S* sas[1] = {sa};
    rte_mbuf* ms[1] = {m};
    std::uint16_t good;
    if constexpr (S::kDir == Direction::kOutbound)
      good = esp_outbound(*engine_, std::span<rte_mbuf*>(ms, 1), std::span<S* const>(sas, 1), st);
    else
      good = esp_inbound(*engine_, std::span<rte_mbuf*>(ms, 1), std::span<S* const>(sas, 1), st);
    Bytes r = good == 1 ? to_bytes(m) : Bytes{};
    rte_pktmbuf_free(m);
    return r;
  }
  Bytes encrypt(OutboundSa* sa, const Bytes& inner) { return run_esp(sa, inner); }
  Bytes decrypt(InboundSa* sa, const Bytes& outer_ip) { return run_esp(sa, outer_ip); }

  static inline rte_mempool* pool_ = nullptr;
  unsigned base_in_use_ = 0;
  std::unique_ptr<crypto::EspEngine> engine_;
  RingPort u_, p_;
  std::unique_ptr<Gateway> gw_;
};

}  // namespace ipsecgw::dp::testutil
