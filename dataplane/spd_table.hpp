// SpdTable: the outbound SPD's exact-match hash (private to dataplane/spd.cpp, which does the
// tuple space search over it; see dataplane/spd.hpp).
//
// Why not rte_hash (which it replaces, issue #12): with random traffic over 10,000 tunnels
// every packet is a lookup of its own, and rte_hash_lookup_bulk_data cost ~190 instructions a
// key (CRC of a 16-byte key, both cuckoo buckets' signatures, the key store) and three cache
// lines a key (primary and secondary bucket, key store entry), before the SA's own lines. Here
// a key is 64 bits (the masked destination and source) plus its class, an entry is the key and
// one data word side by side (16 bytes, four to a 64-byte bucket), and a lookup reads one
// bucket line: linear probing over buckets, kept under 3/4 full, at most 1/2 full of live
// policies (the table has twice the installer's capacity).
//
// Entry word: (class + 1) << 48 | data. data is the hash's payload (spd.hpp: an OutboundSa*
// or a PolicySlot* tagged with kTrapTag), below 2^48 as every user-space pointer on the
// 48-bit (4-level) x86-64 and arm64 address spaces DPDK runs on (checked on every store).
// A word of 0 marks an entry never used, which ends a probe; kTombstone a removed one, which
// does not. Removed entries are never reused in place: a reader may hold an entry's old word
// while it compares the key, so an entry keeps its key until the table is dropped; the owner
// (OutboundSpd) copies the live entries into a fresh table when tombstones fill it and frees
// the old one after a grace period.
//
// Threads: one writer (the control thread), lock-free readers (RCU readers). The writer stores
// an entry's key before its word (release); a reader loads the word (acquire) before the key,
// so a word it sees carries its key. A re-point is one word store: readers see old or new.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/result.hpp"

namespace ipsecgw::dp {

class SpdTable {
 public:
  static constexpr unsigned kWays = 4;  // entries per bucket
  static constexpr unsigned kDataBits = 48;
  static constexpr std::uint64_t kDataMask = (std::uint64_t{1} << kDataBits) - 1;
  static constexpr std::uint64_t kEmpty = 0;      // entry never used: ends a probe
  static constexpr std::uint64_t kTombstone = 2;  // removed (class field 0: matches no class)
  static constexpr std::uint16_t kMaxClass = 0xFFFE;

  struct Entry {
    std::atomic<std::uint64_t> key{0};
    std::atomic<std::uint64_t> word{kEmpty};
  };
  struct alignas(64) Bucket {
    Entry e[kWays];
  };
  static_assert(sizeof(Bucket) == 64);

  // A table of at least 2 x `capacity` entries (a power of two, at least 16), its buckets
  // zeroed on `socket_id` (rte_zmalloc_socket: hugepages, as the SAs).
  static Result<SpdTable*> create(unsigned capacity, int socket_id);
  static void destroy(SpdTable* t) noexcept;

  // ---- control thread ----
  enum class Put : std::uint8_t { kInserted, kReplaced, kFull };
  // Inserts (key, cls) -> data, or re-points an existing entry's data in place (one atomic
  // store). kFull: no room without reusing removed entries (the owner compacts).
  Put put(std::uint64_t key, std::uint16_t cls, std::uintptr_t data) noexcept;
  // Marks the entry removed (a tombstone); false when absent.
  bool erase(std::uint64_t key, std::uint16_t cls) noexcept;
  // Copies every live entry into `to` (a fresh table of the same capacity).
  void copy_live_to(SpdTable& to) const noexcept;
  // Buckets a lookup of (key, cls) reads before it finds the entry (1: its home bucket), 0
  // when absent: how well the hash spreads a policy set (tests, diagnostics).
  unsigned probe_buckets(std::uint64_t key, std::uint16_t cls) const noexcept;
  unsigned live() const noexcept { return live_; }
  unsigned tombstones() const noexcept { return tombs_; }
  unsigned entries() const noexcept { return (mask_ + 1) * kWays; }

  // ---- readers: lock-free, no allocation ----
  // A lookup in two steps, so that a burst's bucket misses overlap: the bucket of (key, cls)
  // and its prefetch, then the search from that bucket.
  std::uint32_t bucket_of(std::uint64_t key, std::uint16_t cls) const noexcept {
    std::uint64_t x = (key ^ (std::uint64_t{cls} << 52)) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return static_cast<std::uint32_t>(x >> shift_);
  }
  void prefetch(std::uint32_t b) const noexcept { __builtin_prefetch(&b_[b], 0, 3); }
  // The data stored for (key, cls) searching from bucket b (bucket_of), or 0.
  std::uintptr_t find(std::uint32_t b, std::uint64_t key, std::uint16_t cls) const noexcept {
    const std::uint64_t tag = std::uint64_t{cls} + 1;
    for (;;) {  // ends: the writer keeps a quarter of the entries never used
      const Bucket& bk = b_[b];
      for (unsigned w = 0; w < kWays; ++w) {
        const std::uint64_t word = bk.e[w].word.load(std::memory_order_acquire);
        if (word == kEmpty) return 0;
        if ((word >> kDataBits) == tag && bk.e[w].key.load(std::memory_order_relaxed) == key)
          return static_cast<std::uintptr_t>(word & kDataMask);
      }
      b = (b + 1) & mask_;
    }
  }

 private:
  SpdTable() = default;
  // Control side: the live entry of (key, cls), or nullptr with *empty = the never-used entry
  // that ended the probe (where an insert goes); *buckets (if given): the buckets read.
  Entry* locate(std::uint64_t key, std::uint16_t cls, Entry** empty,
                unsigned* buckets = nullptr) const noexcept;
  Bucket* b_ = nullptr;
  std::uint32_t mask_ = 0;   // buckets - 1
  unsigned shift_ = 64;      // 64 - log2(buckets)
  unsigned limit_ = 0;       // live + tombstones stay below this (3/4 of the entries)
  unsigned live_ = 0, tombs_ = 0;
};

}  // namespace ipsecgw::dp
