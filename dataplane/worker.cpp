// Per packet: the worker lcores' poll loop. RX bursts of kMaxBurst (128) from both ports,
// classification, ESP inbound/outbound through dataplane/esp.hpp, inner fragmentation, L2
// rewrite and TX.
// No allocation (except mbufs), no locks, no exceptions, no syscalls on this path; every packet
// that is not transmitted or punted is counted under a DropReason and freed here.
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip_frag.h>
#include <rte_lcore.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include <algorithm>

#include "dataplane/gateway_impl.hpp"
#include "dataplane/handoff.hpp"

namespace ipsecgw::dp {
namespace {

constexpr std::uint16_t kRxBurst = kMaxBurst;
constexpr unsigned kIdleLoopsBeforeSleep = 1024;

inline void drop(WorkerCtx& w, rte_mbuf* m, DropReason r) noexcept {
  w.stats.drop(r);
  rte_pktmbuf_free(m);
}

void tx_flush(GatewayImpl& g, WorkerCtx& w, Side s) noexcept {
  TxBuf& b = w.tx[static_cast<unsigned>(s)];
  if (b.n == 0) return;
  const PortState& p = g.ports[static_cast<unsigned>(s)];
  unsigned sent;
  if (w.has_txq[static_cast<unsigned>(s)]) {
    sent = rte_eth_tx_burst(p.cfg.port_id, static_cast<std::uint16_t>(w.idx), b.pkts, b.n);
    w.stats.tx_packets += sent;
    for (unsigned i = sent; i < b.n; ++i) drop(w, b.pkts[i], DropReason::kTxFull);
  } else {
    // No TX queue of our own on this port: hand over to worker 0, which owns queue 0.
    sent = rte_ring_enqueue_burst(p.handoff, reinterpret_cast<void**>(b.pkts), b.n, nullptr);
    for (unsigned i = sent; i < b.n; ++i) drop(w, b.pkts[i], DropReason::kRingFull);
  }
  b.n = 0;
}

inline void tx_add(GatewayImpl& g, WorkerCtx& w, Side s, rte_mbuf* m) noexcept {
  TxBuf& b = w.tx[static_cast<unsigned>(s)];
  if (b.n == kTxBufLen) tx_flush(g, w, s);
  b.pkts[b.n++] = m;
}

// IKE goes to its own ring (drained first by the control lcore), everything else to the
// slow-path ring; each ring's overflow has its own drop reason.
inline void punt(WorkerCtx& w, rte_mbuf* m, PuntKind k, std::uint16_t arg = 0) noexcept {
  set_punt(m, k, arg);
  rte_ring* r = w.punt;
  DropReason full = DropReason::kPuntRingFull;
  if (k == PuntKind::kIke) {
    r = w.ike;
    full = DropReason::kIkeRingFull;
  } else if (k == PuntKind::kIkeNew) {
    r = w.ike_new;
    full = DropReason::kIkeNewRingFull;
  }
  if (rte_ring_sp_enqueue(r, m) != 0) {
    drop(w, m, full);
    return;
  }
  w.stats.punted++;
}

// The ring class of an IKE message (RFC 2408 §3.1 header: initiator cookie, responder cookie):
// kIkeNew when the responder cookie is zero or the header is cut short, else kIke.
inline PuntKind ike_kind(const std::uint8_t* isakmp, std::uint32_t len) noexcept {
  if (len < 16) return PuntKind::kIkeNew;
  std::uint64_t rcookie;
  std::memcpy(&rcookie, isakmp + 8, 8);
  return rcookie == 0 ? PuntKind::kIkeNew : PuntKind::kIke;
}

// GCRA (the virtual-scheduling token bucket): true when one more echo reply fits the rate.
inline bool echo_allowed(WorkerCtx& w) noexcept {
  if (w.echo_interval == 0) return false;
  const std::uint64_t now = rte_rdtsc();
  if (w.echo_tat > now && w.echo_tat - now > w.echo_tolerance) return false;
  w.echo_tat = std::max(w.echo_tat, now) + w.echo_interval;
  return true;
}

// Ask the control lcore to resolve `ip` on side `s`, at most once per 100 ms per address from
// this lcore.
void request_resolve(GatewayImpl& g, WorkerCtx& w, Side s, Ipv4 ip) noexcept {
  const std::uint64_t key = neighbor_key(s, ip);
  const unsigned slot = static_cast<unsigned>((key * 0x9E3779B97F4A7C15ull) >> 58);
  const std::uint64_t now = rte_rdtsc();
  if (w.rl_key[slot] == key + 1 && now - w.rl_tsc[slot] < g.hz / 10) return;
  w.rl_key[slot] = key + 1;
  w.rl_tsc[slot] = now;
  void* msg = reinterpret_cast<void*>(static_cast<std::uintptr_t>(key));
  (void)rte_ring_sp_enqueue(w.resolve, msg);  // full: the next miss asks again
}

// The Ethernet header towards one next hop, looked up once per burst and next hop (ARP cache),
// not per packet, and kept while consecutive packets' destinations share that next hop (many
// tunnels' inner hosts behind one router, many peers behind one gateway). Lives for one burst
// only, on the stack of the burst's function, so a route or ARP change takes effect from the
// next burst on, as before (the table itself is read lock-free and may change between any two
// packets anyway).
struct L2Dest {
  Ipv4 dst = 0;         // the last packet destination seen (its next hop is nh)
  Ipv4 nh = 0;          // the next hop hdr is for; 0 = no route
  bool valid = false;   // dst/nh hold a lookup
  bool resolved = false;  // the next hop's MAC is known: hdr is complete
  rte_ether_hdr hdr;    // destination MAC, our port's MAC, IPv4
};

// Fills `c` for next hop `nh` on side `s` (the neighbor lookup: once per burst and next hop).
[[gnu::noinline]] void l2_dest_fill(GatewayImpl& g, Side s, Ipv4 nh, L2Dest& c) noexcept {
  c.valid = true;
  c.nh = nh;
  MacAddr mac;
  c.resolved = c.nh != 0 && g.neigh.lookup(s, c.nh, &mac);
  if (!c.resolved) return;
  std::memcpy(c.hdr.dst_addr.addr_bytes, mac.data(), 6);
  std::memcpy(c.hdr.src_addr.addr_bytes, g.ports[static_cast<unsigned>(s)].mac.data(), 6);
  c.hdr.ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
}

// `c` for destination `dst` on side `s`: as it is when it already holds that destination or
// its next hop (the route lookup inlined: with many tunnels most packets have a new destination
// behind the same next hop).
[[gnu::always_inline]] inline void l2_dest(GatewayImpl& g, Side s, Ipv4 dst, L2Dest& c) noexcept {
  if (c.valid && c.dst == dst) [[likely]] return;
  const Ipv4 nh = next_hop(g.cfg, s, dst);
  c.dst = dst;
  if (c.valid && nh == c.nh) return;  // the same next hop: the same header (or still none)
  l2_dest_fill(g, s, nh, c);
}

// l2_out's cold ends, out of line: no route or no MAC yet; no headroom.
[[gnu::noinline, gnu::cold]] void l2_out_unresolved(GatewayImpl& g, WorkerCtx& w, Side s,
                                                   rte_mbuf* m, const L2Dest& c) noexcept {
  drop(w, m, DropReason::kNoRoute);
  if (c.nh != 0) request_resolve(g, w, s, c.nh);
}
[[gnu::noinline, gnu::cold]] void l2_out_no_headroom(WorkerCtx& w, rte_mbuf* m) noexcept {
  drop(w, m, DropReason::kNoHeadroom);
}

// Prepends Ethernet towards the next hop of IPv4 destination `dst` on side `s` and queues for
// TX. `c`: the burst's cached lookup for side `s`. Inlined in each caller (per packet: a call's
// register saves cost as much as the rest).
[[gnu::always_inline]] inline void l2_out(GatewayImpl& g, WorkerCtx& w, Side s, rte_mbuf* m,
                                          Ipv4 dst, L2Dest& c) noexcept {
  l2_dest(g, s, dst, c);
  if (!c.resolved) [[unlikely]] {
    l2_out_unresolved(g, w, s, m, c);
    return;
  }
  char* p = rte_pktmbuf_prepend(m, kEthHdrLen);
  if (p == nullptr) [[unlikely]] {
    l2_out_no_headroom(w, m);
    return;
  }
  std::memcpy(p, &c.hdr, kEthHdrLen);
  tx_add(g, w, s, m);
}

// A decrypted inner packet (data at its IPv4 header): forward out the protected port. The
// gateway is a router for the inner packet, so the inner TTL is decremented once here
// (RFC 4301 §5.2: after tunnel decapsulation the packet is forwarded as any IP packet).
void route_inner(GatewayImpl& g, WorkerCtx& w, rte_mbuf* m, L2Dest& c) noexcept {
  auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
  if (ip->time_to_live <= 1) {
    drop(w, m, DropReason::kTtlExceeded);
    return;
  }
  if (rte_pktmbuf_pkt_len(m) > g.cfg.protected_port.mtu || m->nb_segs != 1) {
    drop(w, m, DropReason::kInnerTooBig);
    return;
  }
  ttl_decrement(ip);
  w.stats.forwarded++;
  l2_out(g, w, Side::kProtected, m, rte_be_to_cpu_32(ip->dst_addr), c);
}

// Outer packets (data at the outer IPv4 header) addressed to us: look up by SPI, pass
// the packets of SAs owned by another worker to that worker, decrypt and verify the rest as
// one burst, then forward the inner packets. Packets without an SA are counted here (kNoSa).
void esp_in(GatewayImpl& g, WorkerCtx& w, rte_mbuf** pkts, unsigned n) noexcept {
  rte_mbuf* ok[kMaxBurst];
  InboundSa* sas[kMaxBurst];
  // The SPIs as runs of equal ones (a burst usually carries one SA): one SA lookup (the
  // worker's SA cache, else rte_hash) and one owner check per run, not per packet.
  std::uint32_t run_spi[kMaxBurst];
  std::uint8_t run_of[kMaxBurst];
  unsigned runs = 0;
  unsigned k = 0;
  auto add = [&](rte_mbuf* m, std::uint32_t spi) {
    if (runs == 0 || spi != run_spi[runs - 1]) run_spi[runs++] = spi;
    run_of[k] = static_cast<std::uint8_t>(runs - 1);
    ok[k++] = m;
  };
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (esp_layout_recorded(m)) {  // parsed at RX (rx_esp) or by the worker that handed it off
      add(m, esp_recorded_spi(m));
      continue;
    }
    // From the inject ring (reassembled on the control lcore): parsed here, once.
    EspInboundInfo info;
    DropReason why = DropReason::kBadIpHeader;
    if (!esp_inbound_parse(m, &info, &why)) {
      drop(w, m, why);
      continue;
    }
    add(m, info.spi);
  }
  if (k == 0) return;
  InboundSa* run_sa[kMaxBurst];
  std::uint16_t run_owner[kMaxBurst];
  g.inst->lookup_inbound(run_spi, runs, run_sa, *w.sa_cache);
  for (unsigned r = 0; r < runs; ++r)
    run_owner[r] = run_sa[r] != nullptr ? sa_owner(w, *run_sa[r]) : kNoOwner;

  // Keep ours in order; the others go to their owner.
  HandOffs away;
  unsigned mine = 0;
  for (unsigned i = 0; i < k; ++i) {
    const unsigned r = run_of[i];
    const std::uint16_t to = run_owner[r];
    if (to == kNoOwner || to == w.idx) {
      ok[mine] = ok[i];
      sas[mine++] = run_sa[r];
    } else {
      away.add(ok[i], to);
    }
  }
  hand_off_all(g, w, away, &WorkerCtx::inject);
  if (mine == 0) return;
  const std::uint16_t good = esp_inbound_recorded(*w.engine, std::span<rte_mbuf*>(ok, mine),
                                                  std::span<InboundSa* const>(sas, mine), w.stats);
  for (unsigned i = good; i < mine; ++i) rte_pktmbuf_free(ok[i]);  // counted by esp_inbound
  L2Dest c;
  for (unsigned i = 0; i < good; ++i) route_inner(g, w, ok[i], c);
}

// Outer packets from esp_outbound: Ethernet to the peer (on-link) or the unprotected gateway.
void esp_out_flush(GatewayImpl& g, WorkerCtx& w, rte_mbuf** pkts, OutboundSa** sas,
                   unsigned& n) noexcept {
  if (n == 0) return;
  const std::uint16_t good =
      esp_outbound(*w.engine, std::span<rte_mbuf*>(pkts, n), std::span<OutboundSa* const>(sas, n),
                   w.stats);
  for (unsigned i = good; i < n; ++i) rte_pktmbuf_free(pkts[i]);  // counted by esp_outbound
  L2Dest c;
  for (unsigned i = 0; i < good; ++i) {
    const auto* ip = rte_pktmbuf_mtod(pkts[i], const rte_ipv4_hdr*);
    l2_out(g, w, Side::kUnprotected, pkts[i], rte_be_to_cpu_32(ip->dst_addr), c);
  }
  n = 0;
}

inline void esp_out_add(GatewayImpl& g, WorkerCtx& w, rte_mbuf** pkts, OutboundSa** sas,
                        unsigned& n, rte_mbuf* m, OutboundSa* sa) noexcept {
  if (n == kMaxBurst) esp_out_flush(g, w, pkts, sas, n);
  pkts[n] = m;
  sas[n++] = sa;
}

// Protected-side traffic with no tunnel and UnmatchedPolicy::kForward: routed in the clear.
void forward_plain(GatewayImpl& g, WorkerCtx& w, rte_mbuf* m, L2Dest& c) noexcept {
  auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
  if (ip->time_to_live <= 1) {
    drop(w, m, DropReason::kTtlExceeded);
    return;
  }
  if (rte_pktmbuf_pkt_len(m) > g.cfg.unprotected.mtu) {
    drop(w, m, DropReason::kClearTooBig);
    return;
  }
  ttl_decrement(ip);
  w.stats.forwarded++;
  l2_out(g, w, Side::kUnprotected, m, rte_be_to_cpu_32(ip->dst_addr), c);
}

// Inner packets from the protected side (data at IPv4): policy lookup, MTU handling, ESP.
// Packets of SAs another worker owns go to it unmodified (dataplane/sa.hpp), so that one
// worker numbers and sends each SA's packets.
void outbound(GatewayImpl& g, WorkerCtx& w, rte_mbuf** pkts, const Ipv4* src,
              const Ipv4* dst, unsigned n) noexcept {
  OutboundSa* sas[kMaxBurst];
  PolicySlot* pols[kMaxBurst];
  g.inst->lookup_outbound(src, dst, n, sas, pols);
  // The packets to encrypt and their SAs, handed to esp_outbound kMaxBurst at a time.
  rte_mbuf* to_encrypt[kMaxBurst];
  OutboundSa* encrypt_sas[kMaxBurst];
  unsigned n_encrypt = 0;
  std::uint64_t now = 0;
  HandOffs away;
  L2Dest clear;  // forward_plain's next hop
  // The owner, and the largest inner packet that fits the SA's MTU once encapsulated, looked
  // at once per run of one SA.
  const OutboundSa* last_sa = nullptr;
  std::uint16_t last_owner = 0;
  std::uint32_t max_inner = 0;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    OutboundSa* sa = sas[i];
    if (sa != last_sa && sa != nullptr) {
      last_sa = sa;
      last_owner = sa_owner(w, *sa);
      max_inner = sa->max_inner.load(std::memory_order_relaxed);
    }
    if (sa != nullptr && last_owner != w.idx) {
      away.add(m, last_owner);
      continue;
    }
    if (sa == nullptr) {
      if (pols[i] != nullptr) {
        // Trapped: the tunnel exists but has no SA (not up yet, DPD hold, expired, deleted by
        // the peer). Never the clear-text path: hold the packet back (dropped, RFC 4301 §5.1
        // leaves queueing optional) and ask IKE for an SA (rate-limited per policy).
        drop(w, m, DropReason::kTrapped);
        if (now == 0) now = rte_rdtsc();
        g.inst->raise_acquire(pols[i], now);
        continue;
      }
      if (g.cfg.unmatched == UnmatchedPolicy::kForward) {
        forward_plain(g, w, m, clear);
      } else {
        drop(w, m, DropReason::kNoPolicy);
      }
      continue;
    }
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    if (ip->time_to_live <= 1) {
      drop(w, m, DropReason::kTtlExceeded);
      continue;
    }
    if (rte_pktmbuf_pkt_len(m) <= max_inner) {
      ttl_decrement(ip);
      esp_out_add(g, w, to_encrypt, encrypt_sas, n_encrypt, m, sa);
      continue;
    }
    const auto fit = static_cast<std::uint16_t>(max_inner);
    if ((rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_DF_FLAG) != 0) {
      // RFC 1191 / RFC 4301 §8.1: tell the inner sender the largest size that fits the tunnel.
      w.stats.drop(DropReason::kMtuExceeded);
      rte_pktmbuf_prepend(m, kEthHdrLen);  // the received Ethernet header is still there
      punt(w, m, PuntKind::kFragNeeded, fit);
      continue;
    }
    // Too big without DF: fragment the INNER packet, then encrypt each fragment on its own
    // (RFC 4301 §8.1 "pre-fragmentation"). The peer decrypts complete ESP packets and the inner
    // destination reassembles; outer fragments would make the peer gateway reassemble, which
    // strongSwan/Linux and most gateways expect to avoid (and which costs them memory per
    // flow). RFC 791 §2.3: fragment payloads are multiples of 8 bytes.
    const std::uint16_t ihl = static_cast<std::uint16_t>((ip->version_ihl & 0x0f) * 4);
    if (fit <= ihl + 8) {
      drop(w, m, DropReason::kTunnelMtuTooSmall);
      continue;
    }
    const std::uint16_t frag_mtu = static_cast<std::uint16_t>(ihl + ((fit - ihl) & ~7u));
    ttl_decrement(ip);
    rte_mbuf* frags[kMaxFragsOut];
    const int nf = rte_ipv4_fragment_packet(m, frags, kMaxFragsOut, frag_mtu, g.pool, g.pool);
    if (nf <= 0) {
      drop(w, m, DropReason::kFragmentFailed);
      continue;
    }
    rte_pktmbuf_free(m);
    for (int f = 0; f < nf; ++f) {
      rte_mbuf* fm = frags[f];
      // Fragments are chains (a header mbuf + an indirect one on the original data): ESP
      // works in place on one segment.
      if (rte_pktmbuf_linearize(fm) != 0) {
        drop(w, fm, DropReason::kLinearizeFailed);
        continue;
      }
      auto* fip = rte_pktmbuf_mtod(fm, rte_ipv4_hdr*);
      fip->hdr_checksum = 0;
      fip->hdr_checksum = rte_ipv4_cksum(fip);
      esp_out_add(g, w, to_encrypt, encrypt_sas, n_encrypt, fm, sa);
    }
  }
  esp_out_flush(g, w, to_encrypt, encrypt_sas, n_encrypt);
  hand_off_all(g, w, away, &WorkerCtx::inner_in);
}

// Inner packets another worker handed over (data at IPv4, as it received them): their
// addresses again, then the outbound path (policy looked up afresh).
void outbound_handed(GatewayImpl& g, WorkerCtx& w, rte_mbuf** pkts, unsigned n) noexcept {
  Ipv4 src[kMaxBurst], dst[kMaxBurst];
  for (unsigned i = 0; i < n; ++i) {
    const auto* ip = rte_pktmbuf_mtod(pkts[i], const rte_ipv4_hdr*);
    src[i] = rte_be_to_cpu_32(ip->src_addr);
    dst[i] = rte_be_to_cpu_32(ip->dst_addr);
  }
  outbound(g, w, pkts, src, dst, n);
}

// rx_burst's output: outer ESP packets for esp_in, inner packets (with their addresses) for
// outbound. Data at the IPv4 header in both.
struct RxSorted {
  rte_mbuf* esp[kMaxBurst];
  unsigned n_esp = 0;
  rte_mbuf* inner[kMaxBurst];
  Ipv4 src[kMaxBurst], dst[kMaxBurst];
  unsigned n_inner = 0;
};

// The destination MACs a port accepts: its own and broadcast (ARP). The ports run
// promiscuous (not every PMD filters unicast for a MAC set at run time), so this is the
// filter; no multicast group is joined, so no multicast is accepted. Two loads per frame.
struct L2Filter {
  std::uint32_t mac_hi;  // bytes 0..3 of the port's MAC, in memory order
  std::uint16_t mac_lo;  // bytes 4..5

  explicit L2Filter(const MacAddr& mac) noexcept {
    std::memcpy(&mac_hi, mac.data(), 4);
    std::memcpy(&mac_lo, mac.data() + 4, 2);
  }
  bool accepts(const std::uint8_t* dst) const noexcept {
    std::uint32_t hi;
    std::uint16_t lo;
    std::memcpy(&hi, dst, 4);
    std::memcpy(&lo, dst + 4, 2);
    return (hi == mac_hi && lo == mac_lo) || (hi == 0xFFFFFFFFu && lo == 0xFFFFu);
  }
};

// rx_burst step 1: destination MAC (L2Filter), single segment, Ethernet, IPv4 header (version, lengths, checksum); the
// Ethernet padding is trimmed. Returns the IPv4 header (ihl and total length in *ihl / *tot),
// or nullptr when the packet was consumed (dropped, or ARP punted).
inline rte_ipv4_hdr* rx_check_ipv4(WorkerCtx& w, rte_mbuf* m, const L2Filter& l2,
                                   std::uint32_t* ihl_out, std::uint32_t* tot_out) noexcept {
  if (m->nb_segs != 1 && rte_pktmbuf_linearize(m) != 0) {
    drop(w, m, DropReason::kLinearizeFailed);
    return nullptr;
  }
  const std::uint32_t len = rte_pktmbuf_data_len(m);
  if (len < kEthHdrLen) {
    drop(w, m, DropReason::kRunt);
    return nullptr;
  }
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  if (!l2.accepts(eth->dst_addr.addr_bytes)) [[unlikely]] {
    drop(w, m, DropReason::kWrongDstMac);  // promiscuous port: a frame for another host
    return nullptr;
  }
  const std::uint16_t type = rte_be_to_cpu_16(eth->ether_type);
  if (type == RTE_ETHER_TYPE_ARP) {
    punt(w, m, PuntKind::kArp);
    return nullptr;
  }
  if (type != RTE_ETHER_TYPE_IPV4) {
    drop(w, m, DropReason::kNotIpv4);
    return nullptr;
  }
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(const_cast<rte_ether_hdr*>(eth) + 1);
  const std::uint32_t l3 = len - kEthHdrLen;
  if (l3 < sizeof(rte_ipv4_hdr)) {
    drop(w, m, DropReason::kRunt);
    return nullptr;
  }
  const std::uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
  if (ip->version_ihl != 0x45) [[unlikely]] {  // 0x45: IPv4 without options, l3 >= 20 above
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr)) {
      drop(w, m, DropReason::kBadIpHeader);
      return nullptr;
    }
    if (l3 < ihl) {
      drop(w, m, DropReason::kRunt);
      return nullptr;
    }
  }
  const std::uint32_t tot = rte_be_to_cpu_16(ip->total_length);
  if (tot < ihl) {
    drop(w, m, DropReason::kBadIpHeader);
    return nullptr;
  }
  if (tot > l3) {
    drop(w, m, DropReason::kRunt);
    return nullptr;
  }
  // RFC 791 header checksum: the NIC's verdict when it gave one (RX IPv4 checksum offload,
  // enabled in setup_port where offered), else computed here. NONE = the NIC verified the
  // header's integrity although the field itself is not valid: accepted like GOOD.
  const std::uint64_t ck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
  if (ck == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
      (ck == RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN && !ipv4_header_checksum_ok(ip, ihl))) {
    drop(w, m, DropReason::kBadIpHeader);
    return nullptr;
  }
  if (l3 > tot) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(l3 - tot));  // Ethernet pad
  *ihl_out = ihl;
  *tot_out = tot;
  return ip;
}

// An outer ESP / ESP-in-UDP packet addressed to us: the rest of its outer header (UDP 4500,
// ESP header) is parsed here, once; the layout stays in the mbuf for esp_in and esp_inbound.
inline void rx_esp(WorkerCtx& w, rte_mbuf* m, std::uint32_t ihl, RxSorted& out) noexcept {
  rte_pktmbuf_adj(m, kEthHdrLen);
  EspInboundInfo info;
  DropReason why = DropReason::kBadIpHeader;
  if (!esp_inbound_parse_l4(m, ihl, &info, &why)) {
    drop(w, m, why);
    return;
  }
  out.esp[out.n_esp++] = m;
}

// rx_burst step 2: a packet addressed to this port: outer fragments to reassembly, ICMP echo,
// ESP and ESP-in-UDP to the inbound path, IKE (500 / 4500 with the non-ESP marker) and NAT
// keepalives; everything else is not for us.
inline void rx_local(WorkerCtx& w, Side s, rte_mbuf* m, const rte_ipv4_hdr* ip,
                     std::uint32_t ihl, std::uint32_t tot, RxSorted& out) noexcept {
  const std::uint8_t proto = ip->next_proto_id;
  if (rte_ipv4_frag_pkt_is_fragmented(ip)) {
    // Outer fragments (or fragmented IKE): reassembled on the control lcore.
    if (s == Side::kUnprotected && (proto == kIpProtoEsp || proto == kIpProtoUdp)) {
      punt(w, m, PuntKind::kFrag);
    } else {
      drop(w, m, DropReason::kFragmentRefused);
    }
    return;
  }
  if (proto == IPPROTO_ICMP) {
    const auto* icmp = reinterpret_cast<const std::uint8_t*>(ip) + ihl;
    if (tot >= ihl + 8 && icmp[0] == RTE_IP_ICMP_ECHO_REQUEST) {
      if (echo_allowed(w)) {
        punt(w, m, PuntKind::kIcmpEcho);
      } else {
        drop(w, m, DropReason::kIcmpEchoRateLimited);
      }
    } else {
      drop(w, m, DropReason::kIcmpNotEcho);
    }
    return;
  }
  if (s == Side::kProtected) {
    drop(w, m, DropReason::kLocalUnsupported);
    return;
  }
  if (proto == kIpProtoEsp) {
    // Plain ESP, nearly every inbound packet: all esp_inbound_parse_l4 checks of it is that
    // its ESP header is inside the packet (`tot` is its data length here: rx_check_ipv4
    // trimmed it to that), so its layout is recorded here, without the call.
    if (tot >= ihl + kEspHeaderLen) [[likely]] {
      rte_pktmbuf_adj(m, kEthHdrLen);
      esp_record_layout(m, ihl, false, tot);
      out.esp[out.n_esp++] = m;
      return;
    }
    rx_esp(w, m, ihl, out);
    return;
  }
  if (proto == kIpProtoUdp) {
    if (tot < ihl + kUdpHeaderLen) {
      drop(w, m, DropReason::kRunt);
      return;
    }
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(
        reinterpret_cast<const std::uint8_t*>(ip) + ihl);
    const std::uint16_t dport = rte_be_to_cpu_16(udp->dst_port);
    if (dport == kNatTPort) {
      const auto* pl = reinterpret_cast<const std::uint8_t*>(udp + 1);
      switch (classify_udp4500(pl, tot - ihl - kUdpHeaderLen)) {
        case Udp4500Kind::kEsp: rx_esp(w, m, ihl, out); break;
        case Udp4500Kind::kIke:  // after the 4-byte non-ESP marker (RFC 3948 §2.2)
          punt(w, m, ike_kind(pl + 4, tot - ihl - kUdpHeaderLen - 4));
          break;
        case Udp4500Kind::kKeepalive:  // RFC 3948 §2.3: the receiver ignores it
          w.stats.keepalives++;
          rte_pktmbuf_free(m);
          break;
        case Udp4500Kind::kRunt: drop(w, m, DropReason::kRunt); break;
      }
      return;
    }
    if (dport == kIkePort) {
      punt(w, m, ike_kind(reinterpret_cast<const std::uint8_t*>(udp + 1),
                          tot - ihl - kUdpHeaderLen));
      return;
    }
  }
  drop(w, m, proto == kIpProtoUdp ? DropReason::kUdpClosedPort : DropReason::kLocalUnsupported);
}

// rx_burst step 3: a packet in transit, from the protected side only (no clear-text transit
// from the public side), unicast: an inner packet for the outbound path.
// `bcast`: the port subnet's broadcast address (0 for a /31 or /32, which have none).
inline void rx_transit(WorkerCtx& w, Side s, Ipv4 bcast, rte_mbuf* m, const rte_ipv4_hdr* ip,
                       Ipv4 d, RxSorted& out) noexcept {
  if (s == Side::kUnprotected) {
    drop(w, m, DropReason::kTransitFromPublic);
    return;
  }
  if (d >= 0xE0000000u || d == bcast || d == 0) {
    drop(w, m, DropReason::kNotUnicast);  // multicast/broadcast are not tunnelled
    return;
  }
  rte_pktmbuf_adj(m, kEthHdrLen);
  out.src[out.n_inner] = rte_be_to_cpu_32(ip->src_addr);
  out.dst[out.n_inner] = d;
  out.inner[out.n_inner++] = m;
}

// One RX burst from side `s`: each packet checked (step 1) and sorted into local (step 2) or
// transit (step 3) traffic; then the ESP packets go through the inbound path and the inner
// packets through the outbound path, each as one burst.
void rx_burst(GatewayImpl& g, WorkerCtx& w, Side s, rte_mbuf** pkts, unsigned n) noexcept {
  const PortConfig& pc = s == Side::kUnprotected ? g.cfg.unprotected : g.cfg.protected_port;
  RxSorted out;
  w.stats.rx_packets += n;

  const std::uint16_t port_id = pc.port_id;
  const L2Filter l2(g.ports[static_cast<unsigned>(s)].mac);
  const Ipv4 bcast = pc.subnet.len < 31 ? (pc.subnet.addr | ~pc.subnet.mask()) : 0;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    m->port = port_id;  // the slow path tells the sides apart by it (not all PMDs set it)
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    std::uint32_t ihl, tot;
    const rte_ipv4_hdr* ip = rx_check_ipv4(w, m, l2, &ihl, &tot);
    if (ip == nullptr) continue;
    const Ipv4 d = rte_be_to_cpu_32(ip->dst_addr);
    if (d == pc.addr) rx_local(w, s, m, ip, ihl, tot, out);
    else rx_transit(w, s, bcast, m, ip, d, out);
  }
  if (out.n_esp != 0) esp_in(g, w, out.esp, out.n_esp);
  if (out.n_inner != 0) outbound(g, w, out.inner, out.src, out.dst, out.n_inner);
}

}  // namespace

int GatewayImpl::worker_main(void* arg) {
  auto* w = static_cast<WorkerCtx*>(arg);
  w->g->worker_loop(*w);
  return 0;
}

void GatewayImpl::worker_loop(WorkerCtx& w) noexcept {
  rcu->register_thread(w.idx);
  rcu->online(w.idx);
  rte_mbuf* pkts[kRxBurst];
  unsigned idle = 0;
  while (!stop_flag.load(std::memory_order_acquire)) {
    unsigned got = 0;
    for (unsigned s = 0; s < 2; ++s) {
      if (!w.has_rxq[s]) continue;
      const std::uint16_t n = rte_eth_rx_burst(ports[s].cfg.port_id,
                                               static_cast<std::uint16_t>(w.idx), pkts, kRxBurst);
      if (n != 0) rx_burst(*this, w, static_cast<Side>(s), pkts, n);
      got += n;
    }
    const unsigned ni =
        rte_ring_sc_dequeue_burst(w.inject, reinterpret_cast<void**>(pkts), kRxBurst, nullptr);
    if (ni != 0) esp_in(*this, w, pkts, ni);
    got += ni;
    if (w.inner_in != nullptr) {
      const unsigned no = rte_ring_sc_dequeue_burst(w.inner_in, reinterpret_cast<void**>(pkts),
                                                    kRxBurst, nullptr);
      if (no != 0) outbound_handed(*this, w, pkts, no);
      got += no;
    }
    if (w.idx == 0) {  // TX on behalf of lcores without a queue of their own
      for (unsigned s = 0; s < 2; ++s) {
        if (ports[s].handoff == nullptr) continue;
        const unsigned nh = rte_ring_sc_dequeue_burst(
            ports[s].handoff, reinterpret_cast<void**>(pkts), kRxBurst, nullptr);
        if (nh == 0) continue;
        got += nh;
        const std::uint16_t sent =
            rte_eth_tx_burst(ports[s].cfg.port_id, 0, pkts, static_cast<std::uint16_t>(nh));
        w.stats.tx_packets += sent;
        for (unsigned i = sent; i < nh; ++i) drop(w, pkts[i], DropReason::kTxFull);
      }
    }
    tx_flush(*this, w, Side::kUnprotected);
    tx_flush(*this, w, Side::kProtected);
    rcu->quiescent(w.idx);
    if (got != 0 || cfg.idle_sleep_us == 0) {
      idle = 0;
    } else if (++idle >= kIdleLoopsBeforeSleep) {
      rcu->offline(w.idx);  // never sleep while holding RCU readers' state
      rte_delay_us_sleep(cfg.idle_sleep_us);
      rcu->online(w.idx);
    }
  }
  tx_flush(*this, w, Side::kUnprotected);
  tx_flush(*this, w, Side::kProtected);
  rcu->offline(w.idx);
  rcu->unregister_thread(w.idx);
}

}  // namespace ipsecgw::dp
