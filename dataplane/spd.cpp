// OutboundSpd: tuple space search over one lock-free rte_hash; see dataplane/spd.hpp.
#include "dataplane/spd.hpp"

#include <rte_debug.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_prefetch.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace ipsecgw::dp {
namespace {

constexpr unsigned kChunk = RTE_HASH_LOOKUP_BULK_MAX;  // 64
static_assert(kChunk <= 256);

std::atomic<unsigned> g_spd_seq{0};  // rte_hash names must be unique per process

constexpr Ipv4 len_mask(unsigned len) noexcept { return len == 0 ? 0 : ~Ipv4{0} << (32 - len); }

SpdKey make_key(Ipv4 src, Ipv4 dst, const SpdClass& c) noexcept {
  SpdKey k;
  k.dst = dst & c.peer_mask;
  k.src = src & c.local_mask;
  k.peer_len = c.peer_len;
  k.local_len = c.local_len;
  std::memset(k.pad, 0, sizeof k.pad);
  return k;
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
  char name[RTE_HASH_NAMESIZE];
  std::snprintf(name, sizeof name, "ipsecgw_spd_%u", g_spd_seq.fetch_add(1));
  rte_hash_parameters p{};
  p.name = name;
  // Headroom, as for the inbound SA table: cuckoo hashing fills up before 100%, and removed
  // policies hold their key slots until their grace period ends.
  p.entries = capacity * 2 < 64 ? 64 : capacity * 2;
  p.key_len = sizeof(SpdKey);
  p.hash_func = rte_hash_crc;
  p.hash_func_init_val = 0;
  p.socket_id = socket_id_;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  h_ = rte_hash_create(&p);
  if (h_ == nullptr)
    return make_error(std::string("spd: rte_hash_create failed: ") + rte_strerror(rte_errno));
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
  rte_hash_free(h_);
}

PolicySlot* OutboundSpd::find(const Ipv4Prefix& local, const Ipv4Prefix& peer) const noexcept {
  auto it = policies_.find(key(local, peer));
  return it == policies_.end() ? nullptr : it->second;
}

std::size_t OutboundSpd::classes() const noexcept {
  const SpdClasses* c = classes_.load(std::memory_order_acquire);
  return c == nullptr ? 0 : c->c.size();
}

void OutboundSpd::publish_classes() {
  auto next = std::make_unique<SpdClasses>();
  // Most specific first: longest peer prefix, then longest local prefix.
  for (int pl = kLens - 1; pl >= 0; --pl)
    for (int ll = kLens - 1; ll >= 0; --ll)
      if (class_count_[pl * kLens + ll] != 0)
        next->c.push_back(SpdClass{len_mask(pl), len_mask(ll), static_cast<std::uint8_t>(pl),
                                   static_cast<std::uint8_t>(ll)});
  SpdClasses* old = classes_.exchange(next.release(), std::memory_order_acq_rel);
  if (old != nullptr) reclaimer_.defer([old] { delete old; });
}

SpdKey OutboundSpd::hash_key(const Key& k) noexcept {
  const auto& [laddr, llen, paddr, plen] = k;
  SpdKey hk{};
  hk.dst = paddr;
  hk.src = laddr;
  hk.peer_len = plen;
  hk.local_len = llen;
  return hk;
}

void* OutboundSpd::hash_data(PolicySlot* slot) noexcept {
  if (slot->sa != nullptr) return slot->sa;
  return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(slot) | kTrapTag);
}

Result<void> OutboundSpd::apply(const Key& k, bool& classes_changed) {
  auto want = policies_.find(k);
  auto have = linked_.find(k);
  PolicySlot* w = want == policies_.end() ? nullptr : want->second;
  PolicySlot* h = have == linked_.end() ? nullptr : have->second;
  if (w == h) return {};
  const auto& [laddr, llen, paddr, plen] = k;
  const SpdKey hk = hash_key(k);
  const unsigned cls = plen * kLens + llen;
  if (w != nullptr) {
    // Insert, or re-point an existing key in one atomic data store (readers see h or w).
    const int rc = rte_hash_add_key_data(h_, &hk, hash_data(w));
    if (rc < 0)
      return make_error("spd: cannot add policy " + format_prefix(w->local_subnet) + " -> " +
                        format_prefix(w->peer_subnet) + ": " + rte_strerror(-rc));
    if (h == nullptr) {
      if (class_count_[cls]++ == 0) classes_changed = true;
      linked_.emplace(k, w);
    } else {
      have->second = w;
      reclaimer_.defer([h] { delete h; });
    }
    return {};
  }
  // Unlink; the key's slot in the hash and the policy slot stay until the grace period ends.
  const std::int32_t pos = rte_hash_del_key(h_, &hk);
  linked_.erase(have);
  if (--class_count_[cls] == 0) classes_changed = true;
  rte_hash* hash = h_;
  reclaimer_.defer([hash, pos, h] {
    if (pos >= 0) rte_hash_free_key_with_position(hash, pos);
    delete h;
  });
  return {};
}

Result<PolicySlot*> OutboundSpd::add(const Ipv4Prefix& local, const Ipv4Prefix& peer, OutboundSa* sa) {
  if (local.len > 32 || peer.len > 32 || (local.addr & ~local.mask()) != 0 ||
      (peer.addr & ~peer.mask()) != 0)
    return make_error("spd: selectors " + format_prefix(local) + " -> " + format_prefix(peer) +
                      " have host bits set");
  auto slot = std::make_unique<PolicySlot>();
  slot->sa = sa;  // reaches workers as the hash's data (apply)
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
    // Still linked until the commit: matched packets are held, not sent.
    set_sa(slot, nullptr);
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
    // The key is in the hash: rte_hash finds it and replaces its data with one atomic store
    // (no new key slot, no allocation), so this cannot fail for want of room. If it ever
    // failed, workers would keep an SA the caller is about to free: stop instead.
    const SpdKey hk = hash_key(k);
    RTE_VERIFY(rte_hash_add_key_data(h_, &hk, hash_data(slot)) >= 0);
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
  if (classes_changed || classes_.load(std::memory_order_relaxed) == nullptr) publish_classes();
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
  SpdKey keys[kChunk];
  const void* kp[kChunk];
  void* data[kChunk];
  void* found[kChunk];           // per distinct pair: the hash's data (SA or tagged slot)
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
        found[u] = nullptr;
        ++u;
      }
      key_of[i] = static_cast<std::uint8_t>(u - 1);
    }
    // Most specific class first; each pair leaves the pending list at its first hit.
    unsigned np = u;
    for (unsigned c = 0; c < nc && np != 0; ++c) {
      for (unsigned j = 0; j < np; ++j) {
        const unsigned i = first[pend[j]];
        keys[j] = make_key(s[i], d[i], classes[c]);
        kp[j] = &keys[j];
      }
      std::uint64_t hits = 0;
      if (rte_hash_lookup_bulk_data(h_, kp, np, &hits, data) < 0) hits = 0;
      unsigned left = 0;
      for (unsigned j = 0; j < np; ++j) {
        if ((hits >> j) & 1) {
          found[pend[j]] = data[j];
          if ((reinterpret_cast<std::uintptr_t>(data[j]) & kTrapTag) == 0)
            prefetch_for_encrypt(static_cast<const OutboundSa*>(data[j]));
        } else {
          pend[left++] = pend[j];
        }
      }
      np = left;
    }
    for (unsigned i = 0; i < m; ++i) {
      const auto v = reinterpret_cast<std::uintptr_t>(found[key_of[i]]);
      OutboundSa* sa = nullptr;
      PolicySlot* trap = nullptr;
      if ((v & kTrapTag) != 0) trap = reinterpret_cast<PolicySlot*>(v & ~kTrapTag);
      else sa = reinterpret_cast<OutboundSa*>(v);
#if defined(__SANITIZE_THREAD__)
      // Pairs with mark_published() (sa_table.cpp) before the SA was linked: the acquire
      // rte_hash already did inside librte_hash, repeated where ThreadSanitizer sees it (see
      // SaHead::published). Not needed otherwise: rte_hash's own acquire orders it.
      if (sa != nullptr) (void)sa->published.load(std::memory_order_acquire);
#endif
      out[base + i] = sa;
      slots[base + i] = trap;
    }
  }
}

}  // namespace ipsecgw::dp
