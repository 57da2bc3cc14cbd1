// DpSaInstaller / Rcu: inbound SPI table, outbound SPD (most specific policy wins), rekey
// re-pointing, RCU-deferred freeing, SPI allocation, validation errors and events.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "dataplane/sa_events.hpp"
#include "dataplane/sa_table.hpp"
#include "dataplane/spd.hpp"
#include "tests/dataplane/sa_table_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using testutil::make_spec;
using testutil::sa_is_live;

class SaTable : public testutil::InstallerTest<256> {
 protected:
  InboundSa* in(std::uint32_t spi) {
    InboundSa* out = nullptr;
    inst_->lookup_inbound(&spi, 1, &out);
    return out;
  }
  OutboundSa* out(Ipv4 src, Ipv4 dst) {
    OutboundSa* o = nullptr;
    inst_->lookup_outbound(&src, &dst, 1, &o);
    return o;
  }
};

TEST_F(SaTable, InboundAddLookupDelete) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x1000)));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x2000)));
  std::uint32_t spis[3] = {0x2000, 0x3000, 0x1000};
  InboundSa* res[3];
  inst_->lookup_inbound(spis, 3, res);
  EXPECT_TRUE(sa_is_live(res[0], 0x2000));
  EXPECT_EQ(res[1], nullptr);
  EXPECT_TRUE(sa_is_live(res[2], 0x1000));
  EXPECT_EQ(res[2]->dir, Direction::kInbound);

  ASSERT_TRUE(inst_->del_sa(Direction::kInbound, 0x1000));
  EXPECT_EQ(in(0x1000), nullptr);
  EXPECT_TRUE(sa_is_live(in(0x2000), 0x2000));
  EXPECT_EQ(inst_->reclaim(), 1u);  // no reader registered: the grace period is immediate
  EXPECT_FALSE(inst_->query_sa(Direction::kInbound, 0x1000));
  EXPECT_TRUE(inst_->query_sa(Direction::kInbound, 0x2000));

  // The freed key position is reusable: the same SPI can come back.
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x1000)));
  EXPECT_TRUE(sa_is_live(in(0x1000), 0x1000));
}

TEST_F(SaTable, UnknownSpiLooksUpAsNull) {
  EXPECT_EQ(in(0x1234), nullptr);
  std::vector<std::uint32_t> spis(64);
  for (unsigned i = 0; i < 64; ++i) spis[i] = 0x5000 + i;
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x5000 + 7)));
  std::vector<InboundSa*> res(64, reinterpret_cast<InboundSa*>(1));
  inst_->lookup_inbound(spis.data(), 64, res.data());
  for (unsigned i = 0; i < 64; ++i) {
    if (i == 7) EXPECT_TRUE(sa_is_live(res[i], 0x5007));
    else EXPECT_EQ(res[i], nullptr) << i;
  }
}

// The worker's SPI cache (InboundSaCache) returns what the hash returns, serves repeated SPIs
// without the hash, and never returns an SA that was deleted or replaced, although the old SA is
// still alive (a reader is online, so nothing is freed): only the generation bump stops it.
TEST_F(SaTable, InboundCacheAgreesWithTheHashAndForgetsDeletedAndReplacedSas) {
  rcu_->register_thread(0);
  rcu_->online(0);
  struct Offline {
    Rcu& r;
    ~Offline() {
      r.offline(0);
      r.unregister_thread(0);
    }
  } offline{*rcu_};
  // Two SPIs sharing a cache slot, and a third elsewhere.
  const std::uint32_t a = 0x1000;
  std::uint32_t b = a + 1;
  while (InboundSaCache::slot(b) != InboundSaCache::slot(a)) ++b;
  std::uint32_t c = b + 1;
  while (InboundSaCache::slot(c) == InboundSaCache::slot(a)) ++c;
  for (std::uint32_t spi : {a, b, c}) ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, spi)));
  auto cache = std::make_unique<InboundSaCache>();
  auto agree = [&](std::vector<std::uint32_t> spis) {
    std::vector<InboundSa*> hashed(spis.size()), cached(spis.size());
    inst_->lookup_inbound(spis.data(), static_cast<unsigned>(spis.size()), hashed.data());
    inst_->lookup_inbound(spis.data(), static_cast<unsigned>(spis.size()), cached.data(), *cache);
    for (std::size_t i = 0; i < spis.size(); ++i) {
      EXPECT_EQ(cached[i], hashed[i]) << "spi " << std::hex << spis[i];
      if (hashed[i] != nullptr) {
        EXPECT_TRUE(sa_is_live(cached[i], spis[i]));
      }
    }
    return cached;
  };
  const std::uint32_t unknown = 0x7777;
  auto first = agree({a, c, unknown, c});
  EXPECT_EQ(cache->misses, 4u);  // all from the hash; the unknown SPI is not cached
  agree({a, c, unknown});
  EXPECT_EQ(cache->misses, 5u);  // a and c hit; the unknown SPI goes to the hash again
  for (std::uint32_t spi : {b, a, b}) agree({spi});  // one slot: each evicts the other
  EXPECT_EQ(cache->misses, 8u);

  // Replaced (same SPI and connection: a static rekey): the new SA, never the old one.
  InboundSa* old_a = first[0];
  const std::uint64_t gen = inst_->inbound_generation();
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, a)));
  EXPECT_EQ(inst_->inbound_generation(), gen + 1);
  EXPECT_EQ(inst_->reclaim(), 0u);  // a reader is online: the old SA stays allocated
  auto after = agree({a, c});
  EXPECT_NE(after[0], old_a);
  // Deleted: not found any more, though it is still allocated.
  ASSERT_TRUE(inst_->del_sa(Direction::kInbound, c));
  EXPECT_EQ(inst_->reclaim(), 0u);
  auto gone = agree({c, a});
  EXPECT_EQ(gone[0], nullptr);
  EXPECT_EQ(gone[1], after[0]);

  // The same cache used with another installer (the same SPI there): that installer's SA.
  auto other = DpSaInstaller::create(*rcu_, 16);
  ASSERT_TRUE(other) << other.error();
  ASSERT_TRUE((*other)->add_sa(make_spec(Direction::kInbound, a)));
  InboundSa* theirs = nullptr;
  InboundSa* via_cache = nullptr;
  (*other)->lookup_inbound(&a, 1, &theirs);
  (*other)->lookup_inbound(&a, 1, &via_cache, *cache);
  EXPECT_EQ(via_cache, theirs);
  EXPECT_NE(via_cache, after[0]);
  rcu_->offline(0);  // both installers' destructors wait for the online readers
  (*other).reset();
  rcu_->online(0);
}

TEST_F(SaTable, DeleteUnknownSpiNamesTheSpi) {
  auto r = inst_->del_sa(Direction::kInbound, 0x4242);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("spi"), std::string::npos) << r.error();
  r = inst_->del_sa(Direction::kOutbound, 0x4242);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("spi"), std::string::npos) << r.error();
}

TEST_F(SaTable, InboundReplaceWithSameSpiSwapsTheSa) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x1000, {}, {}, 7)));
  InboundSa* first = in(0x1000);
  ASSERT_NE(first, nullptr);
  auto spec = make_spec(Direction::kInbound, 0x1000, {}, {}, 7);
  spec.replay_window = 128;
  ASSERT_TRUE(inst_->add_sa(std::move(spec)));
  InboundSa* second = in(0x1000);
  ASSERT_TRUE(sa_is_live(second, 0x1000));
  EXPECT_NE(first, second);
  EXPECT_EQ(inst_->all_sas().size(), 1u);
  EXPECT_EQ(inst_->reclaim(), 1u);  // the old one

  // Another connection may not take over an installed SPI.
  auto r = inst_->add_sa(make_spec(Direction::kInbound, 0x1000, {}, {}, 8));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("spi"), std::string::npos) << r.error();
  EXPECT_EQ(in(0x1000), second);
}

constexpr Ipv4 ip(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

TEST_F(SaTable, OutboundMostSpecificPolicyWins) {
  // No policy: every lookup misses.
  EXPECT_EQ(out(ip(10, 1, 2, 3), ip(192, 168, 1, 5)), nullptr);
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x101, {ip(10, 0, 0, 0), 8},
                                      {ip(192, 168, 0, 0), 16})));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x102, {ip(10, 1, 0, 0), 16},
                                      {ip(192, 168, 0, 0), 16})));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x103, {ip(10, 0, 0, 0), 8},
                                      {ip(192, 168, 1, 0), 24})));
  // Longest peer (destination) prefix first ...
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 2, 3), ip(192, 168, 1, 5)), 0x103));
  // ... then the longest local (source) prefix.
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 2, 3), ip(192, 168, 2, 1)), 0x102));
  EXPECT_TRUE(sa_is_live(out(ip(10, 2, 0, 1), ip(192, 168, 2, 1)), 0x101));
  EXPECT_EQ(out(ip(172, 16, 0, 1), ip(192, 168, 2, 1)), nullptr);
  EXPECT_EQ(out(ip(10, 1, 2, 3), ip(8, 8, 8, 8)), nullptr);

  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x104, {0, 0}, {0, 0})));
  EXPECT_TRUE(sa_is_live(out(ip(172, 16, 0, 1), ip(8, 8, 8, 8)), 0x104));
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 2, 3), ip(192, 168, 1, 5)), 0x103));

  // Removing the /24 tunnel falls back to the next most specific one.
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x103));
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 2, 3), ip(192, 168, 1, 5)), 0x102));
  inst_->drain();
}

// Independent reference: a brute-force scan over the policies with the documented order.
TEST_F(SaTable, OutboundLookupMatchesBruteForceOverManyPolicies) {
  std::mt19937 rng(12345);
  std::vector<testutil::Pol> pols;
  std::set<std::tuple<Ipv4, int, Ipv4, int>> seen;
  auto rnd_prefix = [&](Ipv4 base) {
    std::uint8_t len = static_cast<std::uint8_t>(8 + rng() % 25);  // 8..32
    Ipv4Prefix p;
    p.len = len;
    p.addr = (base | (rng() & 0x0003ffff)) & p.mask();
    return p;
  };
  for (std::uint32_t i = 0; pols.size() < 200; ++i) {
    testutil::Pol p{rnd_prefix(ip(10, 0, 0, 0)), rnd_prefix(ip(172, 16, 0, 0)), 0x1000 + i};
    if (!seen.insert({p.l.addr, p.l.len, p.p.addr, p.p.len}).second) continue;
    pols.push_back(p);
    ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
  }
  constexpr unsigned kN = 20000;
  std::vector<Ipv4> src(kN), dst(kN);
  for (unsigned i = 0; i < kN; ++i) {
    // Runs of one (src, dst) pair, as bursts of one flow bring them (the lookup classifies a
    // run once), mixed with pairs that differ in one address only and fresh random pairs.
    const unsigned kind = rng() % 4;
    if (i != 0 && kind == 0) {
      src[i] = src[i - 1];
      dst[i] = dst[i - 1];
    } else if (i != 0 && kind == 1) {
      src[i] = src[i - 1];
      dst[i] = ip(172, 16, 0, 0) | (rng() & 0x0003ffff);
    } else {
      src[i] = ip(10, 0, 0, 0) | (rng() & 0x0003ffff);
      dst[i] = ip(172, 16, 0, 0) | (rng() & 0x0003ffff);
    }
  }
  std::vector<OutboundSa*> res(kN);
  inst_->lookup_outbound(src.data(), dst.data(), kN, res.data());  // chunks of 64 inside
  const unsigned hits = testutil::expect_lookups_match_brute_force(pols, src, dst, res);
  EXPECT_GT(hits, kN / 20);  // the sample exercises matches, not just misses
}

TEST_F(SaTable, OutboundRekeyRepointsToTheNewSa) {
  const Ipv4Prefix l{ip(10, 0, 0, 0), 8}, p{ip(192, 168, 0, 0), 16};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xa001, l, p)));
  EXPECT_TRUE(sa_is_live(out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), 0xa001));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xa002, l, p)));
  EXPECT_TRUE(sa_is_live(out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), 0xa002));
  // The previous SA is gone from the tables (and freed after the grace period).
  EXPECT_FALSE(inst_->query_sa(Direction::kOutbound, 0xa001));
  EXPECT_TRUE(inst_->query_sa(Direction::kOutbound, 0xa002));
  EXPECT_EQ(inst_->all_sas().size(), 1u);
  EXPECT_EQ(inst_->reclaim(), 1u);

  // An outbound SPI already used by other selectors is refused.
  auto r = inst_->add_sa(make_spec(Direction::kOutbound, 0xa002, l, {ip(192, 169, 0, 0), 16}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("spi"), std::string::npos) << r.error();

  // Deleting the current SA removes the policy.
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xa002));
  EXPECT_EQ(out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), nullptr);
  EXPECT_EQ(inst_->reclaim(), 3u);  // the SA, its policy slot, the previous SPD table
}

// A connection's MTU changes in place: same SA object (SPI, keys, sequence number), new MTU.
TEST_F(SaTable, SetOutboundMtuChangesTheInstalledSaInPlace) {
  const Ipv4Prefix l{ip(10, 0, 0, 0), 8}, p{ip(192, 168, 0, 0), 16};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xa001, l, p)));
  OutboundSa* sa = out(ip(10, 0, 0, 1), ip(192, 168, 0, 1));
  ASSERT_NE(sa, nullptr);
  sa->seq_next.store(42);
  const std::uint16_t before = sa->mtu.load();
  ASSERT_TRUE(inst_->set_outbound_mtu(0xa001, 1200));
  EXPECT_EQ(out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), sa);
  EXPECT_EQ(sa->mtu.load(), 1200);
  EXPECT_NE(before, 1200);
  EXPECT_EQ(sa->seq_next.load(), 42u);
  EXPECT_EQ(inst_->reclaim(), 0u);  // nothing replaced
  // Out of the SA's range, or no such SA: an error naming the field, nothing changed.
  auto r = inst_->set_outbound_mtu(0xa001, 100);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("mtu"), std::string::npos) << r.error();
  r = inst_->set_outbound_mtu(0xa002, 1300);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("spi"), std::string::npos) << r.error();
  EXPECT_EQ(sa->mtu.load(), 1200);
}

// A worker that looked an SA up and has not yet reported a quiescent state keeps it alive: the
// control thread's reclaim() frees nothing until the worker reports, then frees it.
TEST_F(SaTable, DeletedSaIsNotFreedBeforeTheReaderIsQuiescent) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x7777)));
  std::atomic<int> step{0};
  std::atomic<bool> live_while_held{false}, live_after_reclaim_attempts{false};
  std::thread reader([&] {
    rcu_->register_thread(1);
    rcu_->online(1);
    InboundSa* held = in(0x7777);
    live_while_held = sa_is_live(held, 0x7777);
    step = 1;
    while (step.load() != 2) std::this_thread::yield();
    // The writer has deleted it and tried to reclaim: the SA must be intact still.
    live_after_reclaim_attempts = sa_is_live(held, 0x7777);
    held = nullptr;
    rcu_->quiescent(1);
    step = 3;
    while (step.load() != 4) std::this_thread::yield();
    rcu_->offline(1);
    rcu_->unregister_thread(1);
  });
  while (step.load() != 1) std::this_thread::yield();
  ASSERT_TRUE(inst_->del_sa(Direction::kInbound, 0x7777));
  EXPECT_EQ(in(0x7777), nullptr);  // unlinked at once for new lookups
  unsigned early = 0;
  for (int i = 0; i < 100; ++i) early += inst_->reclaim();
  step = 2;
  while (step.load() != 3) std::this_thread::yield();
  const unsigned after = inst_->reclaim();
  step = 4;
  reader.join();
  EXPECT_TRUE(live_while_held.load());
  EXPECT_EQ(early, 0u);
  EXPECT_TRUE(live_after_reclaim_attempts.load());
  EXPECT_EQ(after, 1u);
}

// Same for an outbound rekey: the replaced SA survives while a reader holds it.
TEST_F(SaTable, ReplacedOutboundSaIsNotFreedBeforeTheReaderIsQuiescent) {
  const Ipv4Prefix l{ip(10, 0, 0, 0), 8}, p{ip(192, 168, 0, 0), 16};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xb001, l, p)));
  rcu_->register_thread(2);
  rcu_->online(2);
  OutboundSa* held = out(ip(10, 0, 0, 1), ip(192, 168, 0, 1));  // this thread acts as the reader too
  ASSERT_TRUE(sa_is_live(held, 0xb001));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xb002, l, p)));
  EXPECT_EQ(inst_->reclaim(), 0u);
  EXPECT_TRUE(sa_is_live(held, 0xb001));
  rcu_->quiescent(2);
  EXPECT_EQ(inst_->reclaim(), 1u);
  rcu_->offline(2);
  rcu_->unregister_thread(2);
}

TEST_F(SaTable, OfflineReaderDoesNotHoldUpReclaim) {
  rcu_->register_thread(0);
  rcu_->online(0);
  rcu_->offline(0);  // e.g. a worker sleeping on an empty queue
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x9999)));
  ASSERT_TRUE(inst_->del_sa(Direction::kInbound, 0x9999));
  EXPECT_EQ(inst_->reclaim(), 1u);
  rcu_->unregister_thread(0);
}

TEST_F(SaTable, AllocateSpiIsUniqueAndAtLeast256) {
  std::set<std::uint32_t> got;
  for (int i = 0; i < 500; ++i) {
    auto s = inst_->allocate_spi();
    ASSERT_TRUE(s) << s.error();
    EXPECT_GE(*s, 256u);
    EXPECT_TRUE(got.insert(*s).second) << "duplicate SPI " << *s;
  }
  // Installing an allocated SPI consumes the reservation; releasing the rest frees them.
  const std::uint32_t first = *got.begin();
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, first)));
  for (auto s : got) inst_->release_spi(s);
  for (int i = 0; i < 200; ++i) {
    auto s = inst_->allocate_spi();
    ASSERT_TRUE(s);
    EXPECT_NE(*s, first);  // installed SPIs are never handed out
    inst_->release_spi(*s);
  }
}

TEST_F(SaTable, TooManyOutstandingReservationsIsAnError) {
  bool failed = false;
  for (int i = 0; i < 10000 && !failed; ++i) {
    auto s = inst_->allocate_spi();
    if (!s) {
      failed = true;
      EXPECT_NE(s.error().find("spi"), std::string::npos) << s.error();
    }
  }
  EXPECT_TRUE(failed);
}

TEST_F(SaTable, InvalidSpecsAreRejectedNamingTheField) {
  auto expect_err = [&](SaSpec s, const char* field) {
    auto r = inst_->add_sa(std::move(s));
    ASSERT_FALSE(r) << field;
    EXPECT_NE(r.error().find(field), std::string::npos) << r.error();
  };
  expect_err(make_spec(Direction::kInbound, 255), "spi");
  expect_err(make_spec(Direction::kOutbound, 0), "spi");
  auto s = make_spec(Direction::kOutbound, 0x1000);
  s.local_addr = 0;
  expect_err(std::move(s), "local_addr");
  s = make_spec(Direction::kOutbound, 0x1000);
  s.peer_addr = 0;
  expect_err(std::move(s), "peer_addr");
  s = make_spec(Direction::kOutbound, 0x1000);
  s.mtu = 100;
  expect_err(std::move(s), "mtu");
  s = make_spec(Direction::kInbound, 0x1000);
  s.replay_window = 5000;
  expect_err(std::move(s), "replay_window");
  s = make_spec(Direction::kInbound, 0x1000);
  s.peer_subnet = {ip(192, 168, 1, 1), 24};  // host bits set
  expect_err(std::move(s), "peer_subnet");
  s = make_spec(Direction::kInbound, 0x1000);
  s.enc_key = crypto::SecureBytes(15);
  expect_err(std::move(s), "enc_key");
  // Nothing of the failed attempts got installed.
  EXPECT_TRUE(inst_->all_sas().empty());
  EXPECT_EQ(in(0x1000), nullptr);
  EXPECT_EQ(out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), nullptr);
}

TEST(SaTableCapacity, FullTablesRefuseNamingCapacity) {
  auto rcu = Rcu::create(1);
  ASSERT_TRUE(rcu);
  auto inst = DpSaInstaller::create(**rcu, 4);
  ASSERT_TRUE(inst) << inst.error();
  for (std::uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE((*inst)->add_sa(make_spec(Direction::kInbound, 0x100 + i)));
  auto r = (*inst)->add_sa(make_spec(Direction::kInbound, 0x200));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("capacity"), std::string::npos) << r.error();
  for (std::uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE((*inst)->add_sa(make_spec(Direction::kOutbound, 0x100 + i, {ip(10, 0, 0, 0), 8},
                                          {ip(172, 16, static_cast<unsigned>(i), 0), 24})));
  r = (*inst)->add_sa(make_spec(Direction::kOutbound, 0x200, {ip(10, 0, 0, 0), 8},
                                {ip(172, 17, 0, 0), 24}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("capacity"), std::string::npos) << r.error();
  auto bad = DpSaInstaller::create(**rcu, 0);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("capacity"), std::string::npos);
}

// A removed policy's entry stays in the SPD's table as a tombstone; when they fill it the table
// is compacted into a fresh one, and the old one is freed after its grace period. With a
// reader that never reports a quiescent state, policy churn fills the second table while the
// first still waits: the install is refused with an error naming the SPD (nothing
// half-installed, other tunnels keep working, memory held back is one table), and once the
// reader reports, the same install succeeds.
TEST(SaTableCapacity, PolicyChurnWithoutGracePeriodsFailsCleanlyThenRecovers) {
  auto rcu = Rcu::create(1);
  ASSERT_TRUE(rcu);
  auto inst_r = DpSaInstaller::create(**rcu, 4);
  ASSERT_TRUE(inst_r) << inst_r.error();
  DpSaInstaller& inst = **inst_r;
  auto out = [&inst](Ipv4 src, Ipv4 dst) {
    OutboundSa* o = nullptr;
    inst.lookup_outbound(&src, &dst, 1, &o);
    return o;
  };
  const Ipv4Prefix local{ip(10, 0, 0, 0), 8};
  ASSERT_TRUE(inst.add_sa(make_spec(Direction::kOutbound, 0x100, local, {ip(172, 16, 0, 0), 24})));
  (*rcu)->register_thread(0);
  (*rcu)->online(0);  // this thread is a reader that never reports
  struct Offline {    // also when an assertion returns early: drain() would wait for us
    Rcu& rcu;
    ~Offline() {
      rcu.offline(0);
      rcu.unregister_thread(0);
    }
  } offline{**rcu};
  Result<void> r;
  unsigned cycles = 0;
  for (; cycles < 1000; ++cycles) {
    r = inst.add_sa(make_spec(Direction::kOutbound, 0x1000 + cycles, local,
                              {ip(172, 17, cycles % 256, 0), 24}));
    if (!r) break;
    ASSERT_TRUE(inst.del_sa(Direction::kOutbound, 0x1000 + cycles));
    inst.reclaim();  // frees nothing: the reader holds every grace period
  }
  ASSERT_FALSE(r) << "1000 policy add/remove cycles and the SPD never filled up";
  EXPECT_NE(r.error().find("spd"), std::string::npos) << r.error();
  EXPECT_FALSE(inst.query_sa(Direction::kOutbound, 0x1000 + cycles));  // nothing half-installed
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 1, 1), ip(172, 16, 0, 9)), 0x100));
  (*rcu)->quiescent(0);
  EXPECT_GT(inst.reclaim(), 0u);
  EXPECT_TRUE(inst.add_sa(make_spec(Direction::kOutbound, 0x1000 + cycles, local,
                                    {ip(172, 17, cycles % 256, 0), 24})));
  EXPECT_TRUE(sa_is_live(out(ip(10, 1, 1, 1), ip(172, 17, cycles % 256, 9)),
                         0x1000 + cycles));
}

TEST_F(SaTable, PollEventsReportsAndClearsWorkerFlags) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x3001, {}, {}, 11)));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x3002, {ip(10, 0, 0, 0), 8},
                                      {ip(192, 168, 0, 0), 16}, 12)));
  EXPECT_TRUE(inst_->poll_events().empty());
  // As the workers raise them (dataplane/sa_events.hpp: poll_events walks only after one).
  raise_sa_event(*in(0x3001), kEvSoftLimit);
  raise_sa_event(*out(ip(10, 0, 0, 1), ip(192, 168, 0, 1)), kEvSeqExhausted | kEvHardLimit);
  auto ev = inst_->poll_events();
  ASSERT_EQ(ev.size(), 3u);
  std::sort(ev.begin(), ev.end(), [](const SaEvent& a, const SaEvent& b) {
    return std::tie(a.spi, a.kind) < std::tie(b.spi, b.kind);
  });
  EXPECT_EQ(ev[0].kind, SaEventKind::kSoftLimit);
  EXPECT_EQ(ev[0].spi, 0x3001u);
  EXPECT_EQ(ev[0].dir, Direction::kInbound);
  EXPECT_EQ(ev[0].conn_id, 11u);
  EXPECT_EQ(ev[1].kind, SaEventKind::kSeqExhausted);
  EXPECT_EQ(ev[1].spi, 0x3002u);
  EXPECT_EQ(ev[1].dir, Direction::kOutbound);
  EXPECT_EQ(ev[1].conn_id, 12u);
  EXPECT_EQ(ev[2].kind, SaEventKind::kHardLimit);
  EXPECT_TRUE(inst_->poll_events().empty());  // flags were cleared
}

TEST_F(SaTable, QuerySaReadsTheWorkersCounters) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kInbound, 0x4001)));
  InboundSa* sa = in(0x4001);
  sa->counters.packets.fetch_add(5);
  sa->counters.bytes.fetch_add(700);
  sa->counters.drops[static_cast<unsigned>(DropReason::kReplay)].fetch_add(2);
  auto c = inst_->query_sa(Direction::kInbound, 0x4001);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->packets, 5u);
  EXPECT_EQ(c->bytes, 700u);
  EXPECT_EQ(c->drops[static_cast<unsigned>(DropReason::kReplay)], 2u);
  EXPECT_FALSE(inst_->query_sa(Direction::kOutbound, 0x4001));
}

// ---- trap policies (SaInstaller::install_trap) ----

class SaTableTrap : public SaTable {
 protected:
  // One lookup through the policy-returning variant: {SA, policy}.
  std::pair<OutboundSa*, PolicySlot*> pol(Ipv4 src, Ipv4 dst) {
    OutboundSa* o = reinterpret_cast<OutboundSa*>(1);
    PolicySlot* p = reinterpret_cast<PolicySlot*>(1);
    inst_->lookup_outbound(&src, &dst, 1, &o, &p);
    return {o, p};
  }
  std::vector<SaEvent> acquires() {
    std::vector<SaEvent> v;
    for (const auto& e : inst_->poll_events())
      if (e.kind == SaEventKind::kAcquire) v.push_back(e);
    return v;
  }
  static constexpr Ipv4Prefix kLocal{0x0a000000, 8};    // 10/8
  static constexpr Ipv4Prefix kPeer{0xc0a80000, 16};    // 192.168/16
  static constexpr Ipv4 kSrc = 0x0a000001, kDst = 0xc0a80001;
};

TEST_F(SaTableTrap, TrapMatchesWithoutSaWhileUnmatchedTrafficHasNoPolicy) {
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  auto [sa, p] = pol(kSrc, kDst);
  EXPECT_EQ(sa, nullptr);
  ASSERT_NE(p, nullptr);  // trapped, not "no policy"
  EXPECT_EQ(p->local_subnet, kLocal);
  EXPECT_EQ(p->peer_subnet, kPeer);
  auto [sa2, p2] = pol(0x0b000001, kDst);  // outside the selectors
  EXPECT_EQ(sa2, nullptr);
  EXPECT_EQ(p2, nullptr);
  EXPECT_EQ(out(kSrc, kDst), nullptr);  // the plain lookup still reports "no SA"
}

TEST_F(SaTableTrap, OutboundSaFillsTheTrapAndItsDeleteLeavesTheTrap) {
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  PolicySlot* trap = pol(kSrc, kDst).second;
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4001, kLocal, kPeer, 7)));
  auto [sa, p] = pol(kSrc, kDst);
  EXPECT_TRUE(sa_is_live(sa, 0x4001));
  EXPECT_EQ(p, nullptr);  // a policy with an SA: the lookup gives the SA, not the policy
  EXPECT_EQ(inst_->find_policy(kLocal, kPeer), trap);  // re-pointed, not a new policy
  // A rekey re-points; DPD hold / expiry / peer Delete removes the SA: the trap stays.
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4002, kLocal, kPeer, 7)));
  EXPECT_TRUE(sa_is_live(pol(kSrc, kDst).first, 0x4002));
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x4002));
  auto [sa3, p3] = pol(kSrc, kDst);
  EXPECT_EQ(sa3, nullptr);
  EXPECT_EQ(p3, trap);
  EXPECT_FALSE(inst_->query_sa(Direction::kOutbound, 0x4002));
  EXPECT_EQ(inst_->reclaim(), 2u);  // both SAs freed, the policy slot is not
  // A new negotiation fills the same trap again.
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4003, kLocal, kPeer, 7)));
  EXPECT_TRUE(sa_is_live(pol(kSrc, kDst).first, 0x4003));
  EXPECT_EQ(inst_->find_policy(kLocal, kPeer), trap);
}

TEST_F(SaTableTrap, WithoutTrapDeletingTheSaRemovesThePolicy) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4001, kLocal, kPeer, 7)));
  ASSERT_NE(inst_->find_policy(kLocal, kPeer), nullptr);
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x4001));
  auto [sa, p] = pol(kSrc, kDst);
  EXPECT_EQ(sa, nullptr);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(inst_->find_policy(kLocal, kPeer), nullptr);
}

TEST_F(SaTableTrap, TrapOverAnInstalledSaSurvivesItsDelete) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4001, kLocal, kPeer, 7)));
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  EXPECT_TRUE(sa_is_live(pol(kSrc, kDst).first, 0x4001));  // the SA keeps carrying traffic
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x4001));
  auto [sa, p] = pol(kSrc, kDst);
  EXPECT_EQ(sa, nullptr);
  EXPECT_NE(p, nullptr);
}

TEST_F(SaTableTrap, RemoveTrapRemovesAnEmptyPolicyButNotAnInstalledSa) {
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  ASSERT_TRUE(inst_->remove_trap(7));
  EXPECT_EQ(pol(kSrc, kDst).second, nullptr);
  EXPECT_FALSE(inst_->remove_trap(7));  // nothing left to remove

  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x4001, kLocal, kPeer, 7)));
  ASSERT_TRUE(inst_->remove_trap(7));
  EXPECT_TRUE(sa_is_live(pol(kSrc, kDst).first, 0x4001));
  // No longer trapped: the SA's delete now takes the policy with it.
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x4001));
  EXPECT_EQ(pol(kSrc, kDst).second, nullptr);
}

TEST_F(SaTableTrap, SelectorsTrappedByAnotherConnectionAreRefused) {
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));  // idempotent
  auto r = inst_->install_trap(8, kLocal, kPeer);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("trapped by connection 7"), std::string::npos) << r.error();
  EXPECT_FALSE(inst_->install_trap(9, {0x0a000001, 8}, kPeer));  // host bits set
  // Re-installing with other selectors moves the connection's trap.
  ASSERT_TRUE(inst_->install_trap(7, {0x0a010000, 16}, kPeer));
  EXPECT_EQ(pol(0x0a020001, kDst).second, nullptr);
  EXPECT_NE(pol(0x0a010001, kDst).second, nullptr);
}

TEST_F(SaTableTrap, AcquireIsRaisedOncePerIntervalAndReportedOnce) {
  ASSERT_TRUE(inst_->install_trap(7, kLocal, kPeer));
  PolicySlot* p = pol(kSrc, kDst).second;
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(acquires().empty());
  const std::uint64_t iv = inst_->acquire_interval();
  ASSERT_GT(iv, 1u);
  const std::uint64_t t0 = 1000;
  inst_->raise_acquire(p, t0);
  inst_->raise_acquire(p, t0 + 1);  // same interval: no second event
  auto ev = acquires();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, SaEventKind::kAcquire);
  EXPECT_EQ(ev[0].conn_id, 7u);
  EXPECT_EQ(ev[0].spi, 0u);
  EXPECT_EQ(ev[0].dir, Direction::kOutbound);
  EXPECT_TRUE(acquires().empty());  // taken by the poll
  inst_->raise_acquire(p, t0 + iv - 1);
  EXPECT_TRUE(acquires().empty());  // still inside the interval
  inst_->raise_acquire(p, t0 + iv);
  EXPECT_EQ(acquires().size(), 1u);
}


}  // namespace
}  // namespace ipsecgw::dp
