// Batched SA installs (DpSaInstaller::begin_batch / commit_batch): one SPD build per
// batch, lookups after batched installs and removals cross-checked against a brute-force scan,
// the previous table serving until the commit, and RCU-deferred freeing of what a batch removed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "dataplane/sa_table.hpp"
#include "dataplane/spd.hpp"
#include "tests/dataplane/sa_table_test_util.hpp"

namespace ipsecgw::dp {
namespace {

using testutil::make_spec;
using testutil::sa_is_live;

constexpr Ipv4 ip(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

using testutil::Pol;

class SpdBatch : public testutil::InstallerTest<4096> {
 protected:
  OutboundSa* out(Ipv4 src, Ipv4 dst) {
    OutboundSa* o = nullptr;
    inst_->lookup_outbound(&src, &dst, 1, &o);
    return o;
  }
  std::pair<OutboundSa*, PolicySlot*> pol(Ipv4 src, Ipv4 dst) {
    OutboundSa* o = nullptr;
    PolicySlot* p = nullptr;
    inst_->lookup_outbound(&src, &dst, 1, &o, &p);
    return {o, p};
  }
  // Random distinct policies: 10.0/14-ish locals and 172.16/14-ish peers, lengths 8..32.
  std::vector<Pol> random_policies(std::mt19937& rng, unsigned n, std::uint32_t spi0) {
    std::vector<Pol> v;
    std::set<std::tuple<Ipv4, int, Ipv4, int>> seen;
    auto rnd_prefix = [&](Ipv4 base) {
      Ipv4Prefix p;
      p.len = static_cast<std::uint8_t>(8 + rng() % 25);
      p.addr = (base | (rng() & 0x0003ffff)) & p.mask();
      return p;
    };
    for (std::uint32_t i = 0; v.size() < n; ++i) {
      Pol p{rnd_prefix(ip(10, 0, 0, 0)), rnd_prefix(ip(172, 16, 0, 0)), spi0 + i};
      if (seen.insert({p.l.addr, p.l.len, p.p.addr, p.p.len}).second) v.push_back(p);
    }
    return v;
  }
  // Every lookup of a random sample (and of an address inside each policy) against the
  // documented order: longest peer prefix, then longest local prefix.
  void expect_matches_brute_force(const std::vector<Pol>& pols, std::mt19937& rng) {
    std::vector<Ipv4> src, dst;
    for (unsigned i = 0; i < 8000; ++i) {
      src.push_back(ip(10, 0, 0, 0) | (rng() & 0x0003ffff));
      dst.push_back(ip(172, 16, 0, 0) | (rng() & 0x0003ffff));
    }
    for (const Pol& p : pols) {
      src.push_back(p.l.addr | (rng() & ~p.l.mask()));
      dst.push_back(p.p.addr | (rng() & ~p.p.mask()));
    }
    std::vector<OutboundSa*> res(src.size());
    inst_->lookup_outbound(src.data(), dst.data(), static_cast<unsigned>(src.size()), res.data());
    const unsigned hits = testutil::expect_lookups_match_brute_force(pols, src, dst, res);
    EXPECT_GE(hits, pols.size());
  }
};

// Installs, removals and re-installs in batches; after every commit the SPD answers exactly as
// the brute-force scan over what is installed.
TEST_F(SpdBatch, LookupsAfterBatchedInstallsAndRemovalsMatchBruteForce) {
  std::mt19937 rng(4242);
  std::vector<Pol> pols = random_policies(rng, 600, 0x10000);
  inst_->begin_batch();
  for (const Pol& p : pols)
    ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
  ASSERT_TRUE(inst_->commit_batch());
  expect_matches_brute_force(pols, rng);

  // Remove a random third and add 200 new ones in one batch.
  std::shuffle(pols.begin(), pols.end(), rng);
  std::vector<Pol> kept(pols.begin() + 200, pols.end());
  std::vector<Pol> fresh = random_policies(rng, 400, 0x20000);
  inst_->begin_batch();
  for (unsigned i = 0; i < 200; ++i) ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, pols[i].spi));
  std::set<std::tuple<Ipv4, int, Ipv4, int>> present;
  for (const Pol& p : kept) present.insert({p.l.addr, p.l.len, p.p.addr, p.p.len});
  unsigned added = 0;
  for (const Pol& p : fresh) {
    if (added == 200 || !present.insert({p.l.addr, p.l.len, p.p.addr, p.p.len}).second) continue;
    ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
    kept.push_back(p);
    ++added;
  }
  ASSERT_TRUE(inst_->commit_batch());
  expect_matches_brute_force(kept, rng);
  inst_->drain();
}

// Unbatched installs, removals and rekeys in random order (as IKE brings tunnels up and down
// one at a time), over overlapping policies of every prefix length 0..32 in a small address
// space, so that many prefix-length classes and many nested policies are in use at once: after
// every few changes the SPD answers exactly as the brute-force scan over what is installed.
TEST_F(SpdBatch, IncrementalChangesMatchBruteForce) {
  std::mt19937 rng(777);
  // Addresses in 10.0.0.0/20 and 172.16.0.0/20; lengths 0..32, biased to 12..32 so policies
  // nest and overlap.
  auto rnd_prefix = [&](Ipv4 base) {
    Ipv4Prefix p;
    const unsigned r = rng() % 40;
    p.len = static_cast<std::uint8_t>(r < 7 ? r * 2 : 12 + (r - 7) % 21);
    p.addr = (base | (rng() & 0x00000fff)) & p.mask();
    return p;
  };
  std::vector<Pol> live;
  std::set<std::tuple<Ipv4, int, Ipv4, int>> present;
  std::uint32_t next_spi = 0x30000;
  auto check = [&] {
    std::vector<Ipv4> src, dst;
    for (unsigned i = 0; i < 1500; ++i) {
      src.push_back(ip(10, 0, 0, 0) | (rng() & 0x00000fff));
      dst.push_back(ip(172, 16, 0, 0) | (rng() & 0x00000fff));
    }
    for (const Pol& p : live) {  // a packet inside every policy, often shadowed by a longer one
      src.push_back(p.l.addr | (rng() & ~p.l.mask() & 0x00000fff));
      dst.push_back(p.p.addr | (rng() & ~p.p.mask() & 0x00000fff));
    }
    std::vector<OutboundSa*> res(src.size());
    inst_->lookup_outbound(src.data(), dst.data(), static_cast<unsigned>(src.size()), res.data());
    testutil::expect_lookups_match_brute_force(live, src, dst, res);
  };
  unsigned adds = 0, dels = 0, rekeys = 0;
  for (unsigned op = 0; op < 3000 && !HasFailure(); ++op) {
    const unsigned what = rng() % 10;
    if (live.empty() || what < 5) {
      Pol p{rnd_prefix(ip(10, 0, 0, 0)), rnd_prefix(ip(172, 16, 0, 0)), next_spi++};
      if (!present.insert({p.l.addr, p.l.len, p.p.addr, p.p.len}).second) continue;
      ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
      live.push_back(p);
      ++adds;
    } else if (what < 8) {
      const std::size_t i = rng() % live.size();
      ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, live[i].spi));
      present.erase({live[i].l.addr, live[i].l.len, live[i].p.addr, live[i].p.len});
      live[i] = live.back();
      live.pop_back();
      ++dels;
    } else {
      Pol& p = live[rng() % live.size()];
      p.spi = next_spi++;
      ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
      ++rekeys;
    }
    inst_->reclaim();  // as the control loop does: removed keys' hash slots are reused
    if (op % 50 == 0) check();
  }
  check();
  EXPECT_GT(dels, 500u);
  EXPECT_GT(rekeys, 200u);
  EXPECT_GT(live.size(), 300u);
  (void)adds;
  inst_->drain();
}

// A tunnel brought up or down outside a batch is one hash operation: nothing is published
// (no table replaced) when its prefix-length class is already in use, so the cost of an
// install does not depend on how many tunnels there are. The rte_acl SPD rebuilt and
// republished its whole table on each.
TEST_F(SpdBatch, UnbatchedInstallInAClassInUsePublishesNothing) {
  auto tunnel = [](unsigned i) {
    return std::pair<Ipv4Prefix, Ipv4Prefix>{{ip(10, 0, 0, 0) | (i << 8), 24},
                                             {ip(172, 16, 0, 0) | (i << 8), 24}};
  };
  inst_->begin_batch();
  for (unsigned i = 0; i < 100; ++i)
    ASSERT_TRUE(inst_->add_sa(
        make_spec(Direction::kOutbound, 0x100 + i, tunnel(i).first, tunnel(i).second)));
  ASSERT_TRUE(inst_->commit_batch());
  inst_->drain();
  ASSERT_EQ(inst_->pending_reclaims(), 0u);
  for (unsigned i = 100; i < 200; ++i) {
    ASSERT_TRUE(inst_->add_sa(
        make_spec(Direction::kOutbound, 0x100 + i, tunnel(i).first, tunnel(i).second)));
    ASSERT_EQ(inst_->pending_reclaims(), 0u) << i;
    EXPECT_TRUE(sa_is_live(out(ip(10, 0, i, 7), ip(172, 16, i, 9)), 0x100 + i));  // at once
  }
  // A removal defers the SA and its policy slot, nothing else.
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0x100 + 150));
  EXPECT_EQ(inst_->pending_reclaims(), 2u);
  EXPECT_EQ(out(ip(10, 0, 150, 7), ip(172, 16, 150, 9)), nullptr);
  EXPECT_TRUE(sa_is_live(out(ip(10, 0, 151, 7), ip(172, 16, 151, 9)), 0x100 + 151));
  inst_->drain();
}

// A tunnel removed and re-added with the same selectors in one batch is re-pointed in place:
// until the commit its packets are held (old slot, no SA), after it they take the new SA.
TEST_F(SpdBatch, RemoveAndReAddInOneBatchRepointsInPlace) {
  const Ipv4Prefix l{ip(10, 5, 0, 0), 16}, p{ip(172, 16, 5, 0), 24};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xe100, l, p)));
  inst_->drain();
  const PolicySlot* before = inst_->find_policy(l, p);
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(pol(ip(10, 5, 0, 1), ip(172, 16, 5, 1)).second, nullptr);  // an SA, not a trap
  inst_->begin_batch();
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xe100));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xe200, l, p)));
  auto [sa, slot] = pol(ip(10, 5, 0, 1), ip(172, 16, 5, 1));
  EXPECT_EQ(sa, nullptr);
  EXPECT_EQ(slot, before);
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_TRUE(sa_is_live(pol(ip(10, 5, 0, 1), ip(172, 16, 5, 1)).first, 0xe200));
  EXPECT_NE(inst_->find_policy(l, p), nullptr);
  EXPECT_EQ(inst_->reclaim(), 2u);  // the old SA and the old slot; the class list stays
}

// A batch publishes at most one lookup structure per commit, not one per install: here the
// list of prefix-length classes in use (the 300 random policies bring new classes), handed to
// the reclaimer when replaced, so the count of deferred frees shows it.
TEST_F(SpdBatch, OneCommitPublishesOneTable) {
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0x500, {ip(10, 9, 0, 0), 16},
                                      {ip(172, 31, 0, 0), 16})));
  inst_->drain();
  ASSERT_EQ(inst_->pending_reclaims(), 0u);
  std::mt19937 rng(7);
  const std::vector<Pol> pols = random_policies(rng, 300, 0x1000);
  inst_->begin_batch();
  for (const Pol& p : pols)
    ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, p.spi, p.l, p.p)));
  EXPECT_EQ(inst_->pending_reclaims(), 0u);  // nothing published yet
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_EQ(inst_->pending_reclaims(), 1u);  // the one class list the commit replaced
  inst_->drain();
}

// Until the commit the previous table serves: a new tunnel does not match yet; a removed one
// still matches its policy but with no SA (held as trapped, never forwarded in the clear).
TEST_F(SpdBatch, PreviousTableServesUntilCommit) {
  const Ipv4Prefix la{ip(10, 1, 0, 0), 16}, pa{ip(172, 16, 1, 0), 24};
  const Ipv4Prefix lb{ip(10, 2, 0, 0), 16}, pb{ip(172, 16, 2, 0), 24};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xa100, la, pa)));
  inst_->begin_batch();
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xb100, lb, pb)));
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xa100));
  EXPECT_EQ(out(ip(10, 2, 0, 1), ip(172, 16, 2, 1)), nullptr);
  auto [sa, slot] = pol(ip(10, 1, 0, 1), ip(172, 16, 1, 1));
  EXPECT_EQ(sa, nullptr);
  EXPECT_NE(slot, nullptr);
  // Nested batches: only the outermost commit publishes.
  inst_->begin_batch();
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_EQ(out(ip(10, 2, 0, 1), ip(172, 16, 2, 1)), nullptr);
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_TRUE(sa_is_live(out(ip(10, 2, 0, 1), ip(172, 16, 2, 1)), 0xb100));
  auto [sa2, slot2] = pol(ip(10, 1, 0, 1), ip(172, 16, 1, 1));
  EXPECT_EQ(sa2, nullptr);
  EXPECT_EQ(slot2, nullptr);
  EXPECT_FALSE(inst_->commit_batch());  // no batch open
  inst_->drain();
}

// Traps installed and removed in a batch follow the same rules as SAs.
TEST_F(SpdBatch, TrapsInABatch) {
  const Ipv4Prefix l{ip(10, 3, 0, 0), 16}, p{ip(172, 16, 3, 0), 24};
  inst_->begin_batch();
  ASSERT_TRUE(inst_->install_trap(9, l, p));
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xc100, l, p, 9)));
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_TRUE(sa_is_live(out(ip(10, 3, 0, 1), ip(172, 16, 3, 1)), 0xc100));
  inst_->begin_batch();
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xc100));  // the trap stays
  ASSERT_TRUE(inst_->commit_batch());
  auto [sa, slot] = pol(ip(10, 3, 0, 1), ip(172, 16, 3, 1));
  EXPECT_EQ(sa, nullptr);
  EXPECT_NE(slot, nullptr);
  inst_->begin_batch();
  ASSERT_TRUE(inst_->remove_trap(9));
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_EQ(pol(ip(10, 3, 0, 1), ip(172, 16, 3, 1)).second, nullptr);
  inst_->drain();
}

// Outside a batch a removed policy goes from its SA to no policy at once: a reader looking it
// up while it is removed and installed again, thousands of times, sees its SA or nothing,
// never a trap (there is none: a trap would count the packets as trapped and raise acquires).
TEST_F(SpdBatch, UnbatchedRemoveNeverShowsATrap) {
  const Ipv4Prefix l{ip(10, 5, 0, 0), 16}, p{ip(172, 16, 5, 0), 24};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xe000, l, p)));
  std::atomic<bool> stop{false};
  std::atomic<unsigned> traps{0}, lookups{0};
  rcu_->register_thread(1);
  std::thread reader([&] {
    rcu_->online(1);
    while (!stop.load(std::memory_order_relaxed)) {
      Ipv4 src[32], dst[32];
      OutboundSa* o[32];
      PolicySlot* s[32];
      for (unsigned i = 0; i < 32; ++i) {
        src[i] = ip(10, 5, 0, i + 1);
        dst[i] = ip(172, 16, 5, i + 1);
      }
      inst_->lookup_outbound(src, dst, 32, o, s);
      for (unsigned i = 0; i < 32; ++i) traps += s[i] != nullptr;
      lookups.fetch_add(1, std::memory_order_relaxed);
      rcu_->quiescent(1);
    }
    rcu_->offline(1);
  });
  while (lookups.load() == 0) std::this_thread::yield();
  for (std::uint32_t c = 0; c < 20000; ++c) {
    ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xe000 + c));
    ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xe000 + c + 1, l, p)));
    inst_->reclaim();
  }
  stop = true;
  reader.join();
  rcu_->unregister_thread(1);
  EXPECT_GT(lookups.load(), 10u);
  EXPECT_EQ(traps.load(), 0u) << "of " << lookups.load() * 32 << " lookups";
  inst_->drain();
}

// A reader holding the SA of a tunnel removed in a batch keeps it intact until it passes a
// quiescent state; the policy slot lives until the grace period after the commit.
TEST_F(SpdBatch, RemovedInBatchIsNotFreedBeforeTheReaderIsQuiescent) {
  const Ipv4Prefix l{ip(10, 4, 0, 0), 16}, p{ip(172, 16, 4, 0), 24};
  ASSERT_TRUE(inst_->add_sa(make_spec(Direction::kOutbound, 0xd100, l, p)));
  inst_->drain();
  rcu_->register_thread(1);
  rcu_->online(1);  // this thread is the reader too
  OutboundSa* held = out(ip(10, 4, 0, 1), ip(172, 16, 4, 1));
  ASSERT_TRUE(sa_is_live(held, 0xd100));
  const PolicySlot* slot = inst_->find_policy(l, p);
  ASSERT_NE(slot, nullptr);
  inst_->begin_batch();
  ASSERT_TRUE(inst_->del_sa(Direction::kOutbound, 0xd100));
  EXPECT_EQ(inst_->reclaim(), 0u);  // the SA waits for the reader
  ASSERT_TRUE(inst_->commit_batch());
  EXPECT_EQ(inst_->reclaim(), 0u);
  EXPECT_TRUE(sa_is_live(held, 0xd100));
  EXPECT_EQ(slot->local_subnet, l);  // the slot too (ASan would flag a freed one)
  rcu_->quiescent(1);
  // The SA (batch before the commit), the slot (its table entry a tombstone), and the class list
  // (its class emptied) after it.
  EXPECT_EQ(inst_->reclaim(), 3u);
  rcu_->offline(1);
  rcu_->unregister_thread(1);
}

}  // namespace
}  // namespace ipsecgw::dp
