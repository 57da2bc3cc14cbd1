// ESP tunnel-mode decapsulation, per burst (RFC 4303 §3.4; RFC 3948 for UDP encap).
// Runs per packet: no allocation, locks, exceptions, syscalls or virtual calls.
//
// Order (RFC 4303 §3.4.3-3.4.4): lengths, encapsulation, replay pre-check, ICV (constant time,
// in the engine) for the whole burst, then the replay window update, padding, next header,
// inner header and selectors, each good packet stripped and counted per run of one SA (volume
// limits checked per run). Nothing reads the plaintext of a packet whose ICV failed.
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstring>

#include "dataplane/esp.hpp"
#include "dataplane/esp_internal.hpp"

namespace ipsecgw::dp {

using namespace detail;

namespace {

constexpr std::uint8_t kEcnMask = 0x03;
constexpr std::uint8_t kEcnCe = 0x03;

// RFC 4303 §2.4 padding check for the common case of pad <= 15 (what we and most peers send):
// the 16 bytes just before the trailer, compared with [.., 1, 2, ..., pad] under a mask, as two
// 64-bit words. kPadExpect[pad + k] / kPadMask[pad + k] give byte k of the expected window.
alignas(16) constexpr std::uint8_t kPadExpect[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0,  0,
                                                     1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
alignas(16) constexpr std::uint8_t kPadMask[32] = {
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

// True when the `pad` bytes before `trailer` are 1, 2, ..., pad. For pad <= 15 it reads the 16
// bytes before the trailer, which may start inside the IV (ciphertext >= one block, and the ESP
// header and IV precede it), never outside the packet.
inline bool padding_ok(const std::uint8_t* trailer, std::uint32_t pad) noexcept {
  if (pad <= 15) {
    std::uint64_t w[2], e[2], k[2];
    std::memcpy(w, trailer - 16, 16);
    std::memcpy(e, kPadExpect + pad, 16);
    std::memcpy(k, kPadMask + pad, 16);
    return (((w[0] ^ e[0]) & k[0]) | ((w[1] ^ e[1]) & k[1])) == 0;
  }
  const std::uint8_t* padp = trailer - pad;
  std::uint8_t bad = 0;
  for (std::uint32_t p = 0; p < pad; ++p) bad |= padp[p] ^ static_cast<std::uint8_t>(p + 1);
  return bad == 0;
}

// The parsed outer layout of an inbound packet.
struct OuterLayout {
  std::uint32_t esp_off;    // from the start of the outer IPv4 header
  std::uint32_t total_len;  // outer IPv4 total length
  std::uint32_t spi;        // host order
  bool udp_encap;
};

bool parse_outer(const rte_mbuf* m, OuterLayout* out, DropReason* why) noexcept {
  // Headers are read from the first segment only.
  const std::uint32_t avail = m->data_len;
  if (avail < kIpv4HeaderLen) { *why = DropReason::kRunt; return false; }
  const auto* ip = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
  const std::uint8_t vihl = ip->version_ihl;
  std::uint32_t ihl = kIpv4HeaderLen;  // 0x45: IPv4 without options, nearly every packet
  if (vihl != 0x45) [[unlikely]] {
    ihl = (vihl & 0x0F) * 4u;
    if ((vihl >> 4) != 4 || ihl < kIpv4HeaderLen) {
      *why = DropReason::kBadIpHeader;
      return false;
    }
  }
  const std::uint32_t total = net16(ip->total_length);
  if (total < ihl) { *why = DropReason::kBadIpHeader; return false; }
  if (ihl > avail || total > m->pkt_len) { *why = DropReason::kRunt; return false; }
  // Fragments are reassembled by the gateway before they get here.
  if ((net16(ip->fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0) {
    *why = DropReason::kFragError;
    return false;
  }
  const auto* l4 = reinterpret_cast<const std::uint8_t*>(ip) + ihl;
  std::uint32_t esp_off = ihl;
  bool encap = false;
  if (ip->next_proto_id == kIpProtoUdp) {
    if (total < ihl + kUdpHeaderLen || avail < ihl + kUdpHeaderLen) {
      *why = DropReason::kRunt;
      return false;
    }
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(l4);
    if (net16(udp->dst_port) != kNatTPort) { *why = DropReason::kNotForUs; return false; }
    const std::uint32_t udp_len = net16(udp->dgram_len);
    if (udp_len < kUdpHeaderLen || udp_len > total - ihl) {
      *why = DropReason::kRunt;
      return false;
    }
    const std::uint32_t payload_len = std::min(udp_len, total - ihl) - kUdpHeaderLen;
    const std::uint32_t in_seg = avail - ihl - kUdpHeaderLen;
    switch (classify_udp4500(l4 + kUdpHeaderLen, std::min(payload_len, in_seg))) {
      case Udp4500Kind::kEsp: break;
      case Udp4500Kind::kRunt: *why = DropReason::kRunt; return false;
      default: *why = DropReason::kNotForUs; return false;  // IKE or keepalive: not ESP
    }
    esp_off += kUdpHeaderLen;
    encap = true;
  } else if (ip->next_proto_id != kIpProtoEsp) {
    *why = DropReason::kNotForUs;
    return false;
  }
  if (total < esp_off + kEspHeaderLen || avail < esp_off + kEspHeaderLen) {
    *why = DropReason::kRunt;
    return false;
  }
  std::uint32_t spi_be;
  std::memcpy(&spi_be, reinterpret_cast<const std::uint8_t*>(ip) + esp_off, 4);
  out->esp_off = esp_off;
  out->total_len = total;
  out->spi = net32(spi_be);
  out->udp_encap = encap;
  return true;
}

}  // namespace

Udp4500Kind classify_udp4500(const std::uint8_t* payload, std::uint32_t len) noexcept {
  if (len == 1 && payload[0] == 0xFF) return Udp4500Kind::kKeepalive;  // RFC 3948 §2.3
  if (len < 4) return Udp4500Kind::kRunt;
  if (payload[0] == 0 && payload[1] == 0 && payload[2] == 0 && payload[3] == 0)
    return Udp4500Kind::kIke;  // non-ESP marker, RFC 3948 §2.2
  if (len < kEspHeaderLen) return Udp4500Kind::kRunt;
  return Udp4500Kind::kEsp;
}

bool esp_inbound_parse(const rte_mbuf* m, EspInboundInfo* info, DropReason* why) noexcept {
  OuterLayout l;
  DropReason r = DropReason::kRunt;
  if (!parse_outer(m, &l, &r)) {
    if (why != nullptr) *why = r;
    return false;
  }
  info->spi = l.spi;
  info->udp_encap = l.udp_encap;
  return true;
}

std::uint16_t esp_inbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                          std::span<InboundSa* const> sas, LcoreStats& st) noexcept {
  const BurstBounds bounds = burst_bounds(pkts.size(), sas.size());
  const unsigned n = bounds.n, total_n = bounds.total_n;
  std::uint8_t verdict[kMaxBurst * 2];
  std::uint32_t seq[kMaxBurst];
  std::uint32_t inner_len[kMaxBurst];
  crypto::EspCryptoOp ops[kMaxBurst];
  std::uint8_t op_pkt[kMaxBurst];
  std::uint8_t outer_tos[kMaxBurst];
  std::uint16_t strip[kMaxBurst];
  unsigned o = 0;

  auto fail = [&](unsigned i, SaHead* sa, DropReason r) {
    verdict[i] = static_cast<std::uint8_t>(r);
    count_drop(st, sa, r);
  };

  // (1) Before the ICV: lengths, encapsulation, replay pre-check. The SA's dead flag is read
  // once per run of packets of one SA.
  const InboundSa* last_sa = nullptr;
  bool last_dead = false;
  std::uint32_t cipher_off = 0, icv_len = 0, align_mask = 0;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    InboundSa* sa = sas[i];
    verdict[i] = kGood;
    if (sa == nullptr) { fail(i, nullptr, DropReason::kNoSa); continue; }
    if (sa != last_sa) {
      last_sa = sa;
      last_dead = sa->dead.load(std::memory_order_relaxed);
      cipher_off = sa->alg.cipher_offset;
      icv_len = sa->alg.icv_len;
      align_mask = sa->alg.block_align - 1u;
    }
    if (last_dead) { fail(i, sa, DropReason::kSaDown); continue; }
    if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
      fail(i, sa, DropReason::kNoSpace);
      continue;
    }
    OuterLayout l;
    DropReason why = DropReason::kRunt;
    if (!parse_outer(m, &l, &why)) { fail(i, sa, why); continue; }
    if (l.spi != sa->spi) { fail(i, sa, DropReason::kNoSa); continue; }
    if (l.udp_encap != ((sa->flags & kSaUdpEncap) != 0)) {
      fail(i, sa, DropReason::kEncapMismatch);
      continue;
    }
    const std::uint32_t esp_len = l.total_len - l.esp_off;
    if (esp_len < cipher_off + icv_len) { fail(i, sa, DropReason::kRunt); continue; }
    const std::uint32_t cipher_len = esp_len - cipher_off - icv_len;
    // RFC 4303 §2.4 / RFC 3602 §3: whole blocks of the SA's alignment, at least one (it holds
    // the trailer).
    if (cipher_len == 0 || (cipher_len & align_mask) != 0) {
      fail(i, sa, DropReason::kBadLength);
      continue;
    }
    auto* esp = rte_pktmbuf_mtod_offset(m, std::uint8_t*, l.esp_off);
    std::uint32_t seq_be;
    std::memcpy(&seq_be, esp + 4, 4);
    seq[i] = net32(seq_be);
    // RFC 4303 §3.4.3: reject duplicates before spending the ICV computation.
    if (sa->flags & kSaAntiReplay) {
      const ReplayVerdict v = sa->replay.check(seq[i]);
      if (v != ReplayVerdict::kOk) {
        fail(i, sa, v == ReplayVerdict::kReplay ? DropReason::kReplay : DropReason::kOutsideWindow);
        continue;
      }
    }
    outer_tos[i] = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->type_of_service;
    strip[i] = static_cast<std::uint16_t>(l.esp_off + cipher_off);

    crypto::EspCryptoOp& op = ops[o];
    op.ks = &sa->keys;
    op.data = esp;
    op.auth_len = cipher_off + cipher_len;
    op.cipher_offset = cipher_off;
    op.cipher_len = cipher_len;
    op.iv = esp + kEspIvOffset;
    op.icv = esp + op.auth_len;  // op.status: set by the engine for every op
    op_pkt[o++] = static_cast<std::uint8_t>(i);
  }
  drop_overflow(st, sas.data(), verdict, bounds);

  // (2) ICV (constant time) and decryption for the whole burst (RFC 4303 §3.4.4).
  if (o != 0) engine.decrypt_validated(std::span<crypto::EspCryptoOp>(ops, o));

  // (3) After the ICV, in packet order (so the window sees the burst's order). The selector
  // masks are taken once per run of packets of one SA (Ipv4Prefix::contains, unrolled).
  const InboundSa* sel_sa = nullptr;
  Ipv4 peer_mask = 0, peer_net = 0, local_mask = 0, local_net = 0;
  // Volume limits and counters per run of consecutive ops of one SA, flushed when the SA changes:
  // good packets are stripped and counted as they pass; a run that turns out not to be clear of
  // the limits (rare: a soft or hard limit is crossed inside it) is walked again packet by packet.
  const std::uint64_t now = o != 0 ? rte_rdtsc() : 0;
  InboundSa* run_sa = nullptr;
  unsigned run_first = 0;
  std::uint64_t run_k = 0, run_bytes = 0;
  auto flush_run = [&](unsigned run_end) {
    if (run_k == 0) return;
    InboundSa* sa = run_sa;
    const std::uint64_t p0 = sa->counters.packets.load(std::memory_order_relaxed);
    const std::uint64_t b0 = sa->counters.bytes.load(std::memory_order_relaxed);
    std::uint64_t p = run_k, b = run_bytes;
    if (!run_clear_of_limits(*sa, p0, b0, run_k, run_bytes)) [[unlikely]] {
      p = b = 0;
      for (unsigned x = run_first; x < run_end; ++x) {
        const unsigned i = op_pkt[x];
        if (verdict[i] != kGood) continue;
        if (!within_limits(*sa, p0 + p, b0 + b, inner_len[i])) {
          fail(i, sa, DropReason::kSaDown);  // already stripped: dropped all the same
          continue;
        }
        ++p;
        b += inner_len[i];
      }
      if (p == 0) return;
    }
    sa->counters.packets.fetch_add(p, std::memory_order_relaxed);
    sa->counters.bytes.fetch_add(b, std::memory_order_relaxed);
    sa->counters.last_used_tsc.store(now, std::memory_order_relaxed);
    st.esp_in_packets += p;
    st.esp_in_bytes += b;
  };
  for (unsigned k = 0; k < o; ++k) {
    const unsigned i = op_pkt[k];
    InboundSa* sa = sas[i];
    const crypto::EspCryptoOp& op = ops[k];
    if (sa != run_sa) {
      flush_run(k);
      run_sa = sa;
      run_first = k;
      run_k = run_bytes = 0;
    }
    switch (op.status) {
      case crypto::OpStatus::kOk: break;
      case crypto::OpStatus::kBadIcv: fail(i, sa, DropReason::kBadIcv); continue;
      case crypto::OpStatus::kBadLength: fail(i, sa, DropReason::kBadLength); continue;
      default: fail(i, sa, DropReason::kCryptoError); continue;
    }
    // RFC 4303 §3.4.3: the window moves only for authenticated packets; re-checked here
    // because one burst may carry the same number twice.
    if (sa->flags & kSaAntiReplay) {
      const ReplayVerdict v = sa->replay.update(seq[i]);
      if (v != ReplayVerdict::kOk) {
        fail(i, sa, v == ReplayVerdict::kReplay ? DropReason::kReplay : DropReason::kOutsideWindow);
        continue;
      }
    }
    // RFC 4303 §2.4-2.6: ... | pad 1, 2, ..., n | pad length | next header | ICV.
    const std::uint8_t* pt = op.data + op.cipher_offset;
    const std::uint32_t clen = op.cipher_len;
    const std::uint32_t pad = pt[clen - 2];
    const std::uint8_t next_header = pt[clen - 1];
    if (pad + kEspTrailerLen > clen) { fail(i, sa, DropReason::kBadPadding); continue; }
    if (!padding_ok(pt + clen - kEspTrailerLen, pad)) {
      fail(i, sa, DropReason::kBadPadding);
      continue;
    }
    if (next_header != kIpProtoIpip) { fail(i, sa, DropReason::kBadNextHeader); continue; }

    // Inner IPv4 header sanity.
    const std::uint32_t payload_len = clen - kEspTrailerLen - pad;
    if (payload_len < kIpv4HeaderLen) { fail(i, sa, DropReason::kBadIpHeader); continue; }
    auto* inner = reinterpret_cast<rte_ipv4_hdr*>(const_cast<std::uint8_t*>(pt));
    const std::uint32_t ilen = net16(inner->total_length);
    // Common case 0x45 (no options): ihl = 20 <= ilen <= payload_len, in one unsigned compare.
    const bool inner_ok =
        inner->version_ihl == 0x45
            ? ilen - kIpv4HeaderLen <= payload_len - kIpv4HeaderLen
            : (inner->version_ihl >> 4) == 4 && (inner->version_ihl & 0x0F) * 4u >= kIpv4HeaderLen &&
                  ilen >= (inner->version_ihl & 0x0F) * 4u && ilen <= payload_len;
    if (!inner_ok) {
      fail(i, sa, DropReason::kBadIpHeader);
      continue;
    }
    // RFC 4301 §5.2: the inner addresses must match the SA's selectors.
    if (sa != sel_sa) {
      sel_sa = sa;
      peer_mask = sa->peer_subnet.mask();
      peer_net = sa->peer_subnet.addr;
      local_mask = sa->local_subnet.mask();
      local_net = sa->local_subnet.addr;
    }
    if ((((net32(inner->src_addr) & peer_mask) ^ peer_net) |
         ((net32(inner->dst_addr) & local_mask) ^ local_net)) != 0) {
      fail(i, sa, DropReason::kSelectorMismatch);
      continue;
    }
    // RFC 6040 §4.2: a CE mark on the outer header reaches an ECN-capable inner header.
    if ((outer_tos[i] & kEcnMask) == kEcnCe && (inner->type_of_service & kEcnMask) != 0 &&
        (inner->type_of_service & kEcnMask) != kEcnCe) {
      inner->type_of_service |= kEcnCe;
      inner->hdr_checksum = 0;
      inner->hdr_checksum = rte_ipv4_cksum(inner);
    }
    inner_len[i] = ilen;
    // Single segment (linearized in phase 1): strip the outer headers and the ESP trailer and
    // ICV by moving the data window (rte_pktmbuf_adj + trim, without their re-checks).
    rte_mbuf* m = pkts[i];
    m->data_off = static_cast<std::uint16_t>(m->data_off + strip[i]);
    m->data_len = static_cast<std::uint16_t>(ilen);
    m->pkt_len = ilen;
    ++run_k;
    run_bytes += ilen;
  }
  flush_run(o);
  return partition_burst(pkts.data(), verdict, total_n);
}

}  // namespace ipsecgw::dp
