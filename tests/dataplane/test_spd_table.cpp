// SpdTable (dataplane/spd_table.hpp), the outbound SPD's exact-match hash: every operation
// checked against a std::map, probe chains across buckets (a table small enough that keys
// must overflow their home bucket), tombstones that must not end a probe, the class as part of
// the key, the fill limit, and compaction's copy.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "dataplane/spd_table.hpp"

namespace ipsecgw::dp {
namespace {

using Put = SpdTable::Put;

struct TableDeleter {
  void operator()(SpdTable* t) const noexcept { SpdTable::destroy(t); }
};
using TablePtr = std::unique_ptr<SpdTable, TableDeleter>;

TablePtr make_table(unsigned capacity) {
  auto t = SpdTable::create(capacity, -1);
  EXPECT_TRUE(t) << t.error();
  return TablePtr(t ? *t : nullptr);
}

std::uintptr_t lookup(const SpdTable& t, std::uint64_t key, std::uint16_t cls) {
  return t.find(t.bucket_of(key, cls), key, cls);
}

// Payloads look like the SPD's: 64-byte aligned addresses, sometimes tagged with the low bit.
std::uintptr_t payload(unsigned i) {
  return 0x7f0000000000ull + std::uintptr_t{i} * 64 + (i % 3 == 0);
}

TEST(SpdTable, SizedFromCapacityWithAQuarterKeptEmpty) {
  auto t = make_table(4);  // at least 16 entries
  ASSERT_TRUE(t);
  EXPECT_EQ(t->entries(), 16u);
  auto u = make_table(10000);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->entries(), 32768u);
  // 16 entries: 12 may be used, the 13th insert is refused.
  for (unsigned i = 0; i < 12; ++i) ASSERT_EQ(t->put(i, 7, payload(i)), Put::kInserted) << i;
  EXPECT_EQ(t->put(99, 7, payload(99)), Put::kFull);
  EXPECT_EQ(lookup(*t, 99, 7), 0u);
  for (unsigned i = 0; i < 12; ++i) EXPECT_EQ(lookup(*t, i, 7), payload(i)) << i;
  // A re-point needs no room.
  EXPECT_EQ(t->put(5, 7, payload(500)), Put::kReplaced);
  EXPECT_EQ(lookup(*t, 5, 7), payload(500));
  EXPECT_EQ(t->live(), 12u);
}

// 4 buckets of 4 entries and 12 keys: some keys cannot sit in their home bucket and are found
// further along the probe; removing keys ahead of them (tombstones) must not hide them, and an
// erased key is not found again, nor does its tombstone take a new key.
TEST(SpdTable, ProbesCrossBucketsAndTombstonesDoNotEndThem) {
  auto t = make_table(4);
  ASSERT_TRUE(t);
  std::map<std::uint32_t, unsigned> home_count;
  for (unsigned i = 0; i < 12; ++i) {
    ASSERT_EQ(t->put(0x0a000000ull << 32 | i, 3, payload(i)), Put::kInserted);
    ++home_count[t->bucket_of(0x0a000000ull << 32 | i, 3)];
  }
  unsigned max_home = 0;
  for (auto& [b, n] : home_count) max_home = std::max(max_home, n);
  ASSERT_GT(max_home, SpdTable::kWays) << "no key overflowed its home bucket: change the keys";
  std::set<unsigned> gone;
  for (unsigned i = 0; i < 12; i += 2) {
    ASSERT_TRUE(t->erase(0x0a000000ull << 32 | i, 3));
    gone.insert(i);
    for (unsigned j = 0; j < 12; ++j)
      EXPECT_EQ(lookup(*t, 0x0a000000ull << 32 | j, 3), gone.count(j) ? 0u : payload(j))
          << "after erasing " << i << ", key " << j;
  }
  EXPECT_FALSE(t->erase(0x0a000000ull << 32 | 0, 3));  // already gone
  EXPECT_EQ(t->live(), 6u);
  EXPECT_EQ(t->tombstones(), 6u);
  // Tombstones count against the fill limit: no room for a new key until compaction.
  EXPECT_EQ(t->put(0x0b000000ull << 32, 3, payload(40)), Put::kFull);

  // Compaction's copy: only the live entries, no tombstones, every lookup the same.
  auto fresh = make_table(4);
  ASSERT_TRUE(fresh);
  t->copy_live_to(*fresh);
  EXPECT_EQ(fresh->live(), 6u);
  EXPECT_EQ(fresh->tombstones(), 0u);
  for (unsigned j = 0; j < 12; ++j)
    EXPECT_EQ(lookup(*fresh, 0x0a000000ull << 32 | j, 3), gone.count(j) ? 0u : payload(j)) << j;
  EXPECT_EQ(fresh->put(0x0b000000ull << 32, 3, payload(40)), Put::kInserted);
}

// The same 64-bit key in two classes (10.1.0.0/16 -> 10.2.0.0/16 and 10.1.0.0/24 ->
// 10.2.0.0/24 mask to equal addresses) is two entries.
TEST(SpdTable, TheClassIsPartOfTheKey) {
  auto t = make_table(64);
  ASSERT_TRUE(t);
  const std::uint64_t k = 0x0a020000ull << 32 | 0x0a010000u;
  const std::uint16_t c16 = 16 * 33 + 16, c24 = 24 * 33 + 24;
  ASSERT_EQ(t->put(k, c16, payload(1)), Put::kInserted);
  EXPECT_EQ(lookup(*t, k, c24), 0u);
  ASSERT_EQ(t->put(k, c24, payload(2)), Put::kInserted);
  EXPECT_EQ(lookup(*t, k, c16), payload(1));
  EXPECT_EQ(lookup(*t, k, c24), payload(2));
  ASSERT_TRUE(t->erase(k, c16));
  EXPECT_EQ(lookup(*t, k, c16), 0u);
  EXPECT_EQ(lookup(*t, k, c24), payload(2));
  // Class 0 (0.0.0.0/0 -> 0.0.0.0/0) and key 0 are ordinary values; the largest class too.
  ASSERT_EQ(t->put(0, 0, payload(3)), Put::kInserted);
  ASSERT_EQ(t->put(0, 32 * 33 + 32, payload(4)), Put::kInserted);
  EXPECT_EQ(lookup(*t, 0, 0), payload(3));
  EXPECT_EQ(lookup(*t, 0, 32 * 33 + 32), payload(4));
}

// The policy sets a gateway holds: site-to-site tunnels with consecutive /24 subnets on both
// sides (as tests/interop's generator and bench-gateway's many-tunnel traffic make them), and
// /32 hosts. Masked addresses have their low bits zero and their high bits shared, so the
// hash must mix every bit: at 10,000 policies in the table sized for them, nearly every
// lookup reads one bucket line and none more than a few.
TEST(SpdTable, SiteToSitePolicySetsSpreadOverTheBuckets) {
  struct Set {
    const char* name;
    unsigned n;
    unsigned peer_len, local_len;
    std::uint64_t (*key)(unsigned i);
  };
  const Set sets[] = {
      {"/24 -> /24", 10000, 24, 24,
       [](unsigned i) {
         const std::uint64_t local = 0x0a000000u | (64 + i / 256) << 16 | (i % 256) << 8;
         const std::uint64_t peer = 0x0a000000u | (128 + i / 256) << 16 | (i % 256) << 8;
         return peer << 32 | local;
       }},
      {"/32 -> /16 (one local /16, many peer hosts)", 10000, 32, 16,
       [](unsigned i) { return std::uint64_t{0xc6120000u + i + 1} << 32 | 0x0a400000u; }},
  };
  for (const Set& set : sets) {
    auto t = make_table(set.n);
    ASSERT_TRUE(t);
    const auto cls = static_cast<std::uint16_t>(set.peer_len * 33 + set.local_len);
    for (unsigned i = 0; i < set.n; ++i)
      ASSERT_EQ(t->put(set.key(i), cls, payload(i)), Put::kInserted) << set.name << " " << i;
    unsigned home = 0, worst = 0;
    for (unsigned i = 0; i < set.n; ++i) {
      const unsigned p = t->probe_buckets(set.key(i), cls);
      ASSERT_GE(p, 1u) << set.name << " " << i;
      home += p == 1;
      worst = std::max(worst, p);
    }
    EXPECT_GE(home, set.n * 95 / 100) << set.name << ": " << home << " of " << set.n
                                      << " in their home bucket";
    EXPECT_LE(worst, 4u) << set.name;
  }
}

// Random inserts, re-points and erases over a small key space (so erased keys come back) in a
// table kept busy, with compaction into a fresh table whenever tombstones fill it, as
// OutboundSpd does: after every operation the table answers as the map, for present and
// absent keys alike.
TEST(SpdTable, RandomOperationsMatchAMapThroughCompactions) {
  constexpr unsigned kCapacity = 256;
  std::mt19937 rng(20261203);
  auto t = make_table(kCapacity);
  ASSERT_TRUE(t);
  std::map<std::pair<std::uint64_t, std::uint16_t>, std::uintptr_t> ref;
  auto rnd_key = [&] {
    const std::uint64_t dst = 0xac100000u | (rng() % 64) << 8;
    const std::uint64_t src = 0x0a000000u | (rng() % 8) << 8;
    return std::make_pair(dst << 32 | src, static_cast<std::uint16_t>(rng() % 3 == 0 ? 24 * 33 + 24
                                                                                   : 16 * 33 + 24));
  };
  unsigned compactions = 0, full_refusals = 0;
  for (unsigned op = 0; op < 20000; ++op) {
    const auto k = rnd_key();
    const auto it = ref.find(k);
    if (it != ref.end() && rng() % 2 == 0) {
      ASSERT_TRUE(t->erase(k.first, k.second));
      ref.erase(it);
    } else if (it != ref.end() || ref.size() < kCapacity) {
      const std::uintptr_t v = payload(op);
      Put r = t->put(k.first, k.second, v);
      if (r == Put::kFull) {
        ++full_refusals;
        ASSERT_GT(t->tombstones(), 0u) << "full with no tombstones below capacity";
        auto fresh = make_table(kCapacity);
        ASSERT_TRUE(fresh);
        t->copy_live_to(*fresh);
        t = std::move(fresh);
        ++compactions;
        r = t->put(k.first, k.second, v);
      }
      ASSERT_EQ(r, it == ref.end() ? Put::kInserted : Put::kReplaced);
      ref[k] = v;
    }
    if (op % 97 == 0 || op > 19900) {
      for (std::uint64_t d = 0; d < 64; ++d)
        for (std::uint64_t s = 0; s < 8; ++s)
          for (std::uint16_t c : {std::uint16_t{24 * 33 + 24}, std::uint16_t{16 * 33 + 24}}) {
            const std::uint64_t key = (0xac100000u | d << 8) << 32 | (0x0a000000u | s << 8);
            const auto r = ref.find({key, c});
            ASSERT_EQ(lookup(*t, key, c), r == ref.end() ? 0u : r->second) << op;
          }
    }
    ASSERT_EQ(t->live(), ref.size());
  }
  EXPECT_GT(compactions, 5u);  // the tombstone path was exercised
  EXPECT_EQ(full_refusals, compactions);
}

}  // namespace
}  // namespace ipsecgw::dp
