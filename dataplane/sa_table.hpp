// The SA tables the workers read without locks, written by one control thread while the
// workers keep forwarding.
//
//  - InboundSaTable: SPI -> InboundSa*, an rte_hash created with RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF.
//  - OutboundSpd: (inner src, inner dst) -> the OutboundSa* of the matching tunnel policy
//    (local subnet, peer subnet), longest prefixes first: one lock-free rte_hash probed per
//    prefix-length class. A rekey re-points a policy to the new SA with one atomic store;
//    adding/removing a policy is one hash insert/delete (dataplane/spd.hpp).
//  - Reclaimer: rte_rcu_qsbr. The writer unlinks, takes a token, and frees (wipes keys) once all
//    workers reported a quiescent state past it — checked without blocking, once per control
//    loop iteration (publish new, synchronize once per batch, free old).
//  - DpSaInstaller: the SaInstaller (dataplane/api) over these tables, used by the static config
//    and by IKE.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/api/sa_installer.hpp"
#include "dataplane/sa.hpp"

struct rte_rcu_qsbr;

namespace ipsecgw::dp {

// RCU for workers. Thread ids are 0..max_threads-1 (one per worker lcore).
class Rcu {
 public:
  static Result<std::unique_ptr<Rcu>> create(unsigned max_threads);
  ~Rcu();
  rte_rcu_qsbr* qsbr() noexcept { return v_; }
  // Worker side (cheap, call once per poll loop iteration or every N loops).
  void register_thread(unsigned tid) noexcept;
  void unregister_thread(unsigned tid) noexcept;
  void online(unsigned tid) noexcept;
  void offline(unsigned tid) noexcept;  // before sleeping/blocking
  void quiescent(unsigned tid) noexcept;

 private:
  Rcu() = default;
  rte_rcu_qsbr* v_ = nullptr;
};

class InboundSaTable;
class OutboundSpd;
struct PolicySlot;

// A worker's own direct-mapped SPI -> InboundSa* cache in front of the inbound hash (rte_hash:
// ~190 instructions and a few dependent misses per key; a hit here: one line, ~10
// instructions). One per worker (WorkerCtx), written only by that worker; a fixed size, not
// per tunnel. Only SAs the hash returned are cached (an unknown SPI always goes to the hash).
//
// Correctness: DpSaInstaller bumps an inbound generation counter whenever an inbound SA is
// deleted or replaced, after unlinking it from the hash and before handing it to the
// Reclaimer (i.e. before the grace period's token is taken: the bump is part of the unlink).
// An entry is used only when it carries the generation read at the start of this lookup, so
// a worker that has passed a quiescent state (or come online) after the unlink never uses a
// pointer to a deleted or replaced SA, which it could otherwise keep across quiescent states;
// a worker that read the old generation is inside the grace period that keeps the SA alive.
// Any delete or replace empties every worker's cache at once (rekeys are rare; the entries
// refill from the hash). Entries hold the generation's low 32 bits; the cache is emptied when
// the high half changes (once per 2^32 deletes) or when it is used with another installer.
struct InboundSaCache {
  static constexpr unsigned kBits = 14;
  static constexpr unsigned kSlots = 1u << kBits;  // 16,384 x 16 bytes = 256 KiB
  struct Entry {
    std::uint32_t spi;
    std::uint32_t gen;  // low half of the installer's inbound generation when filled
    InboundSa* sa;      // nullptr: empty
  };
  static unsigned slot(std::uint32_t spi) noexcept {
    return static_cast<unsigned>((spi * 0x9E3779B1u) >> (32 - kBits));  // Fibonacci hashing
  }
  std::uint64_t owner = 0;  // the DpSaInstaller serial the entries are from (0: none)
  std::uint64_t epoch = 0;  // the generation's high half the entries are of
  std::uint64_t misses = 0;  // SPIs looked up in the hash through this cache (tests; not exported)
  alignas(64) Entry e[kSlots] = {};
};

// Threading: the control thread is the ONLY writer (every member except lookup_*; no locks
// inside). Workers call lookup_* while online in the Rcu and keep no SA pointer past a quiescent().
// The destructor drains: workers must be stopped or offline by then.
class DpSaInstaller final : public SaInstaller {
 public:
  // capacity: max SAs per direction.
  static Result<std::unique_ptr<DpSaInstaller>> create(Rcu& rcu, unsigned capacity,
                                                       int socket_id = -1);
  ~DpSaInstaller() override;

  Result<std::uint32_t> allocate_spi() override;
  void release_spi(std::uint32_t spi) override;
  Result<void> add_sa(SaSpec spec) override;
  Result<void> del_sa(Direction dir, std::uint32_t spi) override;
  std::optional<SaCounters> query_sa(Direction dir, std::uint32_t spi) override;
  Result<void> install_trap(std::uint32_t conn_id, Ipv4Prefix local_subnet,
                            Ipv4Prefix peer_subnet) override;
  Result<void> remove_trap(std::uint32_t conn_id) override;
  Result<void> set_outbound_mtu(std::uint32_t spi, std::uint16_t mtu) override;
  // Also reports kAcquire for trap policies a worker raised one on since the last poll.
  std::vector<SaEvent> poll_events() override;

  // Batched install (start-up with thousands of static SAs, bursts of IKE installs): between
  // begin_batch() and commit_batch() outbound policy changes (new tunnels, deletions, traps)
  // are kept control-side and applied to the SPD at commit_batch(), all at once for the
  // workers. Each policy change costs one hash operation batched or not (the rte_acl SPD
  // rebuilt everything per change, so batches were needed for speed). Inbound SAs and rekeys of an
  // existing tunnel take effect at once as always; a tunnel added in the batch matches from the
  // commit on; one removed in the batch is held (its packets dropped as trapped) until then.
  // Batches nest. See OutboundSpd (dataplane/spd.hpp).
  void begin_batch() noexcept;
  Result<void> commit_batch();

  // Control loop: free what past grace periods allow. Returns how many were freed.
  unsigned reclaim() noexcept;
  // Block until everything unlinked so far is freed (shutdown, tests).
  void drain() noexcept;
  // How many deferred frees are still waiting for a grace period (telemetry, tests).
  std::size_t pending_reclaims() const noexcept;

  // ---- worker side: lock-free, no allocation ----
  // out[i] = inbound SA for spis[i] (host order) or nullptr. n <= 64.
  void lookup_inbound(const std::uint32_t* spis, unsigned n, InboundSa** out) const noexcept;
  // The same through the worker's own cache (see InboundSaCache): hits skip the hash.
  void lookup_inbound(const std::uint32_t* spis, unsigned n, InboundSa** out,
                      InboundSaCache& cache) const noexcept;
  // Bumped on every inbound SA delete or replace (see InboundSaCache). Tests.
  std::uint64_t inbound_generation() const noexcept;
  // out[i] = outbound SA for the policy matching (src[i], dst[i]) (host order) or nullptr.
  void lookup_outbound(const Ipv4* src, const Ipv4* dst, unsigned n,
                       OutboundSa** out) const noexcept;
  // As above, plus policies[i]: the matching policy when it has no SA, else nullptr.
  // out[i] == nullptr with policies[i] != nullptr: the tunnel is trapped (no SA yet): drop,
  // never forward in the clear, and raise_acquire(policies[i]). (A policy with an SA is not
  // returned: the SPD's table holds the SA itself, so the slot is not read; see
  // dataplane/spd.hpp.)
  void lookup_outbound(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out,
                       PolicySlot** policies) const noexcept;
  // Ask the control plane for an SA for a trapped policy: at most one acquire per policy per
  // acquire_interval() TSC cycles (about 1 s), whichever workers see its packets.
  void raise_acquire(PolicySlot* policy, std::uint64_t now_tsc) const noexcept;
  std::uint64_t acquire_interval() const noexcept;

  // The policy with exactly these selectors, or nullptr (control thread only; tests).
  const PolicySlot* find_policy(Ipv4Prefix local_subnet, Ipv4Prefix peer_subnet) const noexcept;
  // How many times the SPD's table was compacted (removed policies' entries dropped by
  // copying the live ones into a fresh table; dataplane/spd.hpp). Control thread only; tests.
  std::uint64_t spd_compactions() const noexcept;

  // Every installed SA (control thread only), e.g. for telemetry and the exit report.
  std::vector<const SaHead*> all_sas() const;

 private:
  DpSaInstaller() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ipsecgw::dp
