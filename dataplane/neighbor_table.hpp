// The ARP cache the workers read without locks (RFC 826 resolution is done on the control
// lcore, which is the only writer).
//
// A fixed open-addressing table of (key, mac) pairs of 64-bit atomics with linear probing.
//  - insert: into the first free or removed slot of the key's probe chain (after checking the
//    chain holds no entry for the key): the MAC word is stored (release), then the key (release);
//  - update: one 64-bit store of the MAC word (a reader sees the old or the new MAC, never a mix);
//  - remove (aged out, control lcore): MAC word cleared, then the key set to kRemovedKey, which
//    readers probe past and the writer reuses;
//  - lookup: the reader loads the key (acquire), the MAC word (acquire) and the key again: a
//    slot removed and reused for another address between the first two loads fails the
//    re-check (the MAC word it read was stored after the removal), so no reader ever takes
//    one address's MAC for another's.
// The key is neighbor_key(side, ipv4), so the same address may live on both ports; empty and
// removed slots hold keys no (side, address) pair encodes to. The MAC word holds the 48-bit MAC
// and bit 48 "valid" (0 = incomplete or withdrawn).
//
// Capacity: entries the gateway asked for (next hops, peers: `Origin::kResolved`) may fill the
// table; entries nobody asked for (`kOpportunistic`: an ARP request addressed to us) only its
// first half, so a flood of requests from spoofed addresses never blocks the entries traffic
// needs. The control lcore ages entries out (slowpath.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "dataplane/gateway.hpp"

namespace ipsecgw::dp {

// One neighbour, (port side, IPv4 next hop), as one 64-bit value: side << 32 | ipv4. The one
// encoding used for the table's slots, the control lcore's pending-resolution and static-entry
// sets, and the resolve requests the workers send over their rings.
constexpr std::uint64_t neighbor_key(Side s, Ipv4 ip) noexcept {
  return std::uint64_t{static_cast<std::uint8_t>(s)} << 32 | ip;
}
constexpr Side neighbor_key_side(std::uint64_t key) noexcept {
  return static_cast<Side>(key >> 32);
}
constexpr Ipv4 neighbor_key_ip(std::uint64_t key) noexcept { return static_cast<Ipv4>(key); }

class NeighborTable {
 public:
  static constexpr unsigned kSize = 4096;  // power of two; at most kSize - 1 entries

  NeighborTable() : e_(new Entry[kSize]) {}

  enum class Origin : std::uint8_t { kResolved, kOpportunistic };
  static constexpr unsigned kOpportunisticMax = kSize / 2;

  // Worker side: lock-free, no allocation.
  bool lookup(Side s, Ipv4 ip, MacAddr* out) const noexcept {
    const std::uint64_t key = neighbor_key(s, ip);
    for (unsigned i = 0, h = hash(key); i < kSize; ++i, h = (h + 1) & (kSize - 1)) {
      const std::uint64_t k = e_[h].key.load(std::memory_order_acquire);
      if (k == kEmptyKey) return false;
      if (k != key) continue;
      const std::uint64_t w = e_[h].mac.load(std::memory_order_acquire);
      if ((w & kValid) == 0) return false;
      if (e_[h].key.load(std::memory_order_acquire) != key) return false;  // removed meanwhile
      for (int b = 0; b < 6; ++b) (*out)[b] = static_cast<std::uint8_t>(w >> (8 * (5 - b)));
      return true;
    }
    return false;
  }

  // Control lcore only. Returns false when the table (or, for an opportunistic entry, its
  // share of it) is full. Updating an existing entry always succeeds.
  bool set(Side s, Ipv4 ip, const MacAddr& mac, Origin o = Origin::kResolved) noexcept {
    std::uint64_t w = kValid;
    for (int b = 0; b < 6; ++b) w |= std::uint64_t{mac[b]} << (8 * (5 - b));
    return store(neighbor_key(s, ip), w, o == Origin::kResolved ? kSize - 1 : kOpportunisticMax);
  }
  // Marks an entry invalid (workers miss on it); keeps the slot.
  void invalidate(Side s, Ipv4 ip) noexcept {
    Entry* e = find(neighbor_key(s, ip));
    if (e != nullptr) e->mac.store(0, std::memory_order_release);
  }
  // Removes an entry; its slot is reused by a later insert.
  void remove(Side s, Ipv4 ip) noexcept {
    Entry* e = find(neighbor_key(s, ip));
    if (e == nullptr) return;
    e->mac.store(0, std::memory_order_release);
    e->key.store(kRemovedKey, std::memory_order_release);
    --used_;
  }
  unsigned size() const noexcept { return used_; }

 private:
  static constexpr std::uint64_t kValid = std::uint64_t{1} << 48;
  static constexpr std::uint64_t kEmptyKey = ~std::uint64_t{0};  // side is 0 or 1: never a key
  static constexpr std::uint64_t kRemovedKey = kEmptyKey - 1;
  struct alignas(16) Entry {
    std::atomic<std::uint64_t> key{kEmptyKey};
    std::atomic<std::uint64_t> mac{0};
  };

  static unsigned hash(std::uint64_t key) noexcept {
    return static_cast<unsigned>((key * 0x9E3779B97F4A7C15ull) >> 52) & (kSize - 1);
  }
  Entry* find(std::uint64_t key) const noexcept {
    for (unsigned i = 0, h = hash(key); i < kSize; ++i, h = (h + 1) & (kSize - 1)) {
      const std::uint64_t k = e_[h].key.load(std::memory_order_relaxed);
      if (k == kEmptyKey) return nullptr;
      if (k == key) return &e_[h];
    }
    return nullptr;
  }
  bool store(std::uint64_t key, std::uint64_t w, unsigned limit) noexcept {
    Entry* e = find(key);
    if (e != nullptr) {
      e->mac.store(w, std::memory_order_release);
      return true;
    }
    if (used_ >= limit) return false;
    for (unsigned i = 0, h = hash(key); i < kSize; ++i, h = (h + 1) & (kSize - 1)) {
      const std::uint64_t k = e_[h].key.load(std::memory_order_relaxed);
      if (k != kEmptyKey && k != kRemovedKey) continue;
      e_[h].mac.store(w, std::memory_order_release);  // see lookup's re-check
      e_[h].key.store(key, std::memory_order_release);
      ++used_;
      return true;
    }
    return false;
  }

  std::unique_ptr<Entry[]> e_;
  unsigned used_ = 0;
};

}  // namespace ipsecgw::dp
