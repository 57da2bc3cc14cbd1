// SpdTable: see dataplane/spd_table.hpp.
#include "dataplane/spd_table.hpp"

#include <rte_debug.h>
#include <rte_malloc.h>

#include <algorithm>
#include <bit>
#include <new>
#include <string>

namespace ipsecgw::dp {

Result<SpdTable*> SpdTable::create(unsigned capacity, int socket_id) {
  const std::uint64_t want = std::max<std::uint64_t>(16, std::uint64_t{capacity} * 2);
  if (want > (std::uint64_t{1} << 30))
    return make_error("spd: capacity " + std::to_string(capacity) + " too large");
  const std::uint64_t entries = std::bit_ceil(want);
  const std::uint64_t buckets = entries / kWays;
  auto* b = static_cast<Bucket*>(
      rte_zmalloc_socket("ipsecgw_spd", buckets * sizeof(Bucket), 64, socket_id));
  if (b == nullptr)
    return make_error("spd: cannot allocate " + std::to_string(buckets * sizeof(Bucket)) +
                      " bytes for " + std::to_string(entries) + " entries");
  auto* t = new (std::nothrow) SpdTable;
  if (t == nullptr) {
    rte_free(b);
    return make_error("spd: out of memory");
  }
  // Zeroed memory is a table of never-used entries (key 0, word kEmpty); the atomics are
  // lock-free 64-bit words, so no constructor needs to run.
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free && kEmpty == 0);
  t->b_ = b;
  t->mask_ = static_cast<std::uint32_t>(buckets - 1);
  t->shift_ = 64 - static_cast<unsigned>(std::countr_zero(buckets));
  t->limit_ = static_cast<unsigned>(entries / 4 * 3);
  return t;
}

void SpdTable::destroy(SpdTable* t) noexcept {
  if (t == nullptr) return;
  rte_free(t->b_);
  delete t;
}

SpdTable::Entry* SpdTable::locate(std::uint64_t key, std::uint16_t cls, Entry** empty,
                                  unsigned* buckets) const noexcept {
  const std::uint64_t tag = std::uint64_t{cls} + 1;
  std::uint32_t b = bucket_of(key, cls);
  for (unsigned n = 1;; ++n) {  // ends: a quarter of the entries stay never used
    if (buckets != nullptr) *buckets = n;
    for (Entry& e : b_[b].e) {
      const std::uint64_t w = e.word.load(std::memory_order_relaxed);
      if (w == kEmpty) {
        *empty = &e;
        return nullptr;
      }
      if ((w >> kDataBits) == tag && e.key.load(std::memory_order_relaxed) == key) return &e;
    }
    b = (b + 1) & mask_;
  }
}

SpdTable::Put SpdTable::put(std::uint64_t key, std::uint16_t cls, std::uintptr_t data) noexcept {
  RTE_VERIFY(cls <= kMaxClass);
  // A payload that does not fit would be read back as another pointer: never store it.
  RTE_VERIFY((data & ~kDataMask) == 0 && data > kTombstone);
  const std::uint64_t word = ((std::uint64_t{cls} + 1) << kDataBits) | data;
  Entry* empty = nullptr;
  if (Entry* e = locate(key, cls, &empty)) {
    e->word.store(word, std::memory_order_release);
    return Put::kReplaced;
  }
  if (live_ + tombs_ + 1 > limit_) return Put::kFull;
  empty->key.store(key, std::memory_order_relaxed);
  empty->word.store(word, std::memory_order_release);  // after the key: readers see both
  ++live_;
  return Put::kInserted;
}

bool SpdTable::erase(std::uint64_t key, std::uint16_t cls) noexcept {
  Entry* empty = nullptr;
  Entry* e = locate(key, cls, &empty);
  if (e == nullptr) return false;
  e->word.store(kTombstone, std::memory_order_release);
  --live_;
  ++tombs_;
  return true;
}

unsigned SpdTable::probe_buckets(std::uint64_t key, std::uint16_t cls) const noexcept {
  Entry* empty = nullptr;
  unsigned n = 0;
  return locate(key, cls, &empty, &n) != nullptr ? n : 0;
}

void SpdTable::copy_live_to(SpdTable& to) const noexcept {
  for (std::uint32_t b = 0; b <= mask_; ++b)
    for (const Entry& e : b_[b].e) {
      const std::uint64_t w = e.word.load(std::memory_order_relaxed);
      if (w == kEmpty || w == kTombstone) continue;
      const auto cls = static_cast<std::uint16_t>((w >> kDataBits) - 1);
      RTE_VERIFY(to.put(e.key.load(std::memory_order_relaxed), cls,
                        static_cast<std::uintptr_t>(w & kDataMask)) == Put::kInserted);
    }
}

}  // namespace ipsecgw::dp
