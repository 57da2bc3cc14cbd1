// ESP tunnel-mode decapsulation, per burst (RFC 4303 §3.4; RFC 3948 for UDP encap).
// Runs per packet: no allocation, locks, exceptions, syscalls or virtual calls.
//
// Order (RFC 4303 §3.4.3-3.4.4): lengths, encapsulation, replay pre-check (step 1), ICV
// (constant time, in the engine) for the whole burst (step 2), then the replay window update,
// padding, next header, inner header and selectors, each good packet stripped and counted per
// run of one SA, volume limits checked per run (step 3). Nothing reads the plaintext of a
// packet whose ICV failed.
//
// The outer layout is parsed once per packet: by esp_inbound_parse / esp_inbound_parse_l4,
// which record it in the mbuf for esp_inbound_recorded, or here by esp_inbound.
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

// The part of the outer parse after the IPv4 header checks: UDP 4500 (RFC 3948) or ESP, and
// an ESP header inside the packet and the first segment (`avail` bytes). `ip` is checked:
// version 4, ihl >= 20 inside the segment, total >= ihl and inside the packet, no fragment.
IPSECGW_STEP bool parse_after_ip(const std::uint8_t* ip, std::uint8_t proto, std::uint32_t ihl,
                    std::uint32_t total, std::uint32_t avail, OuterLayout* out,
                    DropReason* why) noexcept {
  const std::uint8_t* l4 = ip + ihl;
  std::uint32_t esp_off = ihl;
  bool encap = false;
  if (proto == kIpProtoUdp) {
    if (total < ihl + kUdpHeaderLen || avail < ihl + kUdpHeaderLen) {
      *why = DropReason::kRunt;
      return false;
    }
    const auto* udp = reinterpret_cast<const rte_udp_hdr*>(l4);
    if (net16(udp->dst_port) != kNatTPort) { *why = DropReason::kUdpClosedPort; return false; }
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
      default: *why = DropReason::kNotEsp; return false;  // IKE or keepalive
    }
    esp_off += kUdpHeaderLen;
    encap = true;
  } else if (proto != kIpProtoEsp) {
    *why = DropReason::kNotEsp;
    return false;
  }
  if (total < esp_off + kEspHeaderLen || avail < esp_off + kEspHeaderLen) {
    *why = DropReason::kRunt;
    return false;
  }
  std::uint32_t spi_be;
  std::memcpy(&spi_be, ip + esp_off, 4);
  out->esp_off = esp_off;
  out->total_len = total;
  out->spi = net32(spi_be);
  out->udp_encap = encap;
  return true;
}

IPSECGW_STEP bool parse_outer(const rte_mbuf* m, OuterLayout* out, DropReason* why) noexcept {
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
  return parse_after_ip(reinterpret_cast<const std::uint8_t*>(ip), ip->next_proto_id, ihl, total,
                        avail, out, why);
}

// Records a parsed layout in the mbuf (see esp.hpp).
inline void record_layout(rte_mbuf* m, const OuterLayout& l) noexcept {
  esp_record_layout(m, l.esp_off, l.udp_encap, l.total_len);
}

// The layout esp_inbound_parse / esp_inbound_parse_l4 recorded in the mbuf.
inline OuterLayout recorded_layout(const rte_mbuf* m) noexcept {
  OuterLayout l;
  l.esp_off = esp_recorded_offset(m);
  l.total_len = m->tso_segsz;
  l.spi = esp_recorded_spi(m);
  l.udp_encap = m->l4_len != 0;
  return l;
}

// ---- esp_inbound's steps ----

// The burst's state, shared by the steps below. Drops are counted as they are found.
struct InboundBurst {
  LcoreStats& st;
  rte_mbuf** pkts;
  InboundSa* const* sas;
  std::uint8_t verdict[kMaxBurst * 2];
  std::uint32_t seq[kMaxBurst];
  std::uint32_t inner_len[kMaxBurst];
  crypto::EspCryptoOp ops[kMaxBurst];
  std::uint8_t op_pkt[kMaxBurst];
  std::uint8_t outer_tos[kMaxBurst];
  std::uint16_t strip[kMaxBurst];
  unsigned n_ops = 0;

  // The arrays are filled as the steps go (no zeroing per burst).
  InboundBurst(LcoreStats& s, rte_mbuf** p, InboundSa* const* a) noexcept
      : st(s), pkts(p), sas(a) {}

  void fail(unsigned i, SaHead* sa, DropReason r) noexcept {
    verdict[i] = static_cast<std::uint8_t>(r);
    count_drop(st, sa, r);
  }
};

// The SA's per-packet parameters, loaded once per run of packets of one SA.
struct InboundSaParams {
  const InboundSa* sa = nullptr;
  bool dead = false;
  std::uint32_t cipher_off = 0, icv_len = 0, align_mask = 0;

  void load(const InboundSa& s) noexcept {
    sa = &s;
    dead = s.dead.load(std::memory_order_relaxed);
    cipher_off = s.alg.cipher_offset;
    icv_len = s.alg.icv_len;
    align_mask = s.alg.block_align - 1u;
  }
};

// Step 1, per packet before the ICV: SA alive, single segment, outer layout (parsed here or
// recorded at RX: kRecorded), SPI and encapsulation match the SA, lengths, replay pre-check;
// builds the crypto op. False when the packet was dropped.
template <bool kRecorded>
IPSECGW_STEP bool inbound_prepare(InboundBurst& b, unsigned i, InboundSa* sa,
                            const InboundSaParams& p) noexcept {
  rte_mbuf* m = b.pkts[i];
  if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
    b.fail(i, sa, DropReason::kLinearizeFailed);
    return false;
  }
  OuterLayout l;
  if constexpr (kRecorded) {
    l = recorded_layout(m);
  } else {
    DropReason why = DropReason::kRunt;
    if (!parse_outer(m, &l, &why)) { b.fail(i, sa, why); return false; }
  }
  if (l.spi != sa->spi) { b.fail(i, sa, DropReason::kNoSa); return false; }
  if (l.udp_encap != ((sa->flags & kSaUdpEncap) != 0)) {
    b.fail(i, sa, DropReason::kEncapMismatch);
    return false;
  }
  const std::uint32_t esp_len = l.total_len - l.esp_off;
  if (esp_len < p.cipher_off + p.icv_len) { b.fail(i, sa, DropReason::kRunt); return false; }
  const std::uint32_t cipher_len = esp_len - p.cipher_off - p.icv_len;
  // RFC 4303 §2.4 / RFC 3602 §3: whole blocks of the SA's alignment, at least one (it holds
  // the trailer).
  if (cipher_len == 0 || (cipher_len & p.align_mask) != 0) {
    b.fail(i, sa, DropReason::kBadLength);
    return false;
  }
  auto* esp = rte_pktmbuf_mtod_offset(m, std::uint8_t*, l.esp_off);
  std::uint32_t seq_be;
  std::memcpy(&seq_be, esp + 4, 4);
  b.seq[i] = net32(seq_be);
  // RFC 4303 §3.4.3: reject duplicates before spending the ICV computation.
  if (sa->flags & kSaAntiReplay) {
    const ReplayVerdict v = sa->replay.check(b.seq[i]);
    if (v != ReplayVerdict::kOk) {
      b.fail(i, sa, v == ReplayVerdict::kReplay ? DropReason::kReplay : DropReason::kOutsideWindow);
      return false;
    }
  }
  b.outer_tos[i] = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->type_of_service;
  b.strip[i] = static_cast<std::uint16_t>(l.esp_off + p.cipher_off);

  crypto::EspCryptoOp& op = b.ops[b.n_ops];
  op.ks = &sa->keys;
  op.data = esp;
  op.auth_len = p.cipher_off + cipher_len;
  op.cipher_offset = p.cipher_off;
  op.cipher_len = cipher_len;
  op.iv = esp + kEspIvOffset;
  op.icv = esp + op.auth_len;  // op.status: set by the engine for every op
  b.op_pkt[b.n_ops++] = static_cast<std::uint8_t>(i);
  return true;
}

template <bool kRecorded>
IPSECGW_STEP void inbound_step1(InboundBurst& b, unsigned n) noexcept {
  InboundSaParams p;
  for (unsigned i = 0; i < n; ++i) {
    InboundSa* sa = b.sas[i];
    b.verdict[i] = kGood;
    if (sa == nullptr) { b.fail(i, nullptr, DropReason::kNoSa); continue; }
    if (sa != p.sa) p.load(*sa);
    if (p.dead) { b.fail(i, sa, DropReason::kSaDown); continue; }
    inbound_prepare<kRecorded>(b, i, sa, p);
  }
}

// The SA's selectors (RFC 4301 §5.2) as masks, taken once per run of packets of one SA.
struct Selectors {
  const InboundSa* sa = nullptr;
  Ipv4 peer_mask = 0, peer_net = 0, local_mask = 0, local_net = 0;

  bool match(const InboundSa& s, Ipv4 src, Ipv4 dst) noexcept {
    if (&s != sa) {
      sa = &s;
      peer_mask = s.peer_subnet.mask();
      peer_net = s.peer_subnet.addr;
      local_mask = s.local_subnet.mask();
      local_net = s.local_subnet.addr;
    }
    return (((src & peer_mask) ^ peer_net) | ((dst & local_mask) ^ local_net)) == 0;
  }
};

// Step 3, per authenticated packet, in packet order: replay window update, padding, next
// header, inner header, selectors, ECN; strips the outer headers, trailer and ICV. Returns
// kGood (inner length in b.inner_len[i]) or the DropReason.
IPSECGW_STEP std::uint8_t inbound_open(InboundBurst& b, unsigned i, InboundSa& sa,
                                 const crypto::EspCryptoOp& op, Selectors& sel) noexcept {
  // RFC 4303 §3.4.3: the window moves only for authenticated packets; re-checked here
  // because one burst may carry the same number twice.
  if (sa.flags & kSaAntiReplay) {
    const ReplayVerdict v = sa.replay.update(b.seq[i]);
    if (v != ReplayVerdict::kOk)
      return static_cast<std::uint8_t>(v == ReplayVerdict::kReplay ? DropReason::kReplay
                                                                   : DropReason::kOutsideWindow);
  }
  // RFC 4303 §2.4-2.6: ... | pad 1, 2, ..., n | pad length | next header | ICV.
  const std::uint8_t* pt = op.data + op.cipher_offset;
  const std::uint32_t clen = op.cipher_len;
  const std::uint32_t pad = pt[clen - 2];
  const std::uint8_t next_header = pt[clen - 1];
  if (pad + kEspTrailerLen > clen) return static_cast<std::uint8_t>(DropReason::kBadPadding);
  if (!padding_ok(pt + clen - kEspTrailerLen, pad))
    return static_cast<std::uint8_t>(DropReason::kBadPadding);
  if (next_header != kIpProtoIpip) return static_cast<std::uint8_t>(DropReason::kBadNextHeader);

  // Inner IPv4 header sanity.
  const std::uint32_t payload_len = clen - kEspTrailerLen - pad;
  if (payload_len < kIpv4HeaderLen) return static_cast<std::uint8_t>(DropReason::kBadIpHeader);
  auto* inner = reinterpret_cast<rte_ipv4_hdr*>(const_cast<std::uint8_t*>(pt));
  const std::uint32_t ilen = net16(inner->total_length);
  // Common case 0x45 (no options): ihl = 20 <= ilen <= payload_len, in one unsigned compare.
  const bool inner_ok =
      inner->version_ihl == 0x45
          ? ilen - kIpv4HeaderLen <= payload_len - kIpv4HeaderLen
          : (inner->version_ihl >> 4) == 4 && (inner->version_ihl & 0x0F) * 4u >= kIpv4HeaderLen &&
                ilen >= (inner->version_ihl & 0x0F) * 4u && ilen <= payload_len;
  if (!inner_ok) return static_cast<std::uint8_t>(DropReason::kBadIpHeader);
  // RFC 1812 §5.2.2: a router discards a packet whose header checksum fails; the ICV proves
  // only that the peer sent it, not that the header it encrypted is valid.
  if (!ipv4_header_checksum_ok(inner, (inner->version_ihl & 0x0F) * 4u)) [[unlikely]]
    return static_cast<std::uint8_t>(DropReason::kBadInnerChecksum);
  // RFC 4301 §5.2: the inner addresses must match the SA's selectors.
  if (!sel.match(sa, net32(inner->src_addr), net32(inner->dst_addr)))
    return static_cast<std::uint8_t>(DropReason::kSelectorMismatch);
  // RFC 6040 §4.2: a CE mark on the outer header reaches an ECN-capable inner header.
  if ((b.outer_tos[i] & kEcnMask) == kEcnCe && (inner->type_of_service & kEcnMask) != 0 &&
      (inner->type_of_service & kEcnMask) != kEcnCe) {
    inner->type_of_service |= kEcnCe;
    inner->hdr_checksum = 0;
    inner->hdr_checksum = rte_ipv4_cksum(inner);
  }
  b.inner_len[i] = ilen;
  // Single segment (linearized in step 1): strip the outer headers and the ESP trailer and
  // ICV by moving the data window (rte_pktmbuf_adj + trim, without their re-checks).
  rte_mbuf* m = b.pkts[i];
  m->data_off = static_cast<std::uint16_t>(m->data_off + b.strip[i]);
  m->data_len = static_cast<std::uint16_t>(ilen);
  m->pkt_len = ilen;
  return kGood;
}

// Volume limits and counters per run of consecutive ops of one SA, flushed when the SA
// changes: good packets are counted as they pass; a run that turns out not to be clear of the
// limits (rare: a soft or hard limit is crossed inside it) is walked again packet by packet.
struct InboundRun {
  InboundSa* sa = nullptr;
  unsigned first = 0;
  std::uint64_t k = 0, bytes = 0;

  [[gnu::always_inline]] void flush(InboundBurst& b, unsigned end, std::uint64_t now) noexcept {
    if (k == 0) return;
    const std::uint64_t p0 = sa->counters.packets.load(std::memory_order_relaxed);
    const std::uint64_t b0 = sa->counters.bytes.load(std::memory_order_relaxed);
    std::uint64_t p = k, by = bytes;
    if (!run_clear_of_limits(*sa, p0, b0, k, bytes)) [[unlikely]] {
      p = by = 0;
      for (unsigned x = first; x < end; ++x) {
        const unsigned i = b.op_pkt[x];
        if (b.verdict[i] != kGood) continue;
        if (!within_limits(*sa, p0 + p, b0 + by, b.inner_len[i])) {
          b.fail(i, sa, DropReason::kSaDown);  // already stripped: dropped all the same
          continue;
        }
        ++p;
        by += b.inner_len[i];
      }
      if (p == 0) return;
    }
    sa->counters.packets.store(p0 + p, std::memory_order_relaxed);  // one writer: the owner
    sa->counters.bytes.store(b0 + by, std::memory_order_relaxed);
    sa->counters.last_used_tsc.store(now, std::memory_order_relaxed);
    b.st.esp_in_packets += p;
    b.st.esp_in_bytes += by;
  }
};

IPSECGW_STEP void inbound_step3(InboundBurst& b) noexcept {
  const std::uint64_t now = b.n_ops != 0 ? rte_rdtsc() : 0;
  Selectors sel;
  InboundRun run;
  for (unsigned k = 0; k < b.n_ops; ++k) {
    const unsigned i = b.op_pkt[k];
    InboundSa* sa = b.sas[i];
    const crypto::EspCryptoOp& op = b.ops[k];
    if (sa != run.sa) {
      run.flush(b, k, now);
      run = InboundRun{sa, k, 0, 0};
    }
    switch (op.status) {
      case crypto::OpStatus::kOk: break;
      case crypto::OpStatus::kBadIcv: b.fail(i, sa, DropReason::kBadIcv); continue;
      case crypto::OpStatus::kBadLength: b.fail(i, sa, DropReason::kBadLength); continue;
      default: b.fail(i, sa, DropReason::kCryptoError); continue;
    }
    const std::uint8_t v = inbound_open(b, i, *sa, op, sel);
    if (v != kGood) {
      b.fail(i, sa, static_cast<DropReason>(v));
      continue;
    }
    ++run.k;
    run.bytes += b.inner_len[i];
  }
  run.flush(b, b.n_ops, now);
}

// The three steps over one burst: (1) checks before the ICV and the crypto ops, (2) ICV
// (constant time) and decryption for the whole burst (RFC 4303 §3.4.4), (3) checks after it,
// stripping and counting. Then the burst is partitioned (esp.hpp's burst contract).
template <bool kRecorded>
std::uint16_t inbound_burst(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                            std::span<InboundSa* const> sas, LcoreStats& st) noexcept {
  const BurstBounds bounds = burst_bounds(pkts.size(), sas.size());
  InboundBurst b{st, pkts.data(), sas.data()};
  inbound_step1<kRecorded>(b, bounds.n);
  drop_overflow(st, sas.data(), b.verdict, bounds);
  if (b.n_ops != 0) engine.decrypt_validated(std::span<crypto::EspCryptoOp>(b.ops, b.n_ops));
  inbound_step3(b);
  return partition_burst(pkts.data(), b.verdict, bounds.total_n);
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

namespace {

// A parse's outcome: the layout recorded in the mbuf and the SPI returned, or the reason.
inline bool parse_result(bool ok, rte_mbuf* m, const OuterLayout& l, DropReason r,
                         EspInboundInfo* info, DropReason* why) noexcept {
  if (!ok) {
    if (why != nullptr) *why = r;
    return false;
  }
  record_layout(m, l);
  info->spi = l.spi;
  info->udp_encap = l.udp_encap;
  return true;
}

}  // namespace

bool esp_inbound_parse(rte_mbuf* m, EspInboundInfo* info, DropReason* why) noexcept {
  OuterLayout l;
  DropReason r = DropReason::kRunt;
  const bool ok = parse_outer(m, &l, &r);
  return parse_result(ok, m, l, r, info, why);
}

bool esp_inbound_parse_l4(rte_mbuf* m, std::uint32_t ihl, EspInboundInfo* info,
                          DropReason* why) noexcept {
  const auto* ip = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
  OuterLayout l;
  DropReason r = DropReason::kRunt;
  const bool ok = parse_after_ip(reinterpret_cast<const std::uint8_t*>(ip), ip->next_proto_id,
                                 ihl, net16(ip->total_length), m->data_len, &l, &r);
  return parse_result(ok, m, l, r, info, why);
}

std::uint16_t esp_inbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                          std::span<InboundSa* const> sas, LcoreStats& st) noexcept {
  return inbound_burst<false>(engine, pkts, sas, st);
}

std::uint16_t esp_inbound_recorded(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                                   std::span<InboundSa* const> sas, LcoreStats& st) noexcept {
  return inbound_burst<true>(engine, pkts, sas, st);
}

}  // namespace ipsecgw::dp
