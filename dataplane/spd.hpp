// OutboundSpd: the outbound security policy database (private to dataplane/sa_table.cpp).
//
// A policy is one tunnel's selectors (local subnet, peer subnet), i.e. RFC 4301 §4.4.1 SPD
// entries restricted to what our connections use: inner src in local_subnet and inner dst in
// peer_subnet, any protocol and port. Each policy owns a PolicySlot holding the tunnel's current
// outbound SA in one std::atomic<OutboundSa*>: a rekey re-points it with one store (make-before-break).
//
// Lookup structure: DPDK rte_acl over two MASK fields (src, dst), rebuilt from all policies on
// every policy add/remove and published with one atomic pointer store; the old one is freed by
// the Reclaimer after a grace period. Why rte_acl: classification is lock-free, read-only, in
// bulk (SIMD over a burst), its cost does not grow with the number of policies the way a list
// scan would, and its memory is proportional to the rules (rte_lpm's DIR-24-8 would cost 64 MiB
// per rebuilt table). Rebuilding costs milliseconds, which is fine for the control plane (policy
// changes are tunnel up/down; rekeys only re-point a slot and rebuild nothing).
//
// Most specific wins: priority = 1 + peer_len * 33 + local_len, so the longest peer (dst)
// prefix wins first, then the longest local (src) prefix. Two different matching policies can
// never tie (equal lengths and both matching means equal prefixes).
//
// Batches (begin_batch / commit_batch): while a batch is open, add() and remove() change only
// the control-side map and the table is built and published once, at commit_batch(), so
// installing N policies costs one build of N rules instead of N builds (start-up with
// thousands of static connections was quadratic). Until the commit the previous table keeps
// serving: an added policy does not match yet; a removed one still matches, with its SA
// pointer already cleared, so its packets are held as trapped (never sent in the clear); its
// slot is freed after the grace period that follows the commit's publish.
//
// Threads: the control thread is the only writer; workers call lookup() and must be RCU readers.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "common/result.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/reclaimer.hpp"
#include "dataplane/sa.hpp"

struct rte_acl_ctx;

namespace ipsecgw::dp {

// A policy slot with a null `sa` is a trap (SaInstaller::install_trap): it still matches, so
// its packets are held back (DropReason::kTrapped) rather than treated as unmatched, and the
// worker raises an acquire through it, rate-limited by `acquire_tsc`.
struct alignas(64) PolicySlot {
  std::atomic<OutboundSa*> sa{nullptr};  // the tunnel's current outbound SA; null: trapped, no SA yet
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
}

// One immutable, published lookup structure.
struct SpdTable {
  rte_acl_ctx* acl = nullptr;
  std::vector<PolicySlot*> slots;  // ACL userdata u -> slots[u - 1]
  ~SpdTable();
};

class OutboundSpd {
 public:
  OutboundSpd(Reclaimer& reclaimer, int socket_id) noexcept
      : reclaimer_(reclaimer), socket_id_(socket_id) {}
  ~OutboundSpd();  // only once no worker can look up any more (after drain)
  OutboundSpd(const OutboundSpd&) = delete;
  OutboundSpd& operator=(const OutboundSpd&) = delete;

  // ---- control thread ----
  PolicySlot* find(const Ipv4Prefix& local, const Ipv4Prefix& peer) const noexcept;
  // New policy pointing at `sa` (nullptr: a trap); builds and publishes a new table (old one
  // deferred-freed), or, in a batch, leaves that to commit_batch().
  Result<PolicySlot*> add(const Ipv4Prefix& local, const Ipv4Prefix& peer, OutboundSa* sa);
  // Unlink the policy: publish a table without it; the slot is freed after a grace period.
  // Returns an error only when the new table cannot be built (nothing changes then). In a
  // batch: clears slot->sa (the caller frees the SA after a grace period) and unlinks it at
  // commit_batch().
  Result<void> remove(PolicySlot* slot);
  // Batches nest; the outermost commit_batch() builds and publishes one table if anything
  // changed. On a build error the batch is closed, the previous table keeps serving and the
  // next add/remove/commit builds again.
  void begin_batch() noexcept { ++batch_depth_; }
  Result<void> commit_batch();
  bool in_batch() const noexcept { return batch_depth_ != 0; }
  std::size_t size() const noexcept { return policies_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [k, slot] : policies_) f(*slot);
  }

  // ---- workers: lock-free, no allocation ----
  void lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out) const noexcept;
  // As lookup, plus slots[i]: the matching policy or nullptr (out[i] null with slots[i] set:
  // trapped). The slot stays valid until the caller's next quiescent state.
  void lookup(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out,
              PolicySlot** slots) const noexcept;

 private:
  using Key = std::tuple<Ipv4, std::uint8_t, Ipv4, std::uint8_t>;
  static Key key(const Ipv4Prefix& l, const Ipv4Prefix& p) noexcept {
    return {l.addr, l.len, p.addr, p.len};
  }
  Result<SpdTable*> build(const std::vector<PolicySlot*>& slots) const;
  void publish(SpdTable* t);
  // Builds a table from policies_ and publishes it; then frees the retired slots after a grace
  // period. On failure nothing is published and dirty_ stays set.
  Result<void> rebuild();

  Reclaimer& reclaimer_;
  int socket_id_;
  std::map<Key, PolicySlot*> policies_;
  unsigned batch_depth_ = 0;
  bool dirty_ = false;                  // policies_ differs from the published table
  std::vector<PolicySlot*> retired_;    // removed, still in the published table
  alignas(64) std::atomic<SpdTable*> cur_{nullptr};
};

}  // namespace ipsecgw::dp
