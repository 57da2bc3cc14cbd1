// OutboundSpd over rte_acl: see dataplane/spd.hpp for the design and the choice of rte_acl.
#include "dataplane/spd.hpp"

#include <rte_acl.h>
#include <rte_byteorder.h>
#include <rte_errno.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace ipsecgw::dp {
namespace {

// The ACL input: rte_acl wants the first field to be one byte and the others in groups of
// four consecutive bytes, in network byte order (rules are given in host order).
struct AclKey {
  std::uint8_t any;  // always 0; matched by a 0/0 bitmask (rte_acl's mandatory 1-byte field)
  std::uint8_t pad[3];
  std::uint32_t src_be;
  std::uint32_t dst_be;
};

enum : unsigned { kFieldAny, kFieldSrc, kFieldDst, kNumFields };

constexpr rte_acl_field_def kFieldDefs[kNumFields] = {
    {RTE_ACL_FIELD_TYPE_BITMASK, sizeof(std::uint8_t), kFieldAny, 0, offsetof(AclKey, any)},
    {RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), kFieldSrc, 1, offsetof(AclKey, src_be)},
    {RTE_ACL_FIELD_TYPE_MASK, sizeof(std::uint32_t), kFieldDst, 2, offsetof(AclKey, dst_be)},
};

RTE_ACL_RULE_DEF(SpdRule, kNumFields);

constexpr unsigned kChunk = 64;

std::atomic<unsigned> g_acl_seq{0};  // rte_acl context names must be unique per process

}  // namespace

SpdTable::~SpdTable() { rte_acl_free(acl); }

OutboundSpd::~OutboundSpd() {
  delete cur_.load(std::memory_order_relaxed);
  for (auto& [k, slot] : policies_) delete slot;
  for (PolicySlot* slot : retired_) delete slot;
}

PolicySlot* OutboundSpd::find(const Ipv4Prefix& local, const Ipv4Prefix& peer) const noexcept {
  auto it = policies_.find(key(local, peer));
  return it == policies_.end() ? nullptr : it->second;
}

Result<SpdTable*> OutboundSpd::build(const std::vector<PolicySlot*>& slots) const {
  auto t = std::make_unique<SpdTable>();
  t->slots = slots;
  if (slots.empty()) return t.release();  // empty table: every lookup misses, no ACL context

  char name[RTE_ACL_NAMESIZE];
  std::snprintf(name, sizeof name, "ipsecgw_spd_%u", g_acl_seq.fetch_add(1));
  rte_acl_param prm{};
  prm.name = name;
  prm.socket_id = socket_id_;
  prm.rule_size = RTE_ACL_RULE_SZ(kNumFields);
  prm.max_rule_num = static_cast<std::uint32_t>(slots.size());
  t->acl = rte_acl_create(&prm);
  if (t->acl == nullptr)
    return make_error(std::string("spd: rte_acl_create failed: ") + rte_strerror(rte_errno));

  std::vector<SpdRule> rules(slots.size());
  for (std::size_t i = 0; i < slots.size(); ++i) {
    SpdRule& r = rules[i];
    std::memset(&r, 0, sizeof r);
    const PolicySlot& s = *slots[i];
    r.data.category_mask = 1;
    // Most specific wins: peer (dst) prefix length first, then local (src) length.
    r.data.priority = 1 + s.peer_subnet.len * 33 + s.local_subnet.len;
    r.data.userdata = static_cast<std::uint32_t>(i + 1);  // 0 means "no match"
    r.field[kFieldAny].value.u8 = 0;
    r.field[kFieldAny].mask_range.u8 = 0;
    r.field[kFieldSrc].value.u32 = s.local_subnet.addr;
    r.field[kFieldSrc].mask_range.u32 = s.local_subnet.len;
    r.field[kFieldDst].value.u32 = s.peer_subnet.addr;
    r.field[kFieldDst].mask_range.u32 = s.peer_subnet.len;
  }
  int rc = rte_acl_add_rules(t->acl, reinterpret_cast<const rte_acl_rule*>(rules.data()),
                             static_cast<std::uint32_t>(rules.size()));
  if (rc != 0) return make_error(std::string("spd: rte_acl_add_rules failed: ") + rte_strerror(-rc));

  rte_acl_config cfg{};
  cfg.num_categories = 1;
  cfg.num_fields = kNumFields;
  std::memcpy(cfg.defs, kFieldDefs, sizeof kFieldDefs);
  cfg.max_size = 0;
  rc = rte_acl_build(t->acl, &cfg);
  if (rc != 0) return make_error(std::string("spd: rte_acl_build failed: ") + rte_strerror(-rc));
  return t.release();
}

void OutboundSpd::publish(SpdTable* t) {
  SpdTable* old = cur_.exchange(t, std::memory_order_acq_rel);  // release: t fully built
  if (old != nullptr) reclaimer_.defer([old] { delete old; });
}

Result<void> OutboundSpd::rebuild() {
  std::vector<PolicySlot*> slots;
  slots.reserve(policies_.size());
  for (auto& [k, s] : policies_) slots.push_back(s);
  auto t = build(slots);
  if (!t) return make_error(t.error());
  publish(*t);
  dirty_ = false;
  // Workers holding the old table may still read these slots: free them after the grace period.
  for (PolicySlot* slot : retired_) reclaimer_.defer([slot] { delete slot; });
  retired_.clear();
  return {};
}

Result<PolicySlot*> OutboundSpd::add(const Ipv4Prefix& local, const Ipv4Prefix& peer, OutboundSa* sa) {
  auto slot = std::make_unique<PolicySlot>();
  slot->sa.store(sa, std::memory_order_relaxed);
  slot->local_subnet = local;
  slot->peer_subnet = peer;
  auto [it, inserted] = policies_.emplace(key(local, peer), slot.get());
  if (!inserted) return make_error("spd: policy already present");
  if (in_batch()) {
    dirty_ = true;
    return slot.release();
  }
  if (auto r = rebuild(); !r) {
    policies_.erase(it);
    return make_error(r.error());
  }
  return slot.release();
}

Result<void> OutboundSpd::remove(PolicySlot* slot) {
  auto it = policies_.find(key(slot->local_subnet, slot->peer_subnet));
  if (it == policies_.end() || it->second != slot) return make_error("spd: unknown policy");
  policies_.erase(it);
  retired_.push_back(slot);
  if (in_batch()) {
    // Still in the published table until the commit: matched packets are held, not sent.
    slot->sa.store(nullptr, std::memory_order_release);
    dirty_ = true;
    return {};
  }
  if (auto r = rebuild(); !r) {  // nothing changes: the policy goes back
    retired_.pop_back();
    policies_.emplace(key(slot->local_subnet, slot->peer_subnet), slot);
    return r;
  }
  return {};
}

Result<void> OutboundSpd::commit_batch() {
  if (batch_depth_ == 0) return make_error("spd: commit_batch without begin_batch");
  if (--batch_depth_ != 0 || !dirty_) return {};
  return rebuild();
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
  const SpdTable* t = cur_.load(std::memory_order_acquire);
  if (t == nullptr || t->acl == nullptr) {
    for (unsigned i = 0; i < n; ++i) {
      out[i] = nullptr;
      slots[i] = nullptr;
    }
    return;
  }
  AclKey keys[kChunk];
  const std::uint8_t* data[kChunk];
  std::uint32_t res[kChunk];
  std::uint8_t key_of[kChunk];  // packet -> its key (consecutive packets of one pair share one)
  static_assert(kChunk <= 256);
  for (unsigned base = 0; base < n; base += kChunk) {
    const unsigned m = n - base < kChunk ? n - base : kChunk;
    // A run of packets with the same (src, dst), as a burst of one flow brings them, is
    // classified once: rte_acl_classify costs ~200 instructions per key.
    unsigned u = 0;
    for (unsigned i = 0; i < m; ++i) {
      const unsigned k = base + i;
      if (i == 0 || src[k] != src[k - 1] || dst[k] != dst[k - 1]) {
        keys[u] = AclKey{0, {0, 0, 0}, rte_cpu_to_be_32(src[k]), rte_cpu_to_be_32(dst[k])};
        data[u] = reinterpret_cast<const std::uint8_t*>(&keys[u]);
        ++u;
      }
      key_of[i] = static_cast<std::uint8_t>(u - 1);
    }
    if (rte_acl_classify(t->acl, data, res, u, 1) != 0) {
      for (unsigned i = 0; i < m; ++i) {
        out[base + i] = nullptr;
        slots[base + i] = nullptr;
      }
      continue;
    }
    for (unsigned i = 0; i < m; ++i) {
      const std::uint32_t r = res[key_of[i]];
      PolicySlot* s = r == 0 ? nullptr : t->slots[r - 1];
      slots[base + i] = s;
      out[base + i] = s == nullptr ? nullptr : s->sa.load(std::memory_order_acquire);
    }
  }
}

}  // namespace ipsecgw::dp
