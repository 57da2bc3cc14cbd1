// The control lcore's slow path: frames punted by the workers (ARP, ICMP echo to our
// addresses, IKE datagrams, outer fragments, ICMP "fragmentation needed"), ARP resolution with
// retries, and the DatagramSender the IKE daemon uses. Runs only on the control (main) lcore.
#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_icmp.h>
#include <rte_ip_frag.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include <cstring>

#include "dataplane/gateway_impl.hpp"

namespace ipsecgw::dp {
namespace {

constexpr unsigned kArpMaxTries = 5;           // then give up for kArpHoldSeconds
constexpr unsigned kArpHoldSeconds = 1;
constexpr std::size_t kMaxQueuedPerNeighbor = 16;
constexpr std::uint64_t kIcmpErrorsPerSecond = 100;  // RFC 1812 §4.3.2.8 rate limit
constexpr std::uint32_t kIcmpQuoteMax = 576 - 20 - 8;  // RFC 1812 §4.3.2.3

MacAddr to_mac(const rte_ether_addr& a) {
  MacAddr m;
  std::memcpy(m.data(), a.addr_bytes, 6);
  return m;
}

}  // namespace

unsigned GatewayImpl::control_poll() noexcept {
  unsigned n = 0;
  rte_mbuf* pkts[kMaxBurst];
  void* msgs[kMaxBurst];
  // IKE first and with a bigger budget: its own rings, so a slow-path flood costs it nothing;
  // exchanges in progress before new ones (MM1s), so an MM1 flood costs established peers
  // nothing either.
  for (const bool fresh : {false, true}) {
    for (auto& wp : worker_ctxs) {
      rte_ring* r = fresh ? wp->ike_new : wp->ike;
      for (unsigned b = 0; b < kIkeBurstsPerPoll; ++b) {
        const unsigned k =
            rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(pkts), kMaxBurst, nullptr);
        for (unsigned i = 0; i < k; ++i) handle_punt(pkts[i]);
        n += k;
        if (k < kMaxBurst) break;
      }
    }
  }
  for (auto& wp : worker_ctxs) {
    const unsigned k =
        rte_ring_sc_dequeue_burst(wp->punt, reinterpret_cast<void**>(pkts), kMaxBurst, nullptr);
    for (unsigned i = 0; i < k; ++i) handle_punt(pkts[i]);
    n += k;
    const unsigned r = rte_ring_sc_dequeue_burst(wp->resolve, msgs, kMaxBurst, nullptr);
    for (unsigned i = 0; i < r; ++i) {
      const auto key = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(msgs[i]));
      resolve(neighbor_key_side(key), neighbor_key_ip(key));
    }
    n += r;
  }
  const std::uint64_t now = rte_rdtsc();
  if (now - last_timer_tsc >= hz / 10) {
    last_timer_tsc = now;
    arp_timers(now);
  }
  free_death_row();
  ctl_flush();
  n += inst->reclaim();
  if (now - last_snapshot_tsc >= hz) {
    last_snapshot_tsc = now;
    refresh_sa_snapshot();
  }
  return n;
}

void GatewayImpl::free_death_row() noexcept {
  if (death_row->cnt == 0) return;
  // More than the array holds means DPDK has already written past it: stop here rather than
  // run on corrupted memory.
  RTE_VERIFY(death_row->cnt <= RTE_IP_FRAG_DEATH_ROW_MBUF_LEN);
  // Every mbuf there is a fragment the reassembly gave up on (a fragment flood shows here).
  ctl_stats.drop(DropReason::kReassemblyDropped, death_row->cnt);
  rte_ip_frag_free_death_row(death_row, 3);
}

void GatewayImpl::handle_punt(rte_mbuf* m) noexcept {
  const Side s = m->port == ports[1].cfg.port_id ? Side::kProtected : Side::kUnprotected;
  switch (punt_kind(m)) {
    case PuntKind::kArp: handle_arp(s, m); return;
    case PuntKind::kIcmpEcho: handle_icmp_echo(s, m); return;
    case PuntKind::kIke:
    case PuntKind::kIkeNew: handle_ike(m); return;
    case PuntKind::kFrag: handle_frag(m); return;
    case PuntKind::kFragNeeded: handle_frag_needed(m); return;
  }
  ctl_stats.drop(DropReason::kBadPunt);
  rte_pktmbuf_free(m);
}

// ---- TX from the control lcore ----

void GatewayImpl::ctl_tx(Side s, rte_mbuf* m) noexcept {
  TxBuf& b = ctl_tx_[static_cast<unsigned>(s)];
  if (b.n == kTxBufLen) ctl_flush();
  b.pkts[b.n++] = m;
}

void GatewayImpl::ctl_flush() noexcept {
  for (unsigned s = 0; s < 2; ++s) {
    TxBuf& b = ctl_tx_[s];
    if (b.n == 0) continue;
    const PortState& p = ports[s];
    if (p.ctl_has_txq) {
      const std::uint16_t sent =
          rte_eth_tx_burst(p.cfg.port_id, static_cast<std::uint16_t>(workers), b.pkts, b.n);
      ctl_stats.tx_packets += sent;
      for (unsigned i = sent; i < b.n; ++i) {
        ctl_stats.drop(DropReason::kTxFull);
        rte_pktmbuf_free(b.pkts[i]);
      }
    } else {
      const unsigned sent =
          rte_ring_mp_enqueue_burst(p.handoff, reinterpret_cast<void**>(b.pkts), b.n, nullptr);
      ctl_stats.tx_packets += sent;
      for (unsigned i = sent; i < b.n; ++i) {
        ctl_stats.drop(DropReason::kRingFull);
        rte_pktmbuf_free(b.pkts[i]);
      }
    }
    b.n = 0;
  }
}

void GatewayImpl::ctl_send_via(Side s, Ipv4 nh, rte_mbuf* m) noexcept {
  if (nh == 0) {
    ctl_stats.drop(DropReason::kNoRoute);
    rte_pktmbuf_free(m);
    return;
  }
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  MacAddr mac;
  if (neigh.lookup(s, nh, &mac)) {
    std::memcpy(eth->dst_addr.addr_bytes, mac.data(), 6);
    ctl_tx(s, m);
    return;
  }
  resolve(s, nh);
  auto it = pending.find(neighbor_key(s, nh));
  if (it == pending.end() || it->second.tries == 0 ||
      it->second.queued.size() >= kMaxQueuedPerNeighbor) {
    ctl_stats.drop(DropReason::kNoRoute);
    rte_pktmbuf_free(m);
    return;
  }
  it->second.queued.push_back(m);
}

// ---- ARP (RFC 826) ----

void GatewayImpl::learn(Side s, Ipv4 ip, const MacAddr& mac, NeighborTable::Origin o) noexcept {
  const std::uint64_t key = neighbor_key(s, ip);
  if (static_keys.count(key) != 0) return;  // static neighbours win over the wire
  if (!neigh.set(s, ip, mac, o)) {
    ctl_stats.drop(DropReason::kArpTableFull);
    return;
  }
  neigh_confirmed[key] = rte_rdtsc();
  auto it = pending.find(key);
  if (it == pending.end()) return;
  for (rte_mbuf* m : it->second.queued) {
    std::memcpy(rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr.addr_bytes, mac.data(), 6);
    ctl_tx(s, m);
  }
  pending.erase(it);
}

// Learned entries not confirmed for cfg.arp_timeout_s are asked for again (the entry stays
// usable meanwhile); arp_timers removes them when that goes unanswered. Once per second.
void GatewayImpl::age_neighbors(std::uint64_t now) noexcept {
  if (now - last_age_tsc < hz) return;
  last_age_tsc = now;
  const std::uint64_t max_age = std::uint64_t{cfg.arp_timeout_s} * hz;
  for (const auto& [key, confirmed] : neigh_confirmed) {
    if (now - confirmed < max_age) continue;
    PendingResolve& pr = pending[key];
    if (pr.tries != 0) continue;  // already asking
    pr.tries = 1;
    pr.refresh = true;
    pr.hold_until = 0;
    pr.next_tsc = now + hz;
    send_arp_request(neighbor_key_side(key), neighbor_key_ip(key));
  }
}

void GatewayImpl::send_arp_request(Side s, Ipv4 ip) noexcept {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) {
    ctl_stats.drop(DropReason::kNoMbuf);
    return;
  }
  auto* eth = reinterpret_cast<rte_ether_hdr*>(
      rte_pktmbuf_append(m, sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)));
  if (eth == nullptr) {
    ctl_stats.drop(DropReason::kNoMbuf);
    rte_pktmbuf_free(m);
    return;
  }
  const PortState& p = ports[static_cast<unsigned>(s)];
  std::memset(eth->dst_addr.addr_bytes, 0xff, 6);
  std::memcpy(eth->src_addr.addr_bytes, p.mac.data(), 6);
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = 6;
  arp->arp_plen = 4;
  arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
  std::memcpy(arp->arp_data.arp_sha.addr_bytes, p.mac.data(), 6);
  arp->arp_data.arp_sip = rte_cpu_to_be_32(p.cfg.addr);
  std::memset(arp->arp_data.arp_tha.addr_bytes, 0, 6);
  arp->arp_data.arp_tip = rte_cpu_to_be_32(ip);
  arp_requests_sent++;
  ctl_tx(s, m);
}

void GatewayImpl::resolve(Side s, Ipv4 ip) noexcept {
  if (ip == 0) return;
  const std::uint64_t key = neighbor_key(s, ip);
  if (static_keys.count(key) != 0) return;
  MacAddr mac;
  if (neigh.lookup(s, ip, &mac)) return;
  const std::uint64_t now = rte_rdtsc();
  PendingResolve& pr = pending[key];
  if (pr.tries != 0) return;                       // already resolving; the timer retries
  if (pr.hold_until != 0 && now < pr.hold_until) return;  // gave up recently
  pr.tries = 1;
  pr.hold_until = 0;
  pr.next_tsc = now + hz;
  send_arp_request(s, ip);
}

void GatewayImpl::arp_timers(std::uint64_t now) noexcept {
  for (auto it = pending.begin(); it != pending.end();) {
    PendingResolve& pr = it->second;
    const Side s = neighbor_key_side(it->first);
    const Ipv4 ip = neighbor_key_ip(it->first);
    if (pr.tries == 0) {
      if (now >= pr.hold_until) {
        it = pending.erase(it);
        continue;
      }
    } else if (now >= pr.next_tsc) {
      if (pr.tries >= kArpMaxTries) {
        for (rte_mbuf* m : pr.queued) {
          ctl_stats.drop(DropReason::kNoRoute);
          rte_pktmbuf_free(m);
        }
        pr.queued.clear();
        if (pr.refresh) {  // aged out and unanswered: gone (its slot is reused)
          neigh.remove(s, ip);
          neigh_confirmed.erase(it->first);
          pr.refresh = false;
        }
        pr.tries = 0;
        pr.hold_until = now + kArpHoldSeconds * hz;
      } else {
        pr.tries++;
        pr.next_tsc = now + hz;
        send_arp_request(s, ip);
      }
    }
    ++it;
  }
  age_neighbors(now);
}

void GatewayImpl::handle_arp(Side s, rte_mbuf* m) noexcept {
  if (rte_pktmbuf_data_len(m) < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) {
    ctl_stats.drop(DropReason::kRunt);
    rte_pktmbuf_free(m);
    return;
  }
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  if (rte_be_to_cpu_16(arp->arp_hardware) != RTE_ARP_HRD_ETHER ||
      rte_be_to_cpu_16(arp->arp_protocol) != RTE_ETHER_TYPE_IPV4 || arp->arp_hlen != 6 ||
      arp->arp_plen != 4) {
    ctl_stats.drop(DropReason::kArpUnsupported);
    rte_pktmbuf_free(m);
    return;
  }
  const PortState& p = ports[static_cast<unsigned>(s)];
  const std::uint16_t op = rte_be_to_cpu_16(arp->arp_opcode);
  const Ipv4 sip = rte_be_to_cpu_32(arp->arp_data.arp_sip);
  const Ipv4 tip = rte_be_to_cpu_32(arp->arp_data.arp_tip);
  const bool for_us = tip == p.cfg.addr;
  // RFC 826 "packet reception", restricted against poisoning: a reply is taken only for an
  // address we asked for; an entry we have is updated (merge) by a request to us or a
  // gratuitous ARP (sender = target); a request to us from a host we do not know adds it only
  // within the table's opportunistic share (NeighborTable). Anything else changes nothing.
  if (sip != 0 && sip != p.cfg.addr && (p.cfg.subnet.contains(sip) || sip == p.cfg.gateway)) {
    const MacAddr sha = to_mac(arp->arp_data.arp_sha);
    const bool asked = pending.count(neighbor_key(s, sip)) != 0;
    MacAddr known;
    if (asked && (op == RTE_ARP_OP_REPLY || for_us)) {
      learn(s, sip, sha);
    } else if (neigh.lookup(s, sip, &known) &&
               ((for_us && op == RTE_ARP_OP_REQUEST) || sip == tip)) {
      learn(s, sip, sha);
    } else if (for_us && op == RTE_ARP_OP_REQUEST) {
      learn(s, sip, sha, NeighborTable::Origin::kOpportunistic);
    } else if (op == RTE_ARP_OP_REPLY) {
      ctl_stats.drop(DropReason::kArpUnsolicited);
    }
  }
  if (op == RTE_ARP_OP_REQUEST && for_us && sip != p.cfg.addr) {
    // Reply in place (RFC 826): swap sender and target, put our MAC as the sender.
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    arp->arp_data.arp_tha = arp->arp_data.arp_sha;
    arp->arp_data.arp_tip = arp->arp_data.arp_sip;
    std::memcpy(arp->arp_data.arp_sha.addr_bytes, p.mac.data(), 6);
    arp->arp_data.arp_sip = rte_cpu_to_be_32(p.cfg.addr);
    eth->dst_addr = arp->arp_data.arp_tha;
    std::memcpy(eth->src_addr.addr_bytes, p.mac.data(), 6);
    arp_replies_sent++;
    ctl_tx(s, m);
    return;
  }
  rte_pktmbuf_free(m);
}

// ---- ICMP ----

void GatewayImpl::handle_icmp_echo(Side s, rte_mbuf* m) noexcept {
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  const std::uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
  const std::uint32_t tot = rte_be_to_cpu_16(ip->total_length);
  auto* icmp = reinterpret_cast<rte_icmp_hdr*>(reinterpret_cast<std::uint8_t*>(ip) + ihl);
  const std::uint32_t icmp_len = tot - ihl;
  if (rte_raw_cksum(icmp, icmp_len) != 0xFFFF) {  // RFC 792 checksum over the ICMP message
    ctl_stats.drop(DropReason::kBadIcmpChecksum);
    rte_pktmbuf_free(m);
    return;
  }
  const PortState& p = ports[static_cast<unsigned>(s)];
  // RFC 792 echo reply: same identifier, sequence and data; addresses swapped.
  icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
  icmp->icmp_cksum = 0;
  icmp->icmp_cksum = static_cast<std::uint16_t>(~rte_raw_cksum(icmp, icmp_len));
  ip->dst_addr = ip->src_addr;
  ip->src_addr = rte_cpu_to_be_32(p.cfg.addr);
  ip->time_to_live = 64;
  ip->fragment_offset = 0;
  ip->hdr_checksum = 0;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  eth->dst_addr = eth->src_addr;
  std::memcpy(eth->src_addr.addr_bytes, p.mac.data(), 6);
  icmp_sent++;
  ctl_tx(s, m);
}

void GatewayImpl::handle_frag_needed(rte_mbuf* m) noexcept {
  // The packet stays framed as received on the protected port (Ethernet + inner IPv4).
  const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
  const std::uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
  const std::uint32_t tot = rte_be_to_cpu_16(ip->total_length);
  const std::uint8_t* l4 = reinterpret_cast<const std::uint8_t*>(ip) + ihl;
  // RFC 1122 §3.2.2: never an ICMP error about an ICMP error, nor for a non-first fragment.
  const bool icmp_error =
      ip->next_proto_id == IPPROTO_ICMP && tot >= ihl + 1 &&
      (l4[0] == 3 || l4[0] == 4 || l4[0] == 5 || l4[0] == 11 || l4[0] == 12);
  const bool later_frag = (rte_be_to_cpu_16(ip->fragment_offset) & RTE_IPV4_HDR_OFFSET_MASK) != 0;
  // Token bucket of kIcmpErrorsPerSecond.
  const std::uint64_t now = rte_rdtsc();
  if (now - icmp_refill_tsc >= hz) {
    icmp_refill_tsc = now;
    icmp_tokens = kIcmpErrorsPerSecond;
  }
  if (icmp_error || later_frag || icmp_tokens == 0) {
    rte_pktmbuf_free(m);
    return;
  }
  --icmp_tokens;
  rte_mbuf* n = rte_pktmbuf_alloc(pool);
  const std::uint32_t quote = tot < kIcmpQuoteMax ? tot : kIcmpQuoteMax;
  char* buf = n != nullptr
                  ? rte_pktmbuf_append(n, static_cast<std::uint16_t>(kEthHdrLen + 20 + 8 + quote))
                  : nullptr;
  if (buf == nullptr) {
    ctl_stats.drop(DropReason::kNoMbuf);
    rte_pktmbuf_free(n);
    rte_pktmbuf_free(m);
    return;
  }
  const PortState& p = ports[static_cast<unsigned>(Side::kProtected)];
  auto* neth = reinterpret_cast<rte_ether_hdr*>(buf);
  neth->dst_addr = eth->src_addr;  // back to the hop the packet came from
  std::memcpy(neth->src_addr.addr_bytes, p.mac.data(), 6);
  neth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  auto* nip = reinterpret_cast<rte_ipv4_hdr*>(neth + 1);
  std::memset(nip, 0, sizeof *nip);
  nip->version_ihl = 0x45;
  nip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(20 + 8 + quote));
  nip->packet_id = rte_cpu_to_be_16(ip_id++);
  nip->time_to_live = 64;
  nip->next_proto_id = IPPROTO_ICMP;
  nip->src_addr = rte_cpu_to_be_32(p.cfg.addr);
  nip->dst_addr = ip->src_addr;
  nip->hdr_checksum = rte_ipv4_cksum(nip);
  auto* icmp = reinterpret_cast<rte_icmp_hdr*>(nip + 1);
  // RFC 792 type 3 code 4 with RFC 1191 §4: unused (16 bits) | Next-Hop MTU (16 bits).
  icmp->icmp_type = 3;
  icmp->icmp_code = 4;
  icmp->icmp_cksum = 0;
  icmp->icmp_ident = 0;
  icmp->icmp_seq_nb = rte_cpu_to_be_16(punt_arg(m));
  std::memcpy(icmp + 1, ip, quote);
  icmp->icmp_cksum = static_cast<std::uint16_t>(~rte_raw_cksum(icmp, 8 + quote));
  rte_pktmbuf_free(m);
  icmp_sent++;
  ctl_tx(Side::kProtected, n);
}

// ---- IKE (UDP 500 / 4500) ----

void GatewayImpl::ctl_dispatch_datagram(const std::uint8_t* ipb, std::uint32_t len) noexcept {
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(ipb);
  const std::uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
  if (len < ihl + kUdpHeaderLen) {
    ctl_stats.drop(DropReason::kRunt);
    return;
  }
  const auto* udp = reinterpret_cast<const rte_udp_hdr*>(ipb + ihl);
  const std::uint32_t udp_len = rte_be_to_cpu_16(udp->dgram_len);
  if (udp_len < kUdpHeaderLen || udp_len > len - ihl) {
    ctl_stats.drop(DropReason::kRunt);
    return;
  }
  // RFC 768: a non-zero checksum must verify (pseudo-header + UDP header + data sum to ~0).
  std::uint32_t sum = rte_ipv4_phdr_cksum(ip, 0);
  sum += rte_raw_cksum(udp, udp_len);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  if (udp->dgram_cksum != 0 && sum != 0xFFFF) {
    ctl_stats.drop(DropReason::kBadUdpChecksum);
    return;
  }
  DatagramView d;
  d.local = {rte_be_to_cpu_32(ip->dst_addr), rte_be_to_cpu_16(udp->dst_port)};
  d.remote = {rte_be_to_cpu_32(ip->src_addr), rte_be_to_cpu_16(udp->src_port)};
  const std::uint8_t* pl = reinterpret_cast<const std::uint8_t*>(udp + 1);
  std::uint32_t pl_len = udp_len - kUdpHeaderLen;
  if (d.local.port == kNatTPort) {
    // RFC 3948 §2.2: IKE on 4500 starts with the 4-byte non-ESP marker; strip it.
    if (classify_udp4500(pl, pl_len) != Udp4500Kind::kIke) {
      ctl_stats.drop(DropReason::kNotIke);
      return;
    }
    pl += 4;
    pl_len -= 4;
  } else if (d.local.port != kIkePort) {
    ctl_stats.drop(DropReason::kUdpClosedPort);
    return;
  }
  if (handler == nullptr) {
    ctl_stats.drop(DropReason::kNoIkeHandler);
    return;
  }
  d.payload = std::span<const std::uint8_t>(pl, pl_len);
  ike_in++;
  handler->on_datagram(d);
}

void GatewayImpl::handle_ike(rte_mbuf* m) noexcept {
  ctl_dispatch_datagram(rte_pktmbuf_mtod_offset(m, const std::uint8_t*, kEthHdrLen),
                        rte_pktmbuf_data_len(m) - kEthHdrLen);
  rte_pktmbuf_free(m);
}

Result<void> GatewayImpl::send_datagram(const DatagramView& d) {
  if (d.remote.addr == 0 || d.remote.port == 0) return make_error("datagram without a peer");
  const UdpEndpoint local{d.local.addr != 0 ? d.local.addr : cfg.unprotected.addr,
                          d.local.port != 0 ? d.local.port : kIkePort};
  // RFC 3948 §2.2: IKE on port 4500 carries the non-ESP marker; a NAT keepalive (§2.3) is the
  // single byte 0xFF with no marker (an IKE message is never one byte long).
  const bool keepalive = d.payload.size() == 1 && d.payload[0] == 0xFF;
  const bool marker = !keepalive && (local.port == kNatTPort || d.remote.port == kNatTPort);
  const std::uint32_t l4 =
      kUdpHeaderLen + (marker ? 4u : 0u) + static_cast<std::uint32_t>(d.payload.size());
  const std::uint32_t ipl = kIpv4HeaderLen + l4;
  if (ipl > cfg.unprotected.mtu || kEthHdrLen + ipl > RTE_MBUF_DEFAULT_DATAROOM)
    return make_error("IKE datagram of " + std::to_string(ipl) +
                      " bytes exceeds the unprotected MTU " +
                      std::to_string(cfg.unprotected.mtu));
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return make_error("mbuf pool exhausted");
  char* buf = rte_pktmbuf_append(m, static_cast<std::uint16_t>(kEthHdrLen + ipl));
  if (buf == nullptr) {
    rte_pktmbuf_free(m);
    return make_error("mbuf too small for the datagram");
  }
  auto* eth = reinterpret_cast<rte_ether_hdr*>(buf);
  std::memset(eth->dst_addr.addr_bytes, 0, 6);
  std::memcpy(eth->src_addr.addr_bytes, ports[0].mac.data(), 6);
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  std::memset(ip, 0, sizeof *ip);
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(ipl));
  ip->packet_id = rte_cpu_to_be_16(ip_id++);
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = rte_cpu_to_be_32(local.addr);
  ip->dst_addr = rte_cpu_to_be_32(d.remote.addr);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->src_port = rte_cpu_to_be_16(local.port);
  udp->dst_port = rte_cpu_to_be_16(d.remote.port);
  udp->dgram_len = rte_cpu_to_be_16(static_cast<std::uint16_t>(l4));
  udp->dgram_cksum = 0;
  auto* pl = reinterpret_cast<std::uint8_t*>(udp + 1);
  if (marker) {  // RFC 3948 §2.2 non-ESP marker
    std::memset(pl, 0, 4);
    pl += 4;
  }
  if (!d.payload.empty()) std::memcpy(pl, d.payload.data(), d.payload.size());
  // RFC 768 checksum over the pseudo-header; the kernel peer verifies it. (rte returns 0xFFFF
  // for a computed zero, RFC 768: "transmitted as all ones".)
  udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
  ike_out++;
  ctl_send_via(Side::kUnprotected, next_hop(cfg, Side::kUnprotected, d.remote.addr), m);
  ctl_flush();
  return {};
}

// ---- outer fragments (RFC 791 reassembly) ----

void GatewayImpl::handle_frag(rte_mbuf* m) noexcept {
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, kEthHdrLen);
  m->l2_len = kEthHdrLen;
  m->l3_len = (ip->version_ihl & 0x0f) * 4u;
  rte_mbuf* r = rte_ipv4_frag_reassemble_packet(frag_tbl, death_row, m, rte_rdtsc(), ip);
  // One call can put up to RTE_LIBRTE_IP_FRAG_MAX_FRAG + 1 mbufs on the death row and DPDK
  // 22.11 does not bound its writes: emptied after every call, never once per poll (a poll
  // takes up to kMaxBurst punts from every worker).
  free_death_row();
  if (r == nullptr) return;  // kept for later, or dropped onto the death row (freed above)
  reassembled++;
  const std::uint32_t tot = rte_pktmbuf_pkt_len(r) - kEthHdrLen;
  const auto* rip = rte_pktmbuf_mtod_offset(r, const rte_ipv4_hdr*, kEthHdrLen);
  const std::uint32_t ihl = (rip->version_ihl & 0x0f) * 4u;
  const std::uint8_t proto = rip->next_proto_id;
  bool esp = proto == kIpProtoEsp;
  std::uint16_t dport = 0;
  if (proto == kIpProtoUdp && tot >= ihl + kUdpHeaderLen) {
    // UDP header and up to an ESP header (SPI + sequence number): classify_udp4500 needs
    // kEspHeaderLen bytes to call a payload ESP (RFC 3948 §2.2).
    std::uint8_t hdr[kUdpHeaderLen + kEspHeaderLen];
    const std::uint32_t pl_len = tot - ihl - kUdpHeaderLen;
    const std::uint32_t look = std::min<std::uint32_t>(pl_len, kEspHeaderLen);
    const auto* u = static_cast<const std::uint8_t*>(
        rte_pktmbuf_read(r, kEthHdrLen + ihl, kUdpHeaderLen + look, hdr));
    dport = static_cast<std::uint16_t>(u[2] << 8 | u[3]);
    esp = dport == kNatTPort && classify_udp4500(u + kUdpHeaderLen, look) == Udp4500Kind::kEsp;
  }
  if (esp) {
    // Copy into one jumbo segment (ESP works in place on one segment) and inject it into
    // worker 0's inbound path, which hands it on to the SA's owner when that is another worker
    // (one owner per inbound SA, dataplane/sa.hpp): the replay window keeps one writer. The
    // control lcore is no RCU reader, so it does not look the SA up itself.
    rte_mbuf* j = rte_pktmbuf_alloc(jumbo);
    char* dst = (j != nullptr && tot <= kJumboDataRoom - RTE_PKTMBUF_HEADROOM)
                    ? rte_pktmbuf_append(j, static_cast<std::uint16_t>(tot))
                    : nullptr;
    if (dst == nullptr) {
      ctl_stats.drop(DropReason::kFragError);
      rte_pktmbuf_free(j);
      rte_pktmbuf_free(r);
      return;
    }
    const void* src = rte_pktmbuf_read(r, kEthHdrLen, tot, dst);
    if (src != dst) std::memcpy(dst, src, tot);
    rte_pktmbuf_free(r);
    auto* jip = reinterpret_cast<rte_ipv4_hdr*>(dst);
    jip->fragment_offset = 0;
    jip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(tot));
    jip->hdr_checksum = 0;
    jip->hdr_checksum = rte_ipv4_cksum(jip);
    j->port = ports[0].cfg.port_id;
    if (rte_ring_mp_enqueue(worker_ctxs[0]->inject, j) != 0) {
      ctl_stats.drop(DropReason::kRingFull);
      rte_pktmbuf_free(j);
    }
    return;
  }
  if (proto == kIpProtoUdp && (dport == kIkePort || dport == kNatTPort)) {
    std::span<std::uint8_t> buf(scratch.data(), tot);  // tot < 64 KiB (16-bit total length)
    const void* src = rte_pktmbuf_read(r, kEthHdrLen, tot, buf.data());
    if (src != buf.data()) std::memcpy(buf.data(), src, tot);
    rte_pktmbuf_free(r);
    auto* bip = reinterpret_cast<rte_ipv4_hdr*>(buf.data());
    bip->total_length = rte_cpu_to_be_16(static_cast<std::uint16_t>(tot));
    bip->fragment_offset = 0;
    ctl_dispatch_datagram(buf.data(), tot);
    return;
  }
  ctl_stats.drop(DropReason::kReassembledUnsupported);
  rte_pktmbuf_free(r);
}

}  // namespace ipsecgw::dp
