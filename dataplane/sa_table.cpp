// DpSaInstaller: the SA tables the workers read without locks (see dataplane/sa_table.hpp).
//
// Threading contract:
//  - ONE writer: every DpSaInstaller member except lookup_inbound/lookup_outbound runs on the
//    control thread only (the control lcore's loop, the static config loader before workers
//    start, IKE). Nothing here takes a lock; two writers would corrupt the tables.
//  - Workers call lookup_inbound/lookup_outbound between Rcu::online and Rcu::offline, and do
//    not keep an SA pointer across a Rcu::quiescent call.
//  - Unlink, then free after a grace period: a deleted or replaced SA (and inbound hash key
//    slot, SPD class list, compacted SPD table or policy slot) goes to the Reclaimer, which
//    frees it (sa_destroy wipes the keys) once every online worker has reported a quiescent
//    state past the unlink. The control loop calls reclaim() once per iteration; drain()
//    blocks (shutdown, tests).
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_prefetch.h>
#include <rte_hash_crc.h>
#include <sys/random.h>

#include <atomic>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "dataplane/reclaimer.hpp"
#include "dataplane/sa_events.hpp"
#include "dataplane/sa_table.hpp"
#include "dataplane/spd.hpp"

namespace ipsecgw::dp {
namespace {

std::atomic<unsigned> g_hash_seq{0};  // rte_hash names must be unique per process
std::atomic<std::uint64_t> g_installer_serial{0};  // InboundSaCache::owner: never 0, never reused

std::string hex_spi(std::uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08" PRIx32, spi);
  return b;
}

constexpr unsigned kMaxCapacity = 1u << 20;

// SaHead::published shares the first cache line with the fields a worker reads first.
static_assert(offsetof(SaHead, published) + sizeof(SaHead::published) <= 64);

// The SA is fully built: release it before linking it into a table (see SaHead::published).
void mark_published(SaHead* sa) noexcept {
  sa->published.store(kSaPublished, std::memory_order_release);
}

}  // namespace

// SPI (host order) -> InboundSa*, an rte_hash with lock-free concurrent readers
// (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF, which also implies "no free on delete": a deleted
// key's slot stays reserved until free_position(), called after the grace period, so a reader
// in the middle of a lookup never sees the slot reused for another key).
class InboundSaTable {
 public:
  static Result<std::unique_ptr<InboundSaTable>> create(unsigned capacity, int socket_id) {
    char name[RTE_HASH_NAMESIZE];
    std::snprintf(name, sizeof name, "ipsecgw_sa_in_%u", g_hash_seq.fetch_add(1));
    rte_hash_parameters p{};
    p.name = name;
    // Headroom: cuckoo hashing fills up before 100%, and deleted keys hold their slots until
    // their grace period ends.
    p.entries = capacity * 2 < 64 ? 64 : capacity * 2;
    p.key_len = sizeof(std::uint32_t);
    p.hash_func = rte_hash_crc;
    p.hash_func_init_val = 0;
    p.socket_id = socket_id;
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
    rte_hash* h = rte_hash_create(&p);
    if (h == nullptr)
      return make_error(std::string("inbound SA table: rte_hash_create failed: ") +
                        rte_strerror(rte_errno));
    std::unique_ptr<InboundSaTable> t(new InboundSaTable());
    t->h_ = h;
    return t;
  }
  ~InboundSaTable() { rte_hash_free(h_); }

  // Adds, or atomically replaces the data of an existing key (readers see old or new).
  Result<void> insert(std::uint32_t spi, InboundSa* sa) {
    int rc = rte_hash_add_key_data(h_, &spi, sa);
    if (rc < 0)
      return make_error("spi: cannot add inbound SPI " + hex_spi(spi) +
                        " to the hash: " + rte_strerror(-rc));
    return {};
  }
  // Unlinks; returns the key position to free after the grace period (or < 0).
  std::int32_t erase(std::uint32_t spi) noexcept { return rte_hash_del_key(h_, &spi); }
  void free_position(std::int32_t pos) noexcept { rte_hash_free_key_with_position(h_, pos); }

  // The lines of an inbound SA that esp_inbound reads or writes for each packet (layout in
  // dataplane/sa.hpp; ipsec-mb reads the key schedule), prefetched as the lookup finds the SA
  // so that with thousands of tunnels their misses overlap: exactly the 7 lines an AES-128 SA
  // with a replay window of up to 256 uses (kSaHotLines, dataplane/sa.hpp).
  static void prefetch_for_decrypt(const InboundSa* sa) noexcept {
    const auto* p = reinterpret_cast<const char*>(sa);
    for (std::size_t off : kSaHotLines) rte_prefetch0(p + off);
  }

  void lookup(const std::uint32_t* spis, unsigned n, InboundSa** out) const noexcept {
    const void* keys[RTE_HASH_LOOKUP_BULK_MAX];
    void* data[RTE_HASH_LOOKUP_BULK_MAX];
    for (unsigned base = 0; base < n; base += RTE_HASH_LOOKUP_BULK_MAX) {
      const unsigned m = n - base < RTE_HASH_LOOKUP_BULK_MAX ? n - base : RTE_HASH_LOOKUP_BULK_MAX;
      for (unsigned i = 0; i < m; ++i) keys[i] = &spis[base + i];
      std::uint64_t hits = 0;
      if (rte_hash_lookup_bulk_data(h_, keys, m, &hits, data) < 0) hits = 0;
      for (unsigned i = 0; i < m; ++i) {
        InboundSa* sa = (hits >> i) & 1 ? static_cast<InboundSa*>(data[i]) : nullptr;
        if (sa != nullptr && (i == 0 || sa != out[base + i - 1])) prefetch_for_decrypt(sa);
        // Pairs with mark_published() before insert(): the acquire rte_hash already did
        // inside librte_hash, repeated where ThreadSanitizer sees it (see SaHead::published).
        // Before the caller reads any field; one load per SA found, on its first line.
        if (sa != nullptr) (void)sa->published.load(std::memory_order_acquire);
        out[base + i] = sa;
      }
    }
  }

 private:
  InboundSaTable() = default;
  rte_hash* h_ = nullptr;
};

struct DpSaInstaller::Impl {
  struct OutEntry {
    OutboundSa* sa;
    PolicySlot* slot;
  };

  Impl(Rcu& r, unsigned cap, int socket)
      : rcu(r), capacity(cap), socket_id(socket), reclaimer(r.qsbr()), spd(reclaimer, socket) {}

  Rcu& rcu;
  unsigned capacity;
  int socket_id;
  Reclaimer reclaimer;
  std::unique_ptr<InboundSaTable> in;
  OutboundSpd spd;
  // Control-side mirrors of what is installed (queries, events, capacity, all_sas).
  std::unordered_map<std::uint32_t, InboundSa*> inbound;
  std::unordered_map<std::uint32_t, OutEntry> outbound;
  std::unordered_set<std::uint32_t> reserved;  // allocate_spi'd, not yet added or released
  std::unordered_map<std::uint32_t, PolicySlot*> traps;  // conn_id -> its trap policy
  std::uint64_t acquire_interval = 0;  // TSC cycles between acquires of one policy
  std::uint64_t events_seen = ~std::uint64_t{0};  // g_sa_events_raised at the last walk
  const std::uint64_t serial = g_installer_serial.fetch_add(1) + 1;
  // Bumped (release) after an inbound SA is unlinked or replaced in the hash and before it is
  // deferred: workers' InboundSaCache entries of older generations are not used.
  std::atomic<std::uint64_t> in_gen{0};
  void bump_inbound_generation() noexcept { in_gen.fetch_add(1, std::memory_order_release); }

  Result<void> add_inbound(SaSpec& spec);
  Result<void> add_outbound(SaSpec& spec);
  template <class S>
  void defer_destroy(S* sa) {
    reclaimer.defer([sa] { sa_destroy(sa); });
  }
};

Result<std::unique_ptr<DpSaInstaller>> DpSaInstaller::create(Rcu& rcu, unsigned capacity,
                                                              int socket_id) {
  if (capacity == 0 || capacity > kMaxCapacity)
    return make_error("capacity: must be 1.." + std::to_string(kMaxCapacity) + ", got " +
                      std::to_string(capacity));
  auto impl = std::make_unique<Impl>(rcu, capacity, socket_id);
  impl->acquire_interval = rte_get_tsc_hz();  // ~1 s
  if (impl->acquire_interval == 0) impl->acquire_interval = 1;
  auto in = InboundSaTable::create(capacity, socket_id);
  if (!in) return make_error(in.error());
  impl->in = std::move(*in);
  if (auto r = impl->spd.init(capacity); !r) return make_error(r.error());
  std::unique_ptr<DpSaInstaller> d(new DpSaInstaller());
  d->impl_ = std::move(impl);
  return d;
}

DpSaInstaller::~DpSaInstaller() {
  if (!impl_) return;
  // Workers must be stopped or offline by now (or drain() would wait for them).
  impl_->reclaimer.drain();
  for (auto& [spi, sa] : impl_->inbound) sa_destroy(sa);
  for (auto& [spi, e] : impl_->outbound) sa_destroy(e.sa);
  // ~OutboundSpd frees the policy slots and the last table; ~InboundSaTable the hash.
}

Result<std::uint32_t> DpSaInstaller::allocate_spi() {
  if (impl_->reserved.size() >= 2 * static_cast<std::size_t>(impl_->capacity) + 64)
    return make_error("spi: too many SPIs reserved and not yet used (release_spi missing?)");
  for (int tries = 0; tries < 1000; ++tries) {
    std::uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v))
      return make_error("spi: getrandom failed");
    // RFC 4303 §2.1: 0 is reserved for local use and 1..255 by IANA.
    if (v < 256) continue;
    if (impl_->inbound.count(v) != 0 || impl_->reserved.count(v) != 0) continue;
    impl_->reserved.insert(v);
    return v;
  }
  return make_error("spi: no free SPI found");
}

void DpSaInstaller::release_spi(std::uint32_t spi) { impl_->reserved.erase(spi); }

Result<void> DpSaInstaller::Impl::add_inbound(SaSpec& spec) {
  auto it = inbound.find(spec.spi);
  if (it != inbound.end() && it->second->conn_id != spec.conn_id)
    return make_error("spi: inbound SPI " + hex_spi(spec.spi) +
                      " is already installed for connection " +
                      std::to_string(it->second->conn_id));
  if (it == inbound.end() && inbound.size() >= capacity)
    return make_error("capacity: inbound SA table is full (" + std::to_string(capacity) + ")");
  auto sa = sa_create<InboundSa>(spec, socket_id);
  if (!sa) return make_error(sa.error());
  mark_published(*sa);
  // Add, or (same SPI, same connection: a static SA re-keyed) replace the data atomically.
  if (auto r = in->insert(spec.spi, *sa); !r) {
    sa_destroy(*sa);
    return r;
  }
  if (it != inbound.end()) {
    bump_inbound_generation();  // the old SA is unlinked: no cache may return it from now on
    defer_destroy(it->second);
    it->second = *sa;
  } else {
    inbound.emplace(spec.spi, *sa);
  }
  reserved.erase(spec.spi);
  return {};
}

Result<void> DpSaInstaller::Impl::add_outbound(SaSpec& spec) {
  PolicySlot* slot = spd.find(spec.local_subnet, spec.peer_subnet);
  auto it = outbound.find(spec.spi);
  if (it != outbound.end() && it->second.slot != slot)
    return make_error("spi: outbound SPI " + hex_spi(spec.spi) +
                      " is already installed for other selectors (connection " +
                      std::to_string(it->second.sa->conn_id) + ")");
  if (slot == nullptr && spd.size() >= capacity)
    return make_error("capacity: outbound policy table is full (" + std::to_string(capacity) +
                      ")");
  auto created = sa_create<OutboundSa>(spec, socket_id);
  if (!created) return make_error(created.error());
  OutboundSa* sa = *created;
  // Outbound SAs reach workers as the SPD table's data, like inbound SAs through their hash:
  // published first (see SaHead::published).
  mark_published(sa);
  if (slot != nullptr) {
    // Make-before-break rekey: one store re-points the tunnel; the old SA is freed after the
    // grace period (RFC 4301 §4.4.2: the SAD entry is replaced, the SPD entry stays). A trap
    // (no SA) is filled the same way.
    OutboundSa* old = spd.set_sa(slot, sa);
    if (old != nullptr) {
      outbound.erase(old->spi);
      defer_destroy(old);
    }
    if (!slot->trapped) slot->conn_id = spec.conn_id;
  } else {
    auto s = spd.add(spec.local_subnet, spec.peer_subnet, sa);
    if (!s) {
      sa_destroy(sa);
      return make_error(s.error());
    }
    slot = *s;
    slot->conn_id = spec.conn_id;
  }
  outbound[spec.spi] = OutEntry{sa, slot};
  return {};
}

Result<void> DpSaInstaller::add_sa(SaSpec spec) {
  return spec.dir == Direction::kInbound ? impl_->add_inbound(spec) : impl_->add_outbound(spec);
}

Result<void> DpSaInstaller::del_sa(Direction dir, std::uint32_t spi) {
  Impl& m = *impl_;
  if (dir == Direction::kInbound) {
    auto it = m.inbound.find(spi);
    if (it == m.inbound.end()) return make_error("spi: no inbound SA " + hex_spi(spi));
    const std::int32_t pos = m.in->erase(spi);
    if (pos < 0)
      return make_error("spi: inbound SA " + hex_spi(spi) + " missing from the hash");
    m.bump_inbound_generation();  // before the defer: see InboundSaCache
    InboundSa* sa = it->second;
    m.inbound.erase(it);
    InboundSaTable* tbl = m.in.get();
    m.reclaimer.defer([tbl, pos, sa] {
      tbl->free_position(pos);
      sa_destroy(sa);
    });
    return {};
  }
  auto it = m.outbound.find(spi);
  if (it == m.outbound.end()) return make_error("spi: no outbound SA " + hex_spi(spi));
  // The tunnel's policy goes with its current SA (its slot is freed by the SPD after the grace
  // period), unless the connection trapped it: then the slot stays, empty, so the tunnel's
  // packets are held and acquire a new SA instead of becoming unmatched traffic.
  PolicySlot* slot = it->second.slot;
  if (slot->trapped) {
    m.spd.set_sa(slot, nullptr);
  } else if (auto r = m.spd.remove(slot); !r) {
    return r;
  }
  m.defer_destroy(it->second.sa);
  m.outbound.erase(it);
  return {};
}

std::optional<SaCounters> DpSaInstaller::query_sa(Direction dir, std::uint32_t spi) {
  if (dir == Direction::kInbound) {
    auto it = impl_->inbound.find(spi);
    if (it == impl_->inbound.end()) return std::nullopt;
    return sa_read_counters(*it->second);
  }
  auto it = impl_->outbound.find(spi);
  if (it == impl_->outbound.end()) return std::nullopt;
  return sa_read_counters(*it->second.sa);
}

Result<void> DpSaInstaller::install_trap(std::uint32_t conn_id, Ipv4Prefix local_subnet,
                                         Ipv4Prefix peer_subnet) {
  Impl& m = *impl_;
  if ((local_subnet.addr & ~local_subnet.mask()) != 0 || local_subnet.len > 32 ||
      (peer_subnet.addr & ~peer_subnet.mask()) != 0 || peer_subnet.len > 32)
    return make_error("trap: selectors " + format_prefix(local_subnet) + " -> " +
                      format_prefix(peer_subnet) + " have host bits set");
  PolicySlot* slot = m.spd.find(local_subnet, peer_subnet);
  auto cur = m.traps.find(conn_id);
  if (cur != m.traps.end() && cur->second == slot) return {};  // already trapped
  if (slot != nullptr && slot->trapped)
    return make_error("trap: selectors " + format_prefix(local_subnet) + " -> " +
                      format_prefix(peer_subnet) + " are trapped by connection " +
                      std::to_string(slot->conn_id));
  if (slot == nullptr && m.spd.size() >= m.capacity)
    return make_error("capacity: outbound policy table is full (" +
                      std::to_string(m.capacity) + ")");
  if (cur != m.traps.end())  // the connection's selectors changed: drop the old trap
    if (auto r = remove_trap(conn_id); !r) return r;
  if (slot == nullptr) {
    auto s = m.spd.add(local_subnet, peer_subnet, nullptr);
    if (!s) return make_error(s.error());
    slot = *s;
  }
  slot->trapped = true;
  slot->conn_id = conn_id;
  m.traps[conn_id] = slot;
  return {};
}

Result<void> DpSaInstaller::remove_trap(std::uint32_t conn_id) {
  Impl& m = *impl_;
  auto it = m.traps.find(conn_id);
  if (it == m.traps.end()) return make_error("trap: none for connection " + std::to_string(conn_id));
  PolicySlot* slot = it->second;
  // An SA still installed keeps its policy (del_sa removes both later); an empty trap goes now.
  if (slot->sa == nullptr) {
    if (auto r = m.spd.remove(slot); !r) return r;
  } else {
    slot->trapped = false;
  }
  m.traps.erase(it);
  return {};
}

Result<void> DpSaInstaller::set_outbound_mtu(std::uint32_t spi, std::uint16_t mtu) {
  // The range sa_create accepts for SaSpec::mtu.
  if (mtu < 576 || mtu > 9216)
    return make_error("mtu: must be 576..9216, got " + std::to_string(mtu));
  auto it = impl_->outbound.find(spi);
  if (it == impl_->outbound.end()) return make_error("spi: no outbound SA " + hex_spi(spi));
  // One relaxed store: a worker sizes each packet with either the old or the new value.
  dp::set_outbound_mtu(*it->second.sa, mtu);
  return {};
}

namespace {
void collect_events(SaHead* sa, std::vector<SaEvent>& out) {
  // Load first: no write to the SA's cache line unless a worker raised something.
  if (sa->events.load(std::memory_order_relaxed) == 0) return;
  const std::uint8_t ev = sa->events.exchange(0, std::memory_order_acq_rel);
  if (ev & kEvSeqExhausted) out.push_back({SaEventKind::kSeqExhausted, sa->dir, sa->spi, sa->conn_id});
  if (ev & kEvSoftLimit) out.push_back({SaEventKind::kSoftLimit, sa->dir, sa->spi, sa->conn_id});
  if (ev & kEvHardLimit) out.push_back({SaEventKind::kHardLimit, sa->dir, sa->spi, sa->conn_id});
}
}  // namespace

std::vector<SaEvent> DpSaInstaller::poll_events() {
  std::vector<SaEvent> out;
  // Walk only when a worker raised something since the last walk (dataplane/sa_events.hpp).
  const std::uint64_t raised = g_sa_events_raised.load(std::memory_order_acquire);
  if (raised == impl_->events_seen) return out;
  impl_->events_seen = raised;
  g_sa_event_walk_visits.fetch_add(
      impl_->inbound.size() + impl_->outbound.size() + impl_->traps.size(),
      std::memory_order_relaxed);
  for (auto& [spi, sa] : impl_->inbound) collect_events(sa, out);
  for (auto& [spi, e] : impl_->outbound) collect_events(e.sa, out);
  for (auto& [conn_id, slot] : impl_->traps) {
    if (!slot->acquire_pending.load(std::memory_order_relaxed)) continue;
    if (slot->acquire_pending.exchange(false, std::memory_order_acq_rel))
      out.push_back({SaEventKind::kAcquire, Direction::kOutbound, 0, conn_id});
  }
  return out;
}

void DpSaInstaller::begin_batch() noexcept { impl_->spd.begin_batch(); }
Result<void> DpSaInstaller::commit_batch() { return impl_->spd.commit_batch(); }

unsigned DpSaInstaller::reclaim() noexcept { return impl_->reclaimer.reclaim(); }
void DpSaInstaller::drain() noexcept { impl_->reclaimer.drain(); }
std::size_t DpSaInstaller::pending_reclaims() const noexcept {
  return impl_->reclaimer.pending();
}

void DpSaInstaller::lookup_inbound(const std::uint32_t* spis, unsigned n, InboundSa** out) const noexcept {
  impl_->in->lookup(spis, n, out);
}

void DpSaInstaller::lookup_inbound(const std::uint32_t* spis, unsigned n, InboundSa** out,
                                   InboundSaCache& c) const noexcept {
  // Acquire: pairs with the bump's release, so a worker that sees the new generation also
  // sees the hash without the old SA.
  const std::uint64_t gen = impl_->in_gen.load(std::memory_order_acquire);
  if (c.owner != impl_->serial || c.epoch != gen >> 32) [[unlikely]] {
    for (auto& e : c.e) e = InboundSaCache::Entry{0, 0, nullptr};
    c.owner = impl_->serial;
    c.epoch = gen >> 32;
  }
  const auto g32 = static_cast<std::uint32_t>(gen);
  // The misses, looked up in the hash in bulk and cached (only SAs found: an unknown SPI is
  // never cached, so a flood of bad SPIs cannot evict the good ones).
  std::uint32_t miss_spi[RTE_HASH_LOOKUP_BULK_MAX];
  unsigned miss_at[RTE_HASH_LOOKUP_BULK_MAX];
  unsigned nm = 0;
  auto resolve = [&] {
    InboundSa* found[RTE_HASH_LOOKUP_BULK_MAX];
    impl_->in->lookup(miss_spi, nm, found);
    c.misses += nm;
    for (unsigned j = 0; j < nm; ++j) {
      out[miss_at[j]] = found[j];
      if (found[j] != nullptr)
        c.e[InboundSaCache::slot(miss_spi[j])] = InboundSaCache::Entry{miss_spi[j], g32, found[j]};
    }
    nm = 0;
  };
  for (unsigned i = 0; i < n; ++i) {
    const InboundSaCache::Entry& e = c.e[InboundSaCache::slot(spis[i])];
    if (e.spi == spis[i] && e.gen == g32 && e.sa != nullptr) [[likely]] {
      out[i] = e.sa;
      // The lines esp_inbound reads, as the hash lookup prefetches them (no acquire load of
      // `published` here: this thread did it when the entry was filled).
      InboundSaTable::prefetch_for_decrypt(e.sa);
      continue;
    }
    miss_spi[nm] = spis[i];
    miss_at[nm++] = i;
    if (nm == RTE_HASH_LOOKUP_BULK_MAX) resolve();
  }
  if (nm != 0) resolve();
}

std::uint64_t DpSaInstaller::inbound_generation() const noexcept {
  return impl_->in_gen.load(std::memory_order_relaxed);
}

void DpSaInstaller::lookup_outbound(const Ipv4* src, const Ipv4* dst, unsigned n,
                                    OutboundSa** out) const noexcept {
  impl_->spd.lookup(src, dst, n, out);
}

void DpSaInstaller::lookup_outbound(const Ipv4* src, const Ipv4* dst, unsigned n, OutboundSa** out,
                                    PolicySlot** policies) const noexcept {
  impl_->spd.lookup(src, dst, n, out, policies);
}

const PolicySlot* DpSaInstaller::find_policy(Ipv4Prefix local_subnet,
                                             Ipv4Prefix peer_subnet) const noexcept {
  return impl_->spd.find(local_subnet, peer_subnet);
}

std::uint64_t DpSaInstaller::spd_compactions() const noexcept {
  return impl_->spd.compactions();
}

void DpSaInstaller::raise_acquire(PolicySlot* policy, std::uint64_t now_tsc) const noexcept {
  policy_raise_acquire(*policy, now_tsc, impl_->acquire_interval);
}

std::uint64_t DpSaInstaller::acquire_interval() const noexcept {
  return impl_->acquire_interval;
}

std::vector<const SaHead*> DpSaInstaller::all_sas() const {
  std::vector<const SaHead*> v;
  v.reserve(impl_->inbound.size() + impl_->outbound.size());
  for (auto& [spi, sa] : impl_->inbound) v.push_back(sa);
  for (auto& [spi, e] : impl_->outbound) v.push_back(e.sa);
  return v;
}

}  // namespace ipsecgw::dp
