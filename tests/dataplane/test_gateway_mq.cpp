// The gateway with two workers (tests/dpdk_main_3lcore.cpp: the control lcore and two workers)
// on multi-queue ports: net_ring ports with two RX rings each (RX queue q is polled by worker q)
// and three TX queues (two workers + the control lcore) onto one ring the test reads.
// Checks the one-owner-per-inbound-SA rule (dataplane/sa.hpp): packets of one SA arriving on
// both queues, and reassembled ESP from the control lcore, are decrypted by one worker only,
// with exact replay protection; SAs deleted and re-installed under traffic; and a smoke test
// on net_tap ports inside a network namespace of our own.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <rte_bus_vdev.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "dataplane/gateway.hpp"
#include "dataplane/sa_table.hpp"
#include "gateway_fixture.hpp"

namespace ipsecgw::dp {
namespace {

using namespace testutil;

constexpr auto kBound = std::chrono::seconds(10);

// An inner packet from the peer's host to ours carrying `tag` in its UDP payload.
Bytes tagged_inner(std::uint32_t tag, Ipv4 src = kPeerHost, Ipv4 dst = kLocalHost,
                   std::size_t len = 64) {
  Bytes p = make_inner(len, src, dst);
  for (int i = 0; i < 4; ++i) p[28 + i] = static_cast<std::uint8_t>(tag >> (24 - 8 * i));
  return p;
}
std::uint32_t tag_of(const Bytes& ip) { return be32(ip.data() + 28); }

class GatewayMqTest : public GatewayFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(GatewayFixture::SetUp());
    ASSERT_EQ(rte_lcore_count(), 3u) << "needs the control lcore and two workers";
  }

  // Two RX queues (one per worker), three TX queues (two workers + the control lcore).
  static RingPort make_port(std::uint8_t tag) {
    return make_ring_port({"gwmq", 2, 0, 3, 4096}, tag);
  }

  void boot_on(std::uint16_t u, std::uint16_t p) {
    GatewayConfig c = ring_test_config(u, p);
    c.telemetry = false;
    start_gateway(c);
  }
  void boot() {
    u_ = make_port(0x10);
    p_ = make_port(0x20);
    boot_on(u_.port, p_.port);
  }

  Bytes esp_frame(const Bytes& outer) { return eth(u_.mac, kUnprotGwMac, 0x0800, outer); }

  // Moves what `rp` transmitted (IPv4 frames only, Ethernet stripped) into `out`.
  static void drain(RingPort& rp, std::vector<Bytes>& out) {
    for (const Bytes& f : take_tx(rp))
      if (f.size() >= 34 && be16(f.data() + 12) == 0x0800) out.emplace_back(f.begin() + 14, f.end());
  }
  // Runs the control loop and drains both ports until `pred` holds (bounded).
  bool run_until(const std::function<bool()>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (std::chrono::steady_clock::now() < deadline) {
      gw_->control_poll();
      drain(p_, to_prot_);
      drain(u_, to_unprot_);
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return false;
  }
  std::uint64_t all_drops() const {
    std::uint64_t n = 0;
    for (auto d : gw_->total_stats().drops) n += d;
    return n;
  }

  std::vector<Bytes> to_prot_, to_unprot_;
};

TEST_F(GatewayMqTest, OneWorkerDecryptsAnSaWhosePacketsArriveOnBothQueuesWithExactReplay) {
  boot();
  install_tunnel();
  OutSaPtr tx = peer_tx_sa();
  constexpr unsigned kN = 256, kChunk = 16;  // a chunk reorders less than the 64-packet window
  std::vector<Bytes> inner(kN), outer(kN);
  for (unsigned i = 0; i < kN; ++i) {
    inner[i] = tagged_inner(i);
    outer[i] = encrypt(tx.get(), inner[i]);  // sequence number i + 1
    ASSERT_FALSE(outer[i].empty());
  }
  unsigned on_q[2] = {0, 0}, dups = 0;
  for (unsigned c = 0; c < kN; c += kChunk) {
    for (unsigned i = c; i < c + kChunk; ++i) {
      const unsigned q = (i / 3 + i) % 2;  // interleaved, not strictly alternating
      inject(u_, q, esp_frame(outer[i]));
      ++on_q[q];
      if (i % 4 == 1) {  // the same packet again on the other queue
        inject(u_, 1 - q, esp_frame(outer[i]));
        ++on_q[1 - q];
        ++dups;
      }
      if (i % 8 == 5) {  // an earlier packet of the chunk again, on the same queue
        inject(u_, q, esp_frame(outer[i - 2]));
        ++on_q[q];
        ++dups;
      }
    }
    const std::uint64_t want = c + kChunk + dups;
    ASSERT_TRUE(run_until([&] {
      const LcoreStats t = gw_->total_stats();
      return t.esp_in_packets + t.dropped(DropReason::kReplay) +
                 t.dropped(DropReason::kOutsideWindow) >= want &&
             to_prot_.size() >= t.esp_in_packets;
    })) << gw_->report();
  }
  // Exactly N delivered, each once and intact; every duplicate counted as a replay.
  ASSERT_EQ(to_prot_.size(), kN) << gw_->report();
  std::map<std::uint32_t, unsigned> seen;
  for (const Bytes& p : to_prot_) {
    const std::uint32_t t = tag_of(p);
    ASSERT_LT(t, kN);
    EXPECT_EQ(p, forwarded(inner[t]));
    ++seen[t];
  }
  EXPECT_EQ(seen.size(), kN);
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.dropped(DropReason::kReplay), dups);
  EXPECT_EQ(t.dropped(DropReason::kOutsideWindow), 0u);
  const auto ls = gw_->lcore_stats();  // worker 0, worker 1, control
  ASSERT_EQ(ls.size(), 3u);
  const unsigned owner = ls[0].esp_in_packets != 0 ? 0 : 1, other = 1 - owner;
  EXPECT_EQ(ls[owner].esp_in_packets, kN) << gw_->report();
  EXPECT_EQ(ls[other].esp_in_packets, 0u) << gw_->report();
  EXPECT_EQ(ls[owner].dropped(DropReason::kReplay), dups) << "the owner alone checks replay";
  EXPECT_EQ(ls[other].dropped(DropReason::kReplay), 0u);
  // Worker q polls RX queue q: both received, the non-owner handed all its packets over.
  EXPECT_EQ(ls[0].rx_packets, on_q[0]);
  EXPECT_EQ(ls[1].rx_packets, on_q[1]);
  EXPECT_GT(on_q[other], 0u);
  EXPECT_EQ(ls[other].handed_off, on_q[other]);
  EXPECT_EQ(ls[owner].handed_off, 0u);
  const auto sc = gw_->installer().query_sa(Direction::kInbound, kSpiIn);
  ASSERT_TRUE(sc.has_value());
  EXPECT_EQ(sc->packets, kN);
  EXPECT_EQ(sc->drops[static_cast<unsigned>(DropReason::kReplay)], dups);
}

// Outer fragments are reassembled on the control lcore and injected into worker 0; when worker
// 1 owns the SA, worker 0 hands the reassembled packet over instead of decrypting it.
TEST_F(GatewayMqTest, ReassembledEspIsHandedToTheWorkerThatOwnsTheSa) {
  boot();
  install_tunnel();
  OutSaPtr tx = peer_tx_sa();
  const Bytes in0 = tagged_inner(0), in1 = tagged_inner(1, kPeerHost, kLocalHost, 1000);
  inject(u_, 1, esp_frame(encrypt(tx.get(), in0)));  // worker 1 sees the SA first: it owns it
  ASSERT_TRUE(run_until([&] { return to_prot_.size() >= 1; })) << gw_->report();
  ASSERT_EQ(gw_->lcore_stats()[1].esp_in_packets, 1u) << gw_->report();

  const Bytes outer = encrypt(tx.get(), in1);
  ASSERT_GT(outer.size(), 600u);
  const auto [f1, f2] = fragment_in_two(outer, 576);  // RFC 791: multiples of 8 bytes
  inject(u_, 0, esp_frame(f2));
  inject(u_, 1, esp_frame(f1));
  ASSERT_TRUE(run_until([&] { return to_prot_.size() >= 2; })) << gw_->report();
  EXPECT_EQ(to_prot_[1], forwarded(in1));
  const auto ls = gw_->lcore_stats();
  EXPECT_EQ(ls[1].esp_in_packets, 2u) << gw_->report();
  EXPECT_EQ(ls[0].esp_in_packets, 0u);
  EXPECT_EQ(ls[0].handed_off, 1u) << "worker 0 got the reassembled packet and passed it on";
  EXPECT_EQ(ls[1].handed_off, 0u);
  EXPECT_EQ(gw_->total_stats().punted, 2u);
}

// Issue #11.3: each reassembly call can put up to RTE_LIBRTE_IP_FRAG_MAX_FRAG + 1 mbufs on the
// death row (288 slots in DPDK 22.11, writes unbounded). One control poll takes up to 32 punts
// from each worker; with two workers, 64 "killer" fragments (one too many for an incomplete
// datagram already holding 8) put 576 mbufs there if it is emptied once per poll. The gateway
// must empty it after every call: nothing leaks (TearDown), nothing is written past it (the
// gateway checks the count, ASan build: `--suite asan`).
TEST_F(GatewayMqTest, FragmentFloodNeverOverfillsTheReassemblyDeathRow) {
  boot();
  constexpr unsigned kPerQueue = 32, kHeld = 8;
  // Fragment `k` of datagram `id`: k = 0 first (offset 0), 1 last (offset 800, no MF), else a
  // middle one at offset 16 * k (gaps: the datagram never completes).
  auto frag = [&](std::uint16_t id, unsigned k) {
    Bytes ip = make_inner(8, kPeerGw, kUnprotAddr);  // 20 + 8 bytes
    ip[9] = 50;  // ESP
    put16(ip.data() + 4, id);
    const std::uint16_t units = k == 0 ? 0 : k == 1 ? 100 : static_cast<std::uint16_t>(2 * k);
    put16(ip.data() + 6, static_cast<std::uint16_t>((k == 1 ? 0 : 0x2000) | units));
    ip[10] = ip[11] = 0;
    put16(ip.data() + 10, inet_checksum(ip.data(), 20));
    return esp_frame(ip);
  };
  auto wait_punted = [&](std::uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (gw_->total_stats().punted < n && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    return gw_->total_stats().punted >= n;
  };
  for (unsigned q = 0; q < 2; ++q)
    for (unsigned d = 0; d < kPerQueue; ++d)
      for (unsigned k = 0; k < kHeld; ++k)
        inject(u_, q, frag(static_cast<std::uint16_t>(q * 1000 + d), k));
  ASSERT_TRUE(wait_punted(2 * kPerQueue * kHeld)) << gw_->report();
  for (int i = 0; i < 100; ++i) gw_->control_poll();  // all held, incomplete

  // The killers: punted by both workers, then taken by one control poll.
  for (unsigned q = 0; q < 2; ++q)
    for (unsigned d = 0; d < kPerQueue; ++d)
      inject(u_, q, frag(static_cast<std::uint16_t>(q * 1000 + d), kHeld));
  ASSERT_TRUE(wait_punted(2 * kPerQueue * (kHeld + 1))) << gw_->report();
  gw_->control_poll();
  gw_->control_poll();
  EXPECT_EQ(rte_mempool_in_use_count(pool_), base_in_use_) << "every fragment freed";
}

// The control thread deletes and re-installs the tunnel's SAs again and again while a second
// thread keeps injecting ESP from the peer and clear traffic for the tunnel on both queues of
// both ports. Each phase waits until the workers saw traffic in that state, so every cycle
// exercises lookups that find the SA, miss it, and find a new instance (claimed afresh).
TEST_F(GatewayMqTest, SasDeletedAndReinstalledUnderTrafficCountMissesAndTrafficResumes) {
  boot();
  install_tunnel();
  OutSaPtr tx = peer_tx_sa();
  const Bytes clear = eth(p_.mac, kHostMac, 0x0800, make_inner(80, kLocalHost, kPeerHost));

  // The injector encrypts each ESP packet as it goes (its own engine; fresh sequence numbers,
  // so every SA instance accepts the stream) and injects a clear packet for the tunnel too.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> injected{0};
  const MacAddr umac = u_.mac;
  std::thread injector([&] {
    auto eng = crypto::EspEngine::create();
    if (!eng.ok()) return;
    unsigned i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const unsigned q = i % 2;
      const Bytes inner = tagged_inner(i);
      rte_mbuf* m = rte_pktmbuf_alloc(pool_);
      if (m != nullptr) {
        std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(inner.size())),
                    inner.data(), inner.size());
        LcoreStats st;
        OutboundSa* sas[1] = {tx.get()};
        rte_mbuf* ms[1] = {m};
        char* e = nullptr;
        if (esp_outbound(*eng.value(), std::span<rte_mbuf*>(ms, 1), std::span<OutboundSa* const>(sas, 1),
                         st) == 1)
          e = rte_pktmbuf_prepend(m, 14);
        if (e != nullptr) {
          const Bytes hdr = eth(umac, kUnprotGwMac, 0x0800, {});
          std::memcpy(e, hdr.data(), 14);
        }
        if (e != nullptr && rte_ring_enqueue(u_.rx[q], m) == 0) {
          injected.fetch_add(1);
        } else {
          rte_pktmbuf_free(m);
        }
      }
      if (try_inject(p_, q, clear)) injected.fetch_add(1);
      if (++i % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  constexpr unsigned kCycles = 12;
  unsigned cycles = 0;
  bool ok = true;
  for (; cycles < kCycles && ok; ++cycles) {
    // Installed: traffic decrypts and encrypts.
    LcoreStats b = gw_->total_stats();
    ok = run_until([&] {
      const LcoreStats t = gw_->total_stats();
      return t.esp_in_packets > b.esp_in_packets + 8 && t.esp_out_packets > b.esp_out_packets + 8;
    });
    if (!ok) break;
    remove_tunnel();
    // Missing: inbound counted as no_sa, outbound as no_policy.
    b = gw_->total_stats();
    ok = run_until([&] {
      const LcoreStats t = gw_->total_stats();
      return t.dropped(DropReason::kNoSa) > b.dropped(DropReason::kNoSa) + 8 &&
             t.dropped(DropReason::kNoPolicy) > b.dropped(DropReason::kNoPolicy) + 8;
    });
    install_tunnel();
  }
  stop = true;
  injector.join();
  ASSERT_TRUE(ok) << "cycle " << cycles << ": " << gw_->report();
  // Every injected packet is delivered or counted under a drop reason (none lost, none twice).
  ASSERT_TRUE(run_until([&] {
    return to_prot_.size() + to_unprot_.size() + all_drops() >= injected.load();
  })) << gw_->report();
  EXPECT_EQ(to_prot_.size() + to_unprot_.size() + all_drops(), injected.load()) << gw_->report();
  const LcoreStats t = gw_->total_stats();
  EXPECT_EQ(t.rx_packets, injected.load());
  EXPECT_EQ(t.dropped(DropReason::kNoSa) + t.dropped(DropReason::kNoPolicy) +
                t.dropped(DropReason::kReplay) + t.dropped(DropReason::kOutsideWindow) +
                t.dropped(DropReason::kSaDown) + t.dropped(DropReason::kRingFull) +
                t.dropped(DropReason::kTxFull),
            all_drops())
      << "only the drops SA churn explains: " << gw_->report();

  // After the last re-install, fresh traffic passes both ways through the new SAs.
  to_prot_.clear();
  to_unprot_.clear();
  const Bytes last = tagged_inner(0xABCD);
  inject(u_, 1, esp_frame(encrypt(tx.get(), last)));
  const Bytes out_inner = make_inner(90, kLocalHost, kPeerHost);
  inject(p_, 0, eth(p_.mac, kHostMac, 0x0800, out_inner));
  ASSERT_TRUE(run_until([&] { return !to_prot_.empty() && !to_unprot_.empty(); })) << gw_->report();
  EXPECT_EQ(to_prot_[0], forwarded(last));
  InSaPtr rx = peer_rx_sa();
  EXPECT_EQ(decrypt(rx.get(), to_unprot_[0]), forwarded(out_inner));

  gw_->stop();
  gw_.reset();  // drains the SA tables (RCU) and frees the rings
  drain(u_, to_unprot_);
  drain(p_, to_prot_);
  for (RingPort* rp : {&u_, &p_})
    for (rte_ring* r : rp->rx) EXPECT_EQ(rte_ring_count(r), 0u);
  EXPECT_EQ(rte_mempool_in_use_count(pool_), base_in_use_) << "mbufs leaked under SA churn";
}

// ---- net_tap: the kernel side of each TAP is driven through an AF_PACKET socket ----

class PacketSocket {
 public:
  explicit PacketSocket(const char* ifname) {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
    if (fd_ < 0) return;
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd_, SIOCGIFFLAGS, &ifr) == 0) {
      ifr.ifr_flags |= IFF_UP;
      (void)ioctl(fd_, SIOCSIFFLAGS, &ifr);
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname));
    if (sll.sll_ifindex == 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~PacketSocket() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  bool send(const Bytes& f) { return ::send(fd_, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size()); }
  // Frames the kernel received from the TAP (what DPDK transmitted), not our own sends.
  std::vector<Bytes> recv_all() {
    std::vector<Bytes> v;
    std::uint8_t buf[2048];
    for (;;) {
      sockaddr_ll from{};
      socklen_t fl = sizeof from;
      const ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n <= 0) break;
      if (from.sll_pkttype != PACKET_OUTGOING) v.emplace_back(buf, buf + n);
    }
    return v;
  }

 private:
  int fd_ = -1;
};

TEST_F(GatewayMqTest, WorksOnTapPortsInOwnNetworkNamespace) {
  if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0)
    GTEST_SKIP() << "net_tap needs root and /dev/net/tun";
  // TAP interfaces in a network namespace of our own (this thread's), left when done.
  const int orig_ns = open("/proc/thread-self/ns/net", O_RDONLY);
  ASSERT_GE(orig_ns, 0);
  if (unshare(CLONE_NEWNET) != 0) {
    close(orig_ns);
    GTEST_SKIP() << "cannot create a network namespace: " << std::strerror(errno);
  }
  struct Restore {
    int fd;
    ~Restore() {
      (void)setns(fd, CLONE_NEWNET);
      close(fd);
    }
  } restore{orig_ns};
  if (rte_eal_hotplug_add("vdev", "net_tap_gwmq0", "iface=ipsgwu0") != 0)
    GTEST_SKIP() << "net_tap unavailable (rte_eal_hotplug_add failed)";
  ASSERT_EQ(rte_eal_hotplug_add("vdev", "net_tap_gwmq1", "iface=ipsgwp0"), 0);
  std::uint16_t u = 0, p = 0;
  ASSERT_EQ(rte_eth_dev_get_port_by_name("net_tap_gwmq0", &u), 0);
  ASSERT_EQ(rte_eth_dev_get_port_by_name("net_tap_gwmq1", &p), 0);
  {
    boot_on(u, p);
    ASSERT_TRUE(gw_);
    install_tunnel();
    PacketSocket su("ipsgwu0"), sp("ipsgwp0");
    ASSERT_TRUE(su.ok() && sp.ok()) << std::strerror(errno);
    rte_ether_addr a;
    rte_eth_macaddr_get(u, &a);
    MacAddr umac;
    std::copy(a.addr_bytes, a.addr_bytes + 6, umac.begin());
    OutSaPtr tx = peer_tx_sa();
    const Bytes inner = tagged_inner(7);
    const Bytes frame = eth(umac, kUnprotGwMac, 0x0800, encrypt(tx.get(), inner));
    // The kernel may drop the first frames while the interfaces come up: resend until seen.
    Bytes got;
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (got.empty() && std::chrono::steady_clock::now() < deadline) {
      (void)su.send(frame);
      for (int k = 0; k < 50 && got.empty(); ++k) {
        gw_->control_poll();
        for (const Bytes& f : sp.recv_all())
          if (f.size() > 14 && be16(f.data() + 12) == 0x0800 && std::equal(kHostMac.begin(), kHostMac.end(), f.begin()))
            got.assign(f.begin() + 14, f.end());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    ASSERT_FALSE(got.empty()) << gw_->report();
    EXPECT_EQ(got, forwarded(inner));
    EXPECT_GE(gw_->total_stats().esp_in_packets, 1u);
    gw_->stop();
    gw_.reset();
  }
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_tap_gwmq0"), 0);
  EXPECT_EQ(rte_eal_hotplug_remove("vdev", "net_tap_gwmq1"), 0);
}

}  // namespace
}  // namespace ipsecgw::dp
