// Helpers shared by esp_outbound.cpp and esp_inbound.cpp (per-packet code; not a public API).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "dataplane/esp.hpp"
#include "dataplane/sa.hpp"
#include "dataplane/sa_events.hpp"
#include "dataplane/stats.hpp"

struct rte_mbuf;

namespace ipsecgw::dp::detail {

// The IV follows SPI + seq; its length, the cipher offset, block alignment and ICV length are
// the SA's (SaHead::alg).
constexpr std::uint32_t kEspIvOffset = kEspHeaderLen;

// Network <-> host byte order for the per-packet code. DPDK's rte_cpu_to_be_16 on x86 is an
// `asm volatile` xchg that the compiler can neither fold nor schedule; the builtins compile to
// the same rol/bswap (or movbe) but stay visible to the optimizer.
constexpr std::uint16_t net16(std::uint16_t v) noexcept {
  if constexpr (std::endian::native == std::endian::little) return __builtin_bswap16(v);
  else return v;
}
constexpr std::uint32_t net32(std::uint32_t v) noexcept {
  if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(v);
  else return v;
}

// Counts a drop for the lcore and, when the SA is known, for the SA (relaxed: drops are rare).
inline void count_drop(LcoreStats& st, SaHead* sa, DropReason r) noexcept {
  st.drop(r);
  if (sa != nullptr)
    sa->counters.drops[static_cast<unsigned>(r)].fetch_add(1, std::memory_order_relaxed);
}

// The per-burst steps of esp_outbound / esp_inbound are separate functions for reading, one
// call site each: forced inline so that splitting them costs no call, spill or reload per
// packet (the instruction counts in docs/performance.md).
#define IPSECGW_STEP [[gnu::always_inline]] inline

// Per-packet verdict while a burst is processed: kGood or a DropReason.
constexpr std::uint8_t kGood = 0xFF;

// The burst contract (esp.hpp): at most kMaxBurst packets are processed; up to 2 * kMaxBurst
// are accepted and those past kMaxBurst dropped as kBurstOverflow (see drop_overflow).
struct BurstBounds {
  unsigned n;        // packets processed
  unsigned total_n;  // packets accounted for (n plus the overflow)
};
inline BurstBounds burst_bounds(std::size_t n_pkts, std::size_t n_sas) noexcept {
  const auto total = static_cast<unsigned>(std::min({n_pkts, n_sas, std::size_t{2 * kMaxBurst}}));
  return {std::min(total, kMaxBurst), total};
}

// Drops packets [b.n, b.total_n) as kBurstOverflow, counted for the lcore and their SA.
template <class S>
inline void drop_overflow(LcoreStats& st, S* const* sas, std::uint8_t* verdict,
                          BurstBounds b) noexcept {
  for (unsigned i = b.n; i < b.total_n; ++i) {
    verdict[i] = static_cast<std::uint8_t>(DropReason::kBurstOverflow);
    count_drop(st, sas[i], DropReason::kBurstOverflow);
  }
}

// Moves good packets to the front (stable) and bad ones after them (stable), returns #good.
inline std::uint16_t partition_burst(rte_mbuf** pkts, const std::uint8_t* verdict,
                                     unsigned n) noexcept {
  rte_mbuf* bad[2 * kMaxBurst];  // every packet the call accounts for may be bad
  unsigned ng = 0, nb = 0;
  for (unsigned i = 0; i < n; ++i) {
    if (verdict[i] == kGood) pkts[ng++] = pkts[i];
    else bad[nb++] = pkts[i];
  }
  for (unsigned i = 0; i < nb; ++i) pkts[ng + i] = bad[i];
  return static_cast<std::uint16_t>(ng);
}

// An SA's packet, byte and sequence counters have one writer, the SA's owner (dataplane/sa.hpp):
// a relaxed load and store, not a locked read-modify-write (fetch_add is a `lock xadd`, a full
// barrier on x86: ~20 cycles each, three per packet when every packet is its own SA run, as with
// thousands of tunnels). Readers (the control plane) still see whole 64-bit values.
inline std::uint64_t owner_add(std::atomic<std::uint64_t>& c, std::uint64_t v) noexcept {
  const std::uint64_t old = c.load(std::memory_order_relaxed);
  c.store(old + v, std::memory_order_relaxed);
  return old;
}

// Volume limits (RFC 4301 §4.4.2.1 lifetimes in bytes/packets) for a run of packets through one
// SA: given the SA's totals before the run plus what the run has accepted so far, decides
// whether one more packet of `bytes` may pass. Raises the soft event once (when crossing: the
// run bounds then move to the hard limits) and the hard one (also marking the SA dead).
// Returns false when the packet must be dropped (kSaDown). An SA's limits are kNoVolumeLimit
// when it has none (sa_create), so no test for "set" here. The SA's owner only.
inline bool within_limits(SaHead& sa, std::uint64_t pkts_before, std::uint64_t bytes_before,
                          std::uint64_t bytes) noexcept {
  const std::uint64_t p = pkts_before + 1, b = bytes_before + bytes;
  if (p > sa.hard_packets || b > sa.hard_bytes) {
    sa.dead.store(true, std::memory_order_relaxed);
    raise_sa_event(sa, kEvHardLimit);
    return false;
  }
  const bool soft_p = pkts_before < sa.soft_packets && p >= sa.soft_packets;
  const bool soft_b = bytes_before < sa.soft_bytes && b >= sa.soft_bytes;
  if (soft_p) sa.run_max_packets = sa.hard_packets;
  if (soft_b) sa.run_max_bytes = sa.hard_bytes;
  if (soft_p || soft_b) raise_sa_event(sa, kEvSoftLimit);
  return true;
}

// Whether a whole run of k packets / run_bytes bytes stays clear of every volume limit (no soft
// crossing, no hard overrun), so within_limits() need not be called per packet: two compares
// against the SA's run bounds (on the counters' line), once per run of packets of one SA, i.e.
// per packet with thousands of tunnels.
inline bool run_clear_of_limits(const SaHead& sa, std::uint64_t p0, std::uint64_t b0, std::uint64_t k,
                                std::uint64_t run_bytes) noexcept {
  return p0 + k <= sa.run_max_packets && b0 + run_bytes <= sa.run_max_bytes;
}

}  // namespace ipsecgw::dp::detail
