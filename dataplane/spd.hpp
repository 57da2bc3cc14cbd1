// OutboundSpd: the outbound security policy database (private to dataplane/sa_table.cpp).
//
// A policy is one tunnel's selectors (local subnet, peer subnet), i.e. RFC 4301 §4.4.1 SPD
// entries restricted to what our connections use: inner src in local_subnet and inner dst in
// peer_subnet, any protocol and port. Each policy owns a PolicySlot (control side: the tunnel's
// current outbound SA, the trap's acquire state).
//
// Lookup structure: tuple space search. Policies fall into classes by their prefix-length pair
// (peer len, local len); one SpdTable (dataplane/spd_table.hpp: an exact-match hash with
// lock-free readers, one 64-byte bucket line per lookup) holds every policy under the key
// (dst & peer mask, src & local mask) and its class. The table's data is the policy's current
// outbound SA itself, or, for a policy without one (a trap), its PolicySlot tagged with
// kTrapTag: a hit gives a worker the SA with no further load, so with thousands of tunnels (an
// SA miss per packet) the chain per packet is bucket -> SA, and the SA's lines are prefetched
// as soon as the table returns it. A rekey re-points the data in place (one atomic store:
// readers see the old SA or the new). A lookup tries the classes present, most specific
// first: for the packets still unresolved it computes every bucket and prefetches it, then
// searches them (a burst's bucket misses overlap), and stops at the first hit or when every
// packet of the burst is resolved. Site-to-site policies fall in a few classes (often one:
// /24 -> /24), so a lookup is one or two probes per packet whatever the number of tunnels, and
// an insert or a remove is one table operation: O(1), where the rte_acl SPD this replaced
// rebuilt its whole trie (O(N)) on every policy change. The cost grows with the number of
// classes in use (up to 33 x 33; a miss tries them all), which classes() reports. The list of
// classes in use and the table are a small immutable record published with one atomic pointer
// store when a class appears or empties, or when the table is compacted (old one freed after
// the grace period). A removed key's entry stays in the table as a tombstone, never reused in
// place; when tombstones fill the table its live entries are copied into a fresh one
// (compaction, O(N) once per capacity/2 removals at least). While the previous compacted
// table still waits for its grace period (the insert first runs the reclaimer once, in case
// it has passed), no second one is made: an insert that needs room then fails (a reader that
// never reports a quiescent state holds memory back, not more).
//
// Most specific wins: the longest peer (dst) prefix first, then the longest local (src)
// prefix, which is the order classes are tried in. Two different matching policies can never
// tie (equal lengths and both matching means equal prefixes).
//
// Batches (begin_batch / commit_batch): while a batch is open, add() and remove() change only
// the control-side map and the table is updated at commit_batch() (one table operation per
// changed policy, one class-list publish at most). Until the commit the published state keeps
// serving: an added policy does not match yet; a removed one still matches, with its SA
// data already re-pointed to its tagged slot (no SA), so its packets are held as trapped
// (never sent in the clear); its
// slot is freed after the grace period that follows the commit's unlink. A policy removed and
// re-added in one batch is re-pointed in place (one atomic store): its packets never see a
// gap. Outside a batch every add() and remove() is a batch of one, except that a remove then
// unlinks the policy in one erase, from its SA straight to no policy (no trap in between).
//
// Threads: the control thread is the only writer; workers call lookup() and must be RCU readers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "common/result.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/reclaimer.hpp"
#include "dataplane/sa.hpp"
#include "dataplane/sa_events.hpp"
#include "dataplane/spd_table.hpp"

namespace ipsecgw::dp {

// A policy slot with a null `sa` is a trap (SaInstaller::install_trap): it still matches, so
// its packets are held back (DropReason::kTrapped) rather than treated as unmatched, and the
// worker raises an acquire through it, rate-limited by `acquire_tsc`. Workers reach a slot
// only then (the table's data is the SA itself otherwise) and read only its atomics.
struct alignas(64) PolicySlot {
  // The tunnel's current outbound SA; null: trapped, no SA yet. Control thread only: workers
  // get the SA from the table's data (OutboundSpd::set_sa keeps both the same).
  OutboundSa* sa = nullptr;
  // Worker side of acquires: TSC of the last one raised (0 = never) and a pending flag that
  // the control thread's poll_events() takes.
  std::atomic<std::uint64_t> acquire_tsc{0};
  std::atomic<bool> acquire_pending{false};
  Ipv4Prefix local_subnet;
  Ipv4Prefix peer_subnet;
  // Control thread only.
  std::uint32_t conn_id = 0;  // the connection of the trap or of the current SA
  bool trapped = false;       // install_trap'd: stays when the outbound SA goes
};

// Worker: raise an acquire for a trapped slot unless one was raised less than `interval` TSC
// cycles before `now` (one CAS winner per interval across workers). Not per packet in steady
// state: only packets of a tunnel that is down get here.
inline void policy_raise_acquire(PolicySlot& slot, std::uint64_t now,
                                 std::uint64_t interval) noexcept {
  std::uint64_t last = slot.acquire_tsc.load(std::memory_order_relaxed);
  if (last != 0 && now - last < interval) return;
  if (!slot.acquire_tsc.compare_exchange_strong(last, now == 0 ? 1 : now,
                                                std::memory_order_relaxed))
    return;  // another worker raised it just now
  slot.acquire_pending.store(true, std::memory_order_release);
  note_sa_event_raised();
}

// The table's data for a policy without an SA: its slot's address with the low bit set (slots
// are 64-byte aligned, SAs too, so an untagged pointer is always an SA).
constexpr std::uintptr_t kTrapTag = 1;

// One prefix-length class in use, as a lookup reads it.
struct SpdClass {
  Ipv4 peer_mask;
  Ipv4 local_mask;
  std::uint16_t cls;  // SpdTable class: peer_len * 33 + local_len
};

// The classes in use, most specific first, and the table; immutable once published.
struct SpdClasses {
  std::vector<SpdClass> c;
  const SpdTable* table = nullptr;
};

class OutboundSpd {
 public:
  OutboundSpd(Reclaimer& reclaimer, int socket_id) noexcept
      : reclaimer_(reclaimer), socket_id_(socket_id) {}
  ~OutboundSpd();  // only once no worker can look up any more (after drain)
  OutboundSpd(const OutboundSpd&) = delete;
  OutboundSpd& operator=(const OutboundSpd&) = delete;

  // ---- control thread ----
  // Creates the table for up to `capacity` policies (before any other call).
  Result<void> init(unsigned capacity);
  PolicySlot* find(const Ipv4Prefix& local, const Ipv4Prefix& peer) const noexcept;
  // New policy pointing at `sa` (nullptr: a trap), linked at once (one table insert) or, in a
  // batch, at commit_batch(). Prefixes must have no host bits set.
  Result<PolicySlot*> add(const Ipv4Prefix& local, const Ipv4Prefix& peer, OutboundSa* sa);
  // Unlink the policy (one table erase); the slot is freed after a grace period. In a batch:
  // clears its SA at once (set_sa(slot, nullptr): the caller frees the SA after a grace
  // period) and unlinks it at commit_batch().
  Result<void> remove(PolicySlot* slot);
  // Re-point the policy to `sa` (a rekey, a trap filled; nullptr: no SA, trapped) and return
  // the SA it had. A linked policy's table data is replaced at once, in or out of a batch (one
  // atomic store, no change of structure); the old SA is the caller's to free after a grace
  // period.
  OutboundSa* set_sa(PolicySlot* slot, OutboundSa* sa) noexcept;
  // Batches nest; the outermost commit_batch() applies what changed. If a table insert fails
  // (table full) that policy stays unlinked and is retried by the next commit; the error is
  // returned, everything else is applied.
  void begin_batch() noexcept { ++batch_depth_; }
  Result<void> commit_batch();
  bool in_batch() const noexcept { return batch_depth_ != 0; }
  std::size_t size() const noexcept { return policies_.size(); }
  // Prefix-length classes in the published lookup structure (a lookup probes up to this many).
  std::size_t classes() const noexcept;
  // How many times tombstones filled the table and it was compacted (telemetry, tests).
  std::uint64_t compactions() const noexcept { return compactions_; }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [k, slot] : policies_) f(*slot);
  }

  // ---- workers: lock-free, no allocation ----
  void lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out) const noexcept;
  // As lookup, plus slots[i]: the matching policy when it has no SA (out[i] null: trapped),
  // else nullptr (no policy, or an SA in out[i]). The slot stays valid until the caller's next
  // quiescent state.
  void lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out,
              PolicySlot** slots) const noexcept;

 private:
  using Key = std::tuple<Ipv4, std::uint8_t, Ipv4, std::uint8_t>;
  static Key key(const Ipv4Prefix& l, const Ipv4Prefix& p) noexcept {
    return {l.addr, l.len, p.addr, p.len};
  }
  static constexpr unsigned kLens = 33;  // prefix lengths 0..32; class index peer * 33 + local
  // Brings the table in line with policies_ for `k`; counts classes that appear or empty.
  Result<void> apply(const Key& k, bool& classes_changed);
  // Inserts or re-points `k`, compacting the table first when tombstones fill it.
  Result<void> put(const Key& k, PolicySlot* slot);
  // What the table holds for a policy: its SA, or the slot tagged with kTrapTag.
  static std::uintptr_t table_data(PolicySlot* slot) noexcept;
  // Publishes the classes counted in class_count_ (classes_changed) or, with `keep_classes`,
  // the published list again (a compaction), with table_.
  void publish(bool keep_classes);

  Reclaimer& reclaimer_;
  int socket_id_;
  SpdTable* table_ = nullptr;            // the current table (the published one)
  bool retired_pending_ = false;         // a compacted-away table waits for its grace period
  std::uint64_t compactions_ = 0;
  std::map<Key, PolicySlot*> policies_;  // what the control side wants
  std::map<Key, PolicySlot*> linked_;    // what is in the table
  std::vector<Key> dirty_;               // keys whose policies_ and linked_ may differ
  std::array<std::uint32_t, kLens * kLens> class_count_{};  // linked policies per class
  unsigned batch_depth_ = 0;
  alignas(64) std::atomic<SpdClasses*> classes_{nullptr};
};

}  // namespace ipsecgw::dp
