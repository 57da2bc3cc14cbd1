// One control thread adds, replaces and deletes SAs and policies thousands of times while a
// worker thread looks them up, reads them (identity, selectors, key schedule) and reports RCU
// quiescent states. Stable SAs stay installed the whole time and must never be missed; a looked
// up SA must never be freed or wiped while the reader holds it; at the end every deferred free
// has run exactly once. Bounded by an operation count and a wall-clock cap.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "dataplane/esp.hpp"
#include "dataplane/sa_table.hpp"
#include "tests/dataplane/esp_test_util.hpp"
#include "tests/dataplane/sa_table_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using testutil::kConnMagic;
using testutil::make_spec;
using testutil::sa_is_live;

constexpr unsigned kStableIn = 32;
constexpr unsigned kChurnIn = 256;
constexpr unsigned kStableOut = 16;
constexpr unsigned kChurnOut = 32;
constexpr std::uint32_t kStableInBase = 0x10000;
constexpr std::uint32_t kChurnInBase = 0x20000;
// The same count under ThreadSanitizer: policy changes are hash operations (no SPD rebuild
// allocating a pool per change any more), so TSan checks every one of them too.
constexpr unsigned kWriterOps = 2000;
constexpr unsigned kRekeys = 150;
// A safety bound against a hang, not a speed test: the counts above take ~2 s normally and
// ~30 s under ASan on a loaded machine; the assertions only require some progress before it.
constexpr auto kWallCap = std::chrono::seconds(60);

constexpr Ipv4 kLocalNet = 0x0a000000;  // 10.0.0.0/8
Ipv4Prefix stable_peer(unsigned i) { return {0xac100000u | (i << 8), 24}; }  // 172.16.i.0/24
Ipv4Prefix churn_peer(unsigned i) { return {0xac110000u | (i << 8), 24}; }   // 172.17.i.0/24

// A looked-up SA is consistent: marked published before it was linked (the release the
// lookup acquires), identity, conn canary, key schedule not wiped.
bool consistent(const SaHead* sa) {
  return sa != nullptr && sa->published.load(std::memory_order_relaxed) == kSaPublished &&
         sa_is_live(sa, sa->spi) && sa->conn_id == (sa->spi ^ kConnMagic);
}

// The outbound state the writer left: churn peer i has the policy of churn_spi[i] (0: none),
// stable peer i that of stable_spi[i].
void expect_outbound_state(DpSaInstaller& inst, const std::vector<std::uint32_t>& churn_spi,
                           const std::vector<std::uint32_t>& stable_spi) {
  for (unsigned i = 0; i < churn_spi.size(); ++i) {
    Ipv4 s = kLocalNet | 1, d = churn_peer(i).addr | 1;
    OutboundSa* sa = nullptr;
    inst.lookup_outbound(&s, &d, 1, &sa);
    if (churn_spi[i] == 0) EXPECT_EQ(sa, nullptr) << i;
    else EXPECT_TRUE(sa != nullptr && sa->spi == churn_spi[i]) << i;
  }
  for (unsigned i = 0; i < stable_spi.size(); ++i) {
    Ipv4 s = kLocalNet | 1, d = stable_peer(i).addr | 1;
    OutboundSa* sa = nullptr;
    inst.lookup_outbound(&s, &d, 1, &sa);
    EXPECT_TRUE(sa != nullptr && sa->spi == stable_spi[i]) << i;
  }
}

struct ReaderStats {
  std::atomic<std::uint64_t> iterations{0};
  std::atomic<std::uint64_t> lost_stable{0};    // a stable SA or policy looked up as missing
  std::atomic<std::uint64_t> inconsistent{0};   // wrong SA, or freed/wiped while held
  std::atomic<std::uint64_t> churn_hits{0};
};

TEST(SaConcurrency, ReaderNeverMissesStableSasNorSeesFreedOnesWhileWriterChurns) {
  auto rcu_r = Rcu::create(2);
  ASSERT_TRUE(rcu_r);
  Rcu& rcu = **rcu_r;
  auto inst_r = DpSaInstaller::create(rcu, 1024);
  ASSERT_TRUE(inst_r) << inst_r.error();
  DpSaInstaller& inst = **inst_r;

  for (unsigned i = 0; i < kStableIn; ++i)
    ASSERT_TRUE(inst.add_sa(make_spec(Direction::kInbound, kStableInBase + i)));
  std::vector<std::uint32_t> stable_out_spi(kStableOut);
  for (unsigned i = 0; i < kStableOut; ++i) {
    stable_out_spi[i] = 0x300000 + (i << 12);
    ASSERT_TRUE(inst.add_sa(
        make_spec(Direction::kOutbound, stable_out_spi[i], {kLocalNet, 8}, stable_peer(i))));
  }
  std::uint64_t expected_frees = 0;  // one SPD class (/8 -> /24): no class list replaced

  ReaderStats rs;
  std::atomic<bool> stop{false};
  constexpr unsigned kTid = 1;

  std::thread reader([&] {
    rcu.register_thread(kTid);
    rcu.online(kTid);
    std::mt19937 rng(7);
    constexpr unsigned kB = 32;
    std::uint32_t spis[kB];
    Ipv4 src[kB], dst[kB];
    InboundSa* in_sa[kB];
    OutboundSa* out_sa[kB];
    // Three lookups in four through a worker's SPI cache, whose entries outlive quiescent
    // states: only the inbound generation keeps it from returning deleted or replaced SAs.
    auto cache = std::make_unique<InboundSaCache>();
    std::uint64_t iter = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (unsigned i = 0; i < kB; ++i) {
        spis[i] = i % 2 == 0 ? kStableInBase + rng() % kStableIn : kChurnInBase + rng() % kChurnIn;
        const unsigned pi = i % 2 == 0 ? rng() % kStableOut : rng() % kChurnOut;
        const Ipv4Prefix peer = i % 2 == 0 ? stable_peer(pi) : churn_peer(pi);
        src[i] = kLocalNet | (rng() & 0x00ffffff);
        dst[i] = peer.addr | (rng() & 0xff);
      }
      if (iter++ % 4 != 0) inst.lookup_inbound(spis, kB, in_sa, *cache);
      else inst.lookup_inbound(spis, kB, in_sa);
      inst.lookup_outbound(src, dst, kB, out_sa);
      for (unsigned i = 0; i < kB; ++i) {
        if (in_sa[i] == nullptr) {
          if (i % 2 == 0) rs.lost_stable.fetch_add(1);
        } else if (!consistent(in_sa[i]) || in_sa[i]->spi != spis[i] ||
                   in_sa[i]->dir != Direction::kInbound) {
          rs.inconsistent.fetch_add(1);
        } else if (i % 2 == 1) {
          rs.churn_hits.fetch_add(1, std::memory_order_relaxed);
        }
        if (out_sa[i] == nullptr) {
          if (i % 2 == 0) rs.lost_stable.fetch_add(1);
        } else if (!consistent(out_sa[i]) || out_sa[i]->dir != Direction::kOutbound ||
                   !out_sa[i]->peer_subnet.contains(dst[i]) ||
                   !out_sa[i]->local_subnet.contains(src[i])) {
          rs.inconsistent.fetch_add(1);
        }
      }
      // Hold the pointers a little longer (as a worker does through crypto), then read them
      // again: a premature free or wipe by the writer would show here.
      for (int spin = 0; spin < 200; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
      for (unsigned i = 0; i < kB; ++i) {
        if (in_sa[i] != nullptr && (!consistent(in_sa[i]) || in_sa[i]->spi != spis[i]))
          rs.inconsistent.fetch_add(1);
        if (out_sa[i] != nullptr && !consistent(out_sa[i])) rs.inconsistent.fetch_add(1);
      }
      rcu.quiescent(kTid);  // no SA pointer is kept past this point
      rs.iterations.fetch_add(1, std::memory_order_relaxed);
    }
    rcu.offline(kTid);
    rcu.unregister_thread(kTid);
  });
  while (rs.iterations.load() == 0) std::this_thread::yield();

  // ---- the writer (this thread is the control thread) ----
  std::mt19937 rng(99);
  std::vector<bool> in_present(kChurnIn, false);
  std::vector<std::uint32_t> out_spi(kChurnOut, 0);  // 0 = no policy
  std::uint32_t next_out_spi = 0x400000;
  std::uint64_t freed = 0, ops = 0, in_adds = 0, in_replaces = 0, in_dels = 0, out_adds = 0,
                out_rekeys = 0, out_dels = 0, stable_rekeys = 0;
  const auto deadline = std::chrono::steady_clock::now() + kWallCap;
  for (; ops < kWriterOps && std::chrono::steady_clock::now() < deadline; ++ops) {
    const unsigned what = rng() % 10;
    if (what < 5) {  // inbound churn: add / replace (same SPI, same connection) / delete
      const unsigned i = rng() % kChurnIn;
      const std::uint32_t spi = kChurnInBase + i;
      if (!in_present[i]) {
        ASSERT_TRUE(inst.add_sa(make_spec(Direction::kInbound, spi)));
        in_present[i] = true;
        ++in_adds;
      } else if (rng() % 2 == 0) {
        ASSERT_TRUE(inst.add_sa(make_spec(Direction::kInbound, spi)));
        ++in_replaces;
        ++expected_frees;
      } else {
        ASSERT_TRUE(inst.del_sa(Direction::kInbound, spi));
        in_present[i] = false;
        ++in_dels;
        ++expected_frees;
      }
    } else if (what < 9) {  // outbound churn: new policy / rekey / delete policy
      const unsigned i = rng() % kChurnOut;
      const std::uint32_t spi = next_out_spi++;
      if (out_spi[i] == 0) {
        ASSERT_TRUE(
            inst.add_sa(make_spec(Direction::kOutbound, spi, {kLocalNet, 8}, churn_peer(i))));
        out_spi[i] = spi;
        ++out_adds;  // one table insert: nothing replaced (its class, /8 -> /24, is in use)
      } else if (rng() % 2 == 0) {
        ASSERT_TRUE(
            inst.add_sa(make_spec(Direction::kOutbound, spi, {kLocalNet, 8}, churn_peer(i))));
        out_spi[i] = spi;
        ++out_rekeys;
        ++expected_frees;  // the old SA
      } else {
        ASSERT_TRUE(inst.del_sa(Direction::kOutbound, out_spi[i]));
        out_spi[i] = 0;
        ++out_dels;
        expected_frees += 2;  // SA, policy slot (its table entry is a tombstone); the class stays
      }
    } else {  // make-before-break rekey of a stable tunnel: never a gap for the reader
      const unsigned i = rng() % kStableOut;
      const std::uint32_t spi = next_out_spi++;
      ASSERT_TRUE(
          inst.add_sa(make_spec(Direction::kOutbound, spi, {kLocalNet, 8}, stable_peer(i))));
      stable_out_spi[i] = spi;
      ++stable_rekeys;
      ++expected_frees;
    }
    freed += inst.reclaim();  // once per control-loop iteration
    if (ops % 64 == 0) std::this_thread::yield();
  }
  // Let the reader run over the final state too, then stop it.
  const auto it0 = rs.iterations.load();
  while (rs.iterations.load() < it0 + 10) std::this_thread::yield();
  stop = true;
  reader.join();
  freed += inst.reclaim();
  // Every unlink was deferred exactly once: what ran plus what still waits is what we expect.
  EXPECT_EQ(freed + inst.pending_reclaims(), expected_frees);
  inst.drain();
  EXPECT_EQ(inst.pending_reclaims(), 0u);

  std::printf("writer ops %llu (in add %llu replace %llu del %llu; out add %llu rekey %llu "
              "del %llu; stable rekey %llu); reader iterations %llu, churn hits %llu\n",
              (unsigned long long)ops, (unsigned long long)in_adds,
              (unsigned long long)in_replaces, (unsigned long long)in_dels,
              (unsigned long long)out_adds, (unsigned long long)out_rekeys,
              (unsigned long long)out_dels, (unsigned long long)stable_rekeys,
              (unsigned long long)rs.iterations.load(), (unsigned long long)rs.churn_hits.load());
  EXPECT_EQ(rs.lost_stable.load(), 0u);
  EXPECT_EQ(rs.inconsistent.load(), 0u);
  EXPECT_GT(rs.iterations.load(), 10u);
  EXPECT_GE(ops, kWriterOps / 10) << "no progress before the safety cap";

  // Final state as the writer left it.
  for (unsigned i = 0; i < kStableIn; ++i) {
    std::uint32_t spi = kStableInBase + i;
    InboundSa* sa = nullptr;
    inst.lookup_inbound(&spi, 1, &sa);
    EXPECT_TRUE(sa_is_live(sa, spi));
  }
  for (unsigned i = 0; i < kChurnIn; ++i) {
    std::uint32_t spi = kChurnInBase + i;
    InboundSa* sa = nullptr;
    inst.lookup_inbound(&spi, 1, &sa);
    EXPECT_EQ(sa != nullptr, static_cast<bool>(in_present[i])) << i;
  }
  expect_outbound_state(inst, out_spi, stable_out_spi);
}

// Outbound policy churn in an SPD small enough (capacity 64: 128 table entries) that removed
// policies' tombstones fill its table again and again: each time the live entries are copied
// into a fresh table published under the reader, and the old table is freed only after the
// reader's grace period. The reader must never miss a stable tunnel nor see a freed SA,
// across every compaction.
TEST(SaConcurrency, OutboundLookupsStayExactWhileChurnCompactsTheSpd) {
  auto rcu_r = Rcu::create(2);
  ASSERT_TRUE(rcu_r);
  Rcu& rcu = **rcu_r;
  auto inst_r = DpSaInstaller::create(rcu, 64);
  ASSERT_TRUE(inst_r) << inst_r.error();
  DpSaInstaller& inst = **inst_r;
  std::vector<std::uint32_t> stable_spi(kStableOut);
  for (unsigned i = 0; i < kStableOut; ++i) {
    stable_spi[i] = 0x300000 + i;
    ASSERT_TRUE(inst.add_sa(
        make_spec(Direction::kOutbound, stable_spi[i], {kLocalNet, 8}, stable_peer(i))));
  }
  ReaderStats rs;
  std::atomic<bool> stop{false};
  constexpr unsigned kTid = 1;
  std::thread reader([&] {
    rcu.register_thread(kTid);
    rcu.online(kTid);
    std::mt19937 rng(11);
    constexpr unsigned kB = 32;
    Ipv4 src[kB], dst[kB];
    OutboundSa* out_sa[kB];
    while (!stop.load(std::memory_order_relaxed)) {
      for (unsigned i = 0; i < kB; ++i) {
        const Ipv4Prefix peer = i % 2 == 0 ? stable_peer(rng() % kStableOut)
                                           : churn_peer(rng() % kChurnOut);
        src[i] = kLocalNet | (rng() & 0x00ffffff);
        dst[i] = peer.addr | (rng() & 0xff);
      }
      inst.lookup_outbound(src, dst, kB, out_sa);
      for (unsigned i = 0; i < kB; ++i) {
        if (out_sa[i] == nullptr) {
          if (i % 2 == 0) rs.lost_stable.fetch_add(1);
        } else if (!consistent(out_sa[i]) || !out_sa[i]->peer_subnet.contains(dst[i])) {
          rs.inconsistent.fetch_add(1);
        } else if (i % 2 == 1) {
          rs.churn_hits.fetch_add(1, std::memory_order_relaxed);
        }
      }
      for (int spin = 0; spin < 200; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
      for (unsigned i = 0; i < kB; ++i)
        if (out_sa[i] != nullptr && !consistent(out_sa[i])) rs.inconsistent.fetch_add(1);
      rcu.quiescent(kTid);
      rs.iterations.fetch_add(1, std::memory_order_relaxed);
    }
    rcu.offline(kTid);
    rcu.unregister_thread(kTid);
  });
  while (rs.iterations.load() == 0) std::this_thread::yield();

  std::mt19937 rng(5);
  std::vector<std::uint32_t> out_spi(kChurnOut, 0);
  std::uint32_t next_spi = 0x400000;
  unsigned ops = 0, waits = 0;
  const auto deadline = std::chrono::steady_clock::now() + kWallCap;
  // An add can find the table full while the previous compaction's table still waits for the
  // reader's grace period (spd.hpp): the control loop's next iterations reclaim it.
  auto add = [&](std::uint32_t spi, Ipv4Prefix peer) {
    for (;;) {
      auto r = inst.add_sa(make_spec(Direction::kOutbound, spi, {kLocalNet, 8}, peer));
      if (r) return true;
      if (r.error().find("grace period") == std::string::npos ||
          std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << r.error();
        return false;
      }
      ++waits;
      std::this_thread::yield();
      (void)inst.reclaim();
    }
  };
  for (; ops < kWriterOps && std::chrono::steady_clock::now() < deadline; ++ops) {
    const unsigned what = rng() % 8;
    if (what < 7) {
      const unsigned i = rng() % kChurnOut;
      if (out_spi[i] == 0 || rng() % 3 == 0) {  // new policy, or a rekey of one
        ASSERT_TRUE(add(next_spi, churn_peer(i)));
        out_spi[i] = next_spi++;
      } else {
        ASSERT_TRUE(inst.del_sa(Direction::kOutbound, out_spi[i]));
        out_spi[i] = 0;
      }
    } else {  // make-before-break rekey of a stable tunnel
      const unsigned i = rng() % kStableOut;
      ASSERT_TRUE(add(next_spi, stable_peer(i)));
      stable_spi[i] = next_spi++;
    }
    (void)inst.reclaim();
    if (ops % 64 == 0) std::this_thread::yield();
  }
  const auto it0 = rs.iterations.load();
  while (rs.iterations.load() < it0 + 10) std::this_thread::yield();
  stop = true;
  reader.join();
  std::printf("writer ops %u, SPD compactions %llu, adds that waited for a grace period %u; "
              "reader iterations %llu, churn hits %llu\n",
              ops, (unsigned long long)inst.spd_compactions(), waits,
              (unsigned long long)rs.iterations.load(), (unsigned long long)rs.churn_hits.load());
  EXPECT_GE(inst.spd_compactions(), 5u);  // the table was compacted under the reader
  EXPECT_EQ(rs.lost_stable.load(), 0u);
  EXPECT_EQ(rs.inconsistent.load(), 0u);
  EXPECT_GE(ops, kWriterOps / 10) << "no progress before the safety cap";
  expect_outbound_state(inst, out_spi, stable_spi);
  inst.drain();
  EXPECT_EQ(inst.pending_reclaims(), 0u);
}

// Real packets through looked-up SAs while the tunnel is rekeyed make-before-break, the way IKE
// does it: new inbound SA first, then the outbound re-point, and the old inbound SA deleted only
// once the reader has passed a grace period after the re-point. Every packet the reader encrypts
// through lookup_outbound must then find its inbound SA and decrypt back to the original bytes.
TEST(SaConcurrency, PacketsRoundTripThroughLookedUpSasWhileTheTunnelRekeys) {
  rte_mempool* pool = rte_pktmbuf_pool_create("sa_conc_pool", 511, 0, 0,
                                              2048 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
  ASSERT_NE(pool, nullptr);
  auto rcu_r = Rcu::create(2);
  ASSERT_TRUE(rcu_r);
  Rcu& rcu = **rcu_r;
  auto inst_r = DpSaInstaller::create(rcu, 64);
  ASSERT_TRUE(inst_r) << inst_r.error();
  DpSaInstaller& inst = **inst_r;

  // Our outbound SA for 10.1/16 -> 10.2/16 and, with the same SPI and keys, the inbound SA of
  // the receiving side (selectors mirrored), so our own packets come back through it.
  const Ipv4Prefix ours{0x0a010000, 16}, theirs{0x0a020000, 16};
  auto install_pair = [&](std::uint32_t spi) {
    auto inb = make_spec(Direction::kInbound, spi, theirs, ours);
    ASSERT_TRUE(inst.add_sa(std::move(inb)));                                         // first
    ASSERT_TRUE(inst.add_sa(make_spec(Direction::kOutbound, spi, ours, theirs)));     // then
  };
  std::uint32_t cur_spi = 0x500000;
  install_pair(cur_spi);

  std::atomic<bool> stop{false}, reader_ok{true};
  std::atomic<std::uint64_t> iterations{0}, round_trips{0}, lost{0}, out_fail{0}, in_fail{0},
      mismatch{0};
  constexpr unsigned kTid = 0;
  std::thread reader([&] {
    auto eng = crypto::EspEngine::create();
    if (!eng) {
      reader_ok = false;
      return;
    }
    crypto::EspEngine& engine = **eng;
    rcu.register_thread(kTid);
    rcu.online(kTid);
    std::mt19937 rng(3);
    constexpr unsigned kB = 8;
    LcoreStats st;
    while (!stop.load(std::memory_order_relaxed)) {
      rte_mbuf* ms[kB];
      testutil::Bytes inner[kB];
      Ipv4 src[kB], dst[kB];
      OutboundSa* sas[kB];
      for (unsigned i = 0; i < kB; ++i) {
        src[i] = ours.addr | (rng() & 0xffff);
        dst[i] = theirs.addr | (rng() & 0xffff);
        inner[i] = testutil::make_inner(20 + rng() % 200, src[i], dst[i], 0, false,
                                        static_cast<std::uint8_t>(rng()));
        ms[i] = rte_pktmbuf_alloc(pool);
        if (ms[i] == nullptr) {
          reader_ok = false;
          return;  // the test fails on reader_ok; the mbufs go with the pool
        }
        std::memcpy(rte_pktmbuf_append(ms[i], static_cast<std::uint16_t>(inner[i].size())),
                    inner[i].data(), inner[i].size());
      }
      inst.lookup_outbound(src, dst, kB, sas);
      unsigned n = 0;
      for (unsigned i = 0; i < kB; ++i)
        if (sas[i] == nullptr) lost.fetch_add(1);
        else ++n;
      std::uint16_t good = n == kB ? esp_outbound(engine, {ms, kB}, {sas, kB}, st) : 0;
      out_fail.fetch_add(kB - good);
      // Look up each packet's inbound SA by the SPI on the wire.
      InboundSa* in_sas[kB] = {};
      std::uint32_t spis[kB];
      for (unsigned i = 0; i < good; ++i) {
        EspInboundInfo info;
        DropReason why;
        spis[i] = esp_inbound_parse(ms[i], &info, &why) ? info.spi : 0;
      }
      if (good > 0) inst.lookup_inbound(spis, good, in_sas);
      unsigned have = 0;
      for (unsigned i = 0; i < good; ++i)
        if (in_sas[i] == nullptr) lost.fetch_add(1);
        else ++have;
      std::uint16_t back = have == good && good > 0
                               ? esp_inbound(engine, {ms, good}, {in_sas, good}, st)
                               : 0;
      in_fail.fetch_add(good - back);
      for (unsigned i = 0; i < back; ++i) {
        // Packets keep their order within a burst (burst contract), so ms[i] is inner[i].
        if (testutil::to_bytes(ms[i]) != inner[i]) mismatch.fetch_add(1);
        else round_trips.fetch_add(1, std::memory_order_relaxed);
      }
      for (unsigned i = 0; i < kB; ++i) rte_pktmbuf_free(ms[i]);
      rcu.quiescent(kTid);
      iterations.fetch_add(1, std::memory_order_relaxed);
    }
    rcu.offline(kTid);
    rcu.unregister_thread(kTid);
  });
  while (iterations.load() == 0 && reader_ok.load()) std::this_thread::yield();

  const auto deadline = std::chrono::steady_clock::now() + kWallCap;
  unsigned rekeys = 0;
  for (; rekeys < kRekeys && std::chrono::steady_clock::now() < deadline; ++rekeys) {
    const std::uint32_t old_spi = cur_spi;
    cur_spi = old_spi + 1;
    install_pair(cur_spi);  // re-points the tunnel; the old outbound SA waits for the reader
    // Once the old outbound SA is reclaimed, no packet encrypted under it is in flight in the
    // reader any more: now the old inbound SA can go (IKE deletes it seconds later).
    while (inst.pending_reclaims() != 0 && std::chrono::steady_clock::now() < deadline) {
      inst.reclaim();
      std::this_thread::yield();
    }
    ASSERT_TRUE(inst.del_sa(Direction::kInbound, old_spi));
    inst.reclaim();
  }
  const auto it0 = iterations.load();
  while (iterations.load() < it0 + 5 && reader_ok.load()) std::this_thread::yield();
  stop = true;
  reader.join();
  inst.drain();
  std::printf("rekeys %u, reader iterations %llu, round trips %llu\n", rekeys,
              (unsigned long long)iterations.load(), (unsigned long long)round_trips.load());
  EXPECT_TRUE(reader_ok.load());
  EXPECT_GE(rekeys, kRekeys / 10) << "no progress before the safety cap";
  EXPECT_EQ(lost.load(), 0u);
  EXPECT_EQ(out_fail.load(), 0u);
  EXPECT_EQ(in_fail.load(), 0u);
  EXPECT_EQ(mismatch.load(), 0u);
  EXPECT_GT(round_trips.load(), 0u);
  inst_r.value().reset();  // SAs freed before the pool
  EXPECT_EQ(rte_mempool_in_use_count(pool), 0u);
  rte_mempool_free(pool);
}

}  // namespace
}  // namespace ipsecgw::dp
