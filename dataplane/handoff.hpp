// Per packet (worker lcores): one owner per SA, both directions (dataplane/sa.hpp). A worker
// claims an unowned SA on first use; packets of an SA another worker owns are collected per
// burst and handed to that worker's ring (outer ESP to `inject`, inner packets to `inner_in`),
// multi-producer, a burst per owner. No allocation, no locks.
#pragma once

#include <rte_mbuf.h>
#include <rte_ring.h>

#include "dataplane/gateway_impl.hpp"

namespace ipsecgw::dp {

// The index of the worker that processes `sa`'s packets, claiming it for `w` when unowned
// (compare-and-swap from kNoOwner: of two workers racing, one wins and both see it).
// S = InboundSa or OutboundSa.
template <class S>
inline std::uint16_t sa_owner(const WorkerCtx& w, S& sa) noexcept {
  std::uint16_t o = sa.owner.load(std::memory_order_acquire);
  if (o != kNoOwner) [[likely]] return o;
  const auto me = static_cast<std::uint16_t>(w.idx);
  if (sa.owner.compare_exchange_strong(o, me, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
    return me;
  return o;
}

// Packets of one burst that go to other workers, each with its owner's index.
struct HandOffs {
  rte_mbuf* pkts[kMaxBurst];
  std::uint16_t to[kMaxBurst];
  unsigned n = 0;

  void add(rte_mbuf* m, std::uint16_t owner) noexcept {
    pkts[n] = m;
    to[n++] = owner;
  }
};

// Sends the collected packets to their owners' `ring` (WorkerCtx::inject or ::inner_in), one
// enqueue per owner, packet order kept per owner. What a full ring does not take is dropped
// as kRingFull; so is a packet for an owner without such a ring (cannot happen: an SA is only
// claimed by a worker, and every worker has both rings when there are two or more).
inline void hand_off_all(GatewayImpl& g, WorkerCtx& w, HandOffs& h,
                         rte_ring* WorkerCtx::*ring) noexcept {
  while (h.n != 0) {
    const std::uint16_t to = h.to[0];
    rte_mbuf* batch[kMaxBurst];
    unsigned nb = 0, rest = 0;
    for (unsigned i = 0; i < h.n; ++i) {
      if (h.to[i] == to) {
        batch[nb++] = h.pkts[i];
      } else {
        h.pkts[rest] = h.pkts[i];
        h.to[rest++] = h.to[i];
      }
    }
    h.n = rest;
    rte_ring* r = to < g.workers ? g.worker_ctxs[to].get()->*ring : nullptr;
    const unsigned sent =
        r != nullptr ? rte_ring_mp_enqueue_burst(r, reinterpret_cast<void**>(batch), nb, nullptr)
                     : 0;
    w.stats.handed_off += sent;
    if (sent < nb) w.stats.drop(DropReason::kRingFull, nb - sent);
    for (unsigned i = sent; i < nb; ++i) rte_pktmbuf_free(batch[i]);
  }
}

}  // namespace ipsecgw::dp
