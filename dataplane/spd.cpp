// OutboundSpd: tuple space search over one lock-free SpdTable; see dataplane/spd.hpp.
#include "dataplane/spd.hpp"

#include <rte_debug.h>
#include <rte_prefetch.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace ipsecgw::dp {
namespace {

constexpr unsigned kChunk = 64;  // packets per pass (indices fit a uint8_t)
static_assert(kChunk <= 256);

constexpr Ipv4 len_mask(unsigned len) noexcept { return len == 0 ? 0 : ~Ipv4{0} << (32 - len); }

// The table's key: the masked destination (peer side) over the masked source (local side).
constexpr std::uint64_t table_key(Ipv4 dst, Ipv4 src) noexcept {
  return (std::uint64_t{dst} << 32) | src;
}

// The lines of an outbound SA that esp_outbound reads or writes for each packet (dataplane/
// esp_outbound.cpp; ipsec-mb reads the key schedule; layout in dataplane/sa.hpp): prefetched
// when the lookup returns the SA, so that with thousands of tunnels their misses overlap each
// other and the rest of the burst's work instead of stalling the crypto one SA at a time.
// Exactly the 7 lines an AES-128 SA uses (kSaHotLines, dataplane/sa.hpp).
inline void prefetch_for_encrypt(const OutboundSa* sa) noexcept {
  const auto* p = reinterpret_cast<const char*>(sa);
  for (std::size_t off : kSaHotLines) rte_prefetch0(p + off);
}

}  // namespace

Result<void> OutboundSpd::init(unsigned capacity) {
  auto t = SpdTable::create(capacity, socket_id_);
  if (!t) return make_error(t.error());
  table_ = *t;
  return {};
}

OutboundSpd::~OutboundSpd() {
  delete classes_.load(std::memory_order_relaxed);
  for (auto& [k, slot] : policies_) delete slot;
  // Linked but no longer wanted (a batch left open): not in policies_.
  for (auto& [k, slot] : linked_) {
    auto it = policies_.find(k);
    if (it == policies_.end() || it->second != slot) delete slot;
  }
  SpdTable::destroy(table_);
}

PolicySlot* OutboundSpd::find(const Ipv4Prefix& local, const Ipv4Prefix& peer) const noexcept {
  auto it = policies_.find(key(local, peer));
  return it == policies_.end() ? nullptr : it->second;
}

std::size_t OutboundSpd::classes() const noexcept {
  const SpdClasses* c = classes_.load(std::memory_order_acquire);
  return c == nullptr ? 0 : c->c.size();
}

void OutboundSpd::publish(bool keep_classes) {
  auto next = std::make_unique<SpdClasses>();
  const SpdClasses* cur = classes_.load(std::memory_order_relaxed);
  if (keep_classes && cur != nullptr) {
    next->c = cur->c;
  } else {
    // Most specific first: longest peer prefix, then longest local prefix.
    for (int pl = kLens - 1; pl >= 0; --pl)
      for (int ll = kLens - 1; ll >= 0; --ll)
        if (class_count_[pl * kLens + ll] != 0)
          next->c.push_back(SpdClass{len_mask(pl), len_mask(ll),
                                     static_cast<std::uint16_t>(pl * kLens + ll)});
  }
  next->table = table_;
  SpdClasses* old = classes_.exchange(next.release(), std::memory_order_acq_rel);
  if (old != nullptr) reclaimer_.defer([old] { delete old; });
}

std::uintptr_t OutboundSpd::table_data(PolicySlot* slot) noexcept {
  if (slot->sa != nullptr) return reinterpret_cast<std::uintptr_t>(slot->sa);
  return reinterpret_cast<std::uintptr_t>(slot) | kTrapTag;
}

Result<void> OutboundSpd::put(const Key& k, PolicySlot* slot) {
  const auto& [laddr, llen, paddr, plen] = k;
  const std::uint64_t tk = table_key(paddr, laddr);
  const auto cls = static_cast<std::uint16_t>(plen * kLens + llen);
  if (table_->put(tk, cls, table_data(slot)) != SpdTable::Put::kFull) return {};
  auto fail = [&](const std::string& why) -> Result<void> {
    return make_error("spd: cannot add policy " + format_prefix(slot->local_subnet) + " -> " +
                      format_prefix(slot->peer_subnet) + ": " + why);
  };
  if (table_->tombstones() == 0)
    return fail("table full (" + std::to_string(table_->live()) + " policies)");
  // The previous compaction's table may be past its grace period: free it now if so.
  if (retired_pending_) (void)reclaimer_.reclaim();
  if (retired_pending_)
    return fail("table full of removed policies waiting for a grace period");
  // Compaction: the live entries into a fresh table, published with the class list as it is;
  // the old table serves readers that still hold it until their grace period ends.
  auto fresh = SpdTable::create(table_->entries() / 2, socket_id_);
  if (!fresh) return fail(fresh.error());
  table_->copy_live_to(**fresh);
  SpdTable* old = table_;
  table_ = *fresh;
  if (classes_.load(std::memory_order_relaxed) != nullptr) publish(true);
  retired_pending_ = true;
  ++compactions_;
  reclaimer_.defer([this, old] {
    SpdTable::destroy(old);
    retired_pending_ = false;
  });
  if (table_->put(tk, cls, table_data(slot)) == SpdTable::Put::kFull)
    return fail("table full (" + std::to_string(table_->live()) + " policies)");
  return {};
}

Result<void> OutboundSpd::apply(const Key& k, bool& classes_changed) {
  auto want = policies_.find(k);
  auto have = linked_.find(k);
  PolicySlot* w = want == policies_.end() ? nullptr : want->second;
  PolicySlot* h = have == linked_.end() ? nullptr : have->second;
  if (w == h) return {};
  const auto& [laddr, llen, paddr, plen] = k;
  const unsigned cls = plen * kLens + llen;
  if (w != nullptr) {
    // Insert, or re-point an existing key in one atomic data store (readers see h or w).
    if (auto r = put(k, w); !r) return r;
    if (h == nullptr) {
      if (class_count_[cls]++ == 0) classes_changed = true;
      linked_.emplace(k, w);
    } else {
      have->second = w;
      reclaimer_.defer([h] { delete h; });
    }
    return {};
  }
  // Unlink (a tombstone); the policy slot stays until the grace period ends.
  (void)table_->erase(table_key(paddr, laddr), static_cast<std::uint16_t>(cls));
  linked_.erase(have);
  if (--class_count_[cls] == 0) classes_changed = true;
  reclaimer_.defer([h] { delete h; });
  return {};
}

Result<PolicySlot*> OutboundSpd::add(const Ipv4Prefix& local, const Ipv4Prefix& peer, OutboundSa* sa) {
  if (local.len > 32 || peer.len > 32 || (local.addr & ~local.mask()) != 0 ||
      (peer.addr & ~peer.mask()) != 0)
    return make_error("spd: selectors " + format_prefix(local) + " -> " + format_prefix(peer) +
                      " have host bits set");
  auto slot = std::make_unique<PolicySlot>();
  slot->sa = sa;  // reaches workers as the table's data (apply)
  slot->local_subnet = local;
  slot->peer_subnet = peer;
  const Key k = key(local, peer);
  auto [it, inserted] = policies_.emplace(k, slot.get());
  if (!inserted) return make_error("spd: policy already present");
  dirty_.push_back(k);
  if (in_batch()) return slot.release();
  begin_batch();
  auto r = commit_batch();
  if (linked_.count(k) == 0) {  // its insert failed: nothing to undo but the map entry
    policies_.erase(k);
    std::erase(dirty_, k);
    return make_error(r ? std::string("spd: policy not linked") : r.error());
  }
  return slot.release();
}

Result<void> OutboundSpd::remove(PolicySlot* slot) {
  const Key k = key(slot->local_subnet, slot->peer_subnet);
  auto it = policies_.find(k);
  if (it == policies_.end() || it->second != slot) return make_error("spd: unknown policy");
  policies_.erase(it);
  auto l = linked_.find(k);
  if (l == linked_.end() || l->second != slot) {
    // Never seen by a worker (added and removed in one batch, or its insert failed).
    reclaimer_.defer([slot] { delete slot; });
  } else {
    // In a batch it stays linked until the commit: its packets are held (trapped), not sent
    // through an SA the caller frees. Outside one the commit below unlinks it at once, so it
    // goes from its SA to no policy in one store, never through a trap (whose window would
    // count a removed tunnel's packets as trapped and let workers raise acquires for it).
    if (in_batch()) set_sa(slot, nullptr);
    dirty_.push_back(k);
  }
  if (in_batch()) return {};
  begin_batch();
  // A delete cannot fail; an error here is an earlier insert retried, already reported.
  (void)commit_batch();
  return {};
}

OutboundSa* OutboundSpd::set_sa(PolicySlot* slot, OutboundSa* sa) noexcept {
  OutboundSa* old = slot->sa;
  slot->sa = sa;
  const Key k = key(slot->local_subnet, slot->peer_subnet);
  auto l = linked_.find(k);
  if (l != linked_.end() && l->second == slot) {
    // The key is in the table: its data is replaced with one atomic store (no new entry), so
    // this cannot fail for want of room. If it ever did, workers would keep an SA the caller
    // is about to free: stop instead.
    const auto& [laddr, llen, paddr, plen] = k;
    RTE_VERIFY(table_->put(table_key(paddr, laddr), static_cast<std::uint16_t>(plen * kLens + llen),
                           table_data(slot)) == SpdTable::Put::kReplaced);
  }
  return old;
}

Result<void> OutboundSpd::commit_batch() {
  if (batch_depth_ == 0) return make_error("spd: commit_batch without begin_batch");
  if (--batch_depth_ != 0 || dirty_.empty()) return {};
  bool classes_changed = false;
  Result<void> result;
  std::vector<Key> failed;
  // Removals first: a removal's key slot and a new policy's insert may compete for room.
  for (const Key& k : dirty_)
    if (policies_.count(k) == 0) (void)apply(k, classes_changed);
  for (const Key& k : dirty_) {
    if (policies_.count(k) == 0) continue;
    if (auto r = apply(k, classes_changed); !r) {
      failed.push_back(k);
      if (result) result = std::move(r);
    }
  }
  dirty_ = std::move(failed);
  if (classes_changed || classes_.load(std::memory_order_relaxed) == nullptr) publish(false);
  return result;
}

void OutboundSpd::lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out) const noexcept {
  PolicySlot* slots[kChunk];
  for (unsigned base = 0; base < n; base += kChunk) {
    const unsigned m = n - base < kChunk ? n - base : kChunk;
    lookup(src + base, dst + base, m, out + base, slots);
  }
}

void OutboundSpd::lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out,
                         PolicySlot** slots) const noexcept {
  // The acquire pairs with publish(): the class list and the table it names (and, through the
  // table's release/acquire per entry, the SAs the entries point to) are seen whole.
  const SpdClasses* cls = classes_.load(std::memory_order_acquire);
  const unsigned nc = cls == nullptr ? 0 : static_cast<unsigned>(cls->c.size());
  if (nc == 0) {
    for (unsigned i = 0; i < n; ++i) {
      out[i] = nullptr;
      slots[i] = nullptr;
    }
    return;
  }
  const SpdClass* classes = cls->c.data();
  const SpdTable& table = *cls->table;
  std::uint64_t keys[kChunk];
  std::uint32_t bucket[kChunk];
  std::uintptr_t found[kChunk];  // per distinct pair: the table's data (SA or tagged slot), 0
  std::uint8_t pend[kChunk];     // distinct pairs not resolved yet
  std::uint8_t first[kChunk];    // distinct pair -> its first packet
  std::uint8_t key_of[kChunk];   // packet -> its distinct pair
  for (unsigned base = 0; base < n; base += kChunk) {
    const unsigned m = n - base < kChunk ? n - base : kChunk;
    const Ipv4* s = src + base;
    const Ipv4* d = dst + base;
    // A run of packets with the same (src, dst), as a burst of one flow brings them, is
    // looked up once.
    unsigned u = 0;
    for (unsigned i = 0; i < m; ++i) {
      if (i == 0 || s[i] != s[i - 1] || d[i] != d[i - 1]) {
        first[u] = static_cast<std::uint8_t>(i);
        pend[u] = static_cast<std::uint8_t>(u);
        found[u] = 0;
        ++u;
      }
      key_of[i] = static_cast<std::uint8_t>(u - 1);
    }
    // Most specific class first; each pair leaves the pending list at its first hit. Every
    // pending pair's bucket is computed and prefetched before any is searched.
    unsigned np = u;
    for (unsigned c = 0; c < nc && np != 0; ++c) {
      const SpdClass& k = classes[c];
      for (unsigned j = 0; j < np; ++j) {
        const unsigned i = first[pend[j]];
        keys[j] = table_key(d[i] & k.peer_mask, s[i] & k.local_mask);
        bucket[j] = table.bucket_of(keys[j], k.cls);
        table.prefetch(bucket[j]);
      }
      unsigned left = 0;
      for (unsigned j = 0; j < np; ++j) {
        const std::uintptr_t v = table.find(bucket[j], keys[j], k.cls);
        if (v != 0) {
          found[pend[j]] = v;
          if ((v & kTrapTag) == 0) prefetch_for_encrypt(reinterpret_cast<const OutboundSa*>(v));
        } else {
          pend[left++] = pend[j];
        }
      }
      np = left;
    }
    for (unsigned i = 0; i < m; ++i) {
      const std::uintptr_t v = found[key_of[i]];
      const bool trap = (v & kTrapTag) != 0;
      out[base + i] = trap ? nullptr : reinterpret_cast<OutboundSa*>(v);
      slots[base + i] = trap ? reinterpret_cast<PolicySlot*>(v & ~kTrapTag) : nullptr;
    }
  }
}

}  // namespace ipsecgw::dp
