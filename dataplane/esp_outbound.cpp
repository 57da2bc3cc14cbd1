// ESP tunnel-mode encapsulation, per burst (RFC 4303 §3.1.2, §3.3; RFC 3948 for UDP encap).
// Runs per packet: no allocation, locks, exceptions, syscalls or virtual calls.
//
//   inner IPv4 packet  ->  outer IPv4 | [UDP 4500] | SPI | seq | IV | inner | pad | pl | nh | ICV
//
// Steps over the burst: (1) per-packet checks (SA alive, single segment, IPv4 inner, MTU,
// head/tail room) and, in the same pass, (2) its sequence number and the volume limits (three
// compares while clear of them), the SA's counters kept in registers over a run of packets of
// one SA and stored back on the line read for the limits when the run ends; (3) headers and
// trailer written, IVs from one random_view call; (4) one encrypt call for the whole burst;
// (5) crypto status in one pass over the ops (a failure is taken back out of the counters);
// burst partitioned. IV length, cipher offset, block alignment and ICV length are the SA's
// (SaHead::alg), read once per run of packets of one SA. With thousands of tunnels a run is
// one packet long: what is done per run is done per packet (issue #12), so steps 1 and 2
// share one pass and one load of the SA's values.
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

constexpr std::uint64_t kMaxSeq = 0xFFFFFFFFull;

// Outer IPv4 identification: a per-lcore counter (RFC 6864: only needs to be unique per
// src/dst/proto while fragments may be in flight).
thread_local std::uint16_t t_ip_id = 0;

// RFC 4303 §2.4 default padding: 1, 2, 3, ... (at most 15 bytes for a 16-byte block).
alignas(16) constexpr std::uint8_t kPadBytes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// The outer header template is copied with one fixed-size copy: IPv4 (20) + SPI (4) + 8 bytes
// that are overwritten afterwards (seq + IV start), or IPv4 (20) + UDP (8) + SPI (4).
constexpr std::uint32_t kTemplateCopy = 32;
static_assert(kTemplateCopy <= sizeof(OutboundSa::hdr_template));
static_assert(kMaxBurst * crypto::kMaxEspIvLen <= crypto::EspEngine::kMaxRandomView);
static_assert(kTemplateCopy <= kIpv4HeaderLen + kEspHeaderLen + crypto::kMinEspIvLen,
              "must stay inside the shortest outer header");

inline std::uint16_t load16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Finishes the header checksum from the SA's base (OutboundSa::ip_cksum_base: the words that
// are the same for every packet of the SA) and the words at offsets 0, 2, 4, 6
// (version/TOS, total length, ID, flags/fragment offset), which are already written. The same
// value rte_ipv4_cksum() computes (checksum field taken as zero): ~ of the folded sum.
inline std::uint16_t ip_cksum_finish(std::uint32_t base, const std::uint8_t* ip) noexcept {
  std::uint32_t sum = base + load16(ip) + load16(ip + 2) + load16(ip + 4) + load16(ip + 6);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// ---- esp_outbound's steps ----

// The burst's state, shared by the steps below. Drops are counted as they are found.
struct OutboundBurst {
  LcoreStats& st;
  rte_mbuf** pkts;
  OutboundSa* const* sas;
  std::uint8_t verdict[kMaxBurst * 2];
  std::uint32_t clen[kMaxBurst];  // padded payload length; after step 3 the inner length
  std::uint32_t seq[kMaxBurst];
  // The ops themselves are a separate array of esp_outbound's: their address goes to the
  // engine, and this struct's must not escape, or the compiler reloads its fields after every
  // store into packet data.
  crypto::EspCryptoOp* ops;
  std::uint8_t op_pkt[kMaxBurst];
  unsigned n_ops = 0;
  bool all_iv16 = true;  // every SA of the burst has a kMaxEspIvLen IV (step 2 finds out)
  std::uint64_t now = 0;         // TSC for the SAs' last_used_tsc, read once per burst
  std::uint64_t good_bytes = 0;  // inner bytes of the packets step 2 kept (the lcore's counter)

  // The arrays are filled as the steps go (no zeroing per burst).
  OutboundBurst(LcoreStats& s, rte_mbuf** p, OutboundSa* const* a, crypto::EspCryptoOp* o) noexcept
      : st(s), pkts(p), sas(a), ops(o) {}

  void fail(unsigned i, SaHead* sa, DropReason r) noexcept {
    verdict[i] = static_cast<std::uint8_t>(r);
    count_drop(st, sa, r);
  }
};

// Step 1's per-SA values and the SA's sequence and volume counters, loaded when the SA
// changes between consecutive packets (a run of packets of one SA; one packet long with
// thousands of tunnels); the counters are stored back when the run ends.
struct OutboundRun {
  OutboundSa* sa = nullptr;
  bool dead = false;
  std::uint32_t max_inner = 0;  // OutboundSa::max_inner: the longest inner packet that fits
  std::uint32_t head_need = 0, icv_len = 0;
  std::uint32_t pad_add = 0, pad_mask = 0;  // esp_padded_len() as (len + pad_add) & pad_mask
  // The SA's counters as the run leaves them, and what they were when it began.
  std::uint64_t seq = 0, pkts = 0, bytes = 0, bytes0 = 0;
  // The SA's run bounds (SaHead::run_max_*: short of the soft limits, then of the hard ones):
  // within them and with a sequence number left, a packet needs no closer look
  // (within_limits).
  std::uint64_t max_pkts = 0, max_bytes = 0;

  void open(OutboundSa& s) noexcept {
    sa = &s;
    dead = s.dead.load(std::memory_order_relaxed);
    head_need = s.outer_hdr_len;
    icv_len = s.alg.icv_len;
    pad_add = kEspTrailerLen + s.alg.block_align - 1u;
    pad_mask = ~(s.alg.block_align - 1u);
    max_inner = s.max_inner.load(std::memory_order_relaxed);
    seq = s.seq_next.load(std::memory_order_relaxed);
    pkts = s.counters.packets.load(std::memory_order_relaxed);
    bytes = bytes0 = s.counters.bytes.load(std::memory_order_relaxed);
    load_bounds();
  }
  void load_bounds() noexcept {
    max_pkts = sa->run_max_packets;
    max_bytes = sa->run_max_bytes;
  }
  // Whether one more packet of `len` bytes stays within the run bounds and has a sequence
  // number (RFC 4303 §3.3.3: the counter never cycles; numbers past 2^32-1 are not sent).
  bool clear(std::uint32_t len) const noexcept {
    return pkts < max_pkts && bytes + len <= max_bytes && seq <= kMaxSeq;
  }
  // The run ends. Every number handed out is used up (a packet dropped for a limit had one);
  // the counters go back on the line read for the limits (SaHead), the packets and bytes only
  // when the run counted any. The rare encryption failure is taken back out in step 5.
  void close(OutboundBurst& b) noexcept {
    sa->seq_next.store(seq, std::memory_order_relaxed);
    if (bytes == bytes0) return;  // nothing counted (every packet has bytes)
    sa->counters.packets.store(pkts, std::memory_order_relaxed);
    sa->counters.bytes.store(bytes, std::memory_order_relaxed);
    sa->counters.last_used_tsc.store(b.now, std::memory_order_relaxed);
    b.good_bytes += bytes - bytes0;
  }
};

// Steps 1 and 2, per packet: SA alive, single segment, IPv4 inner, MTU, head and tail room;
// then its sequence number and the volume limits, counted for the SA. Returns the packets
// still good (the crypto ops step 3 builds).
IPSECGW_STEP unsigned outbound_step12(OutboundBurst& b, unsigned n) noexcept {
  OutboundRun run;
  unsigned n_good = 0;
  rte_mbuf** pkts = b.pkts;  // locals: kept in registers across the checks
  OutboundSa* const* sas = b.sas;
  std::uint8_t* verdict = b.verdict;
  std::uint32_t* seqs = b.seq;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    OutboundSa* sa = sas[i];
    verdict[i] = kGood;
    if (sa == nullptr) { b.fail(i, nullptr, DropReason::kNoSa); continue; }
    if (sa != run.sa) {
      if (run.sa != nullptr) run.close(b);
      run.open(*sa);
      b.all_iv16 &= sa->alg.iv_len == crypto::kMaxEspIvLen;  // once per run: picks step 3
    }
    if (run.dead) { b.fail(i, sa, DropReason::kSaDown); continue; }
    if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
      b.fail(i, sa, DropReason::kNoSpace);
      continue;
    }
    const std::uint32_t inner_len = m->pkt_len;
    if (inner_len < kIpv4HeaderLen) { b.fail(i, sa, DropReason::kRunt); continue; }
    const auto* inner = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
    if ((inner->version_ihl >> 4) != 4) { b.fail(i, sa, DropReason::kBadIpHeader); continue; }
    const std::uint32_t c = (inner_len + run.pad_add) & run.pad_mask;  // esp_padded_len()
    b.clen[i] = c;
    if (inner_len > run.max_inner) {
      b.fail(i, sa, DropReason::kMtuExceeded);
      continue;
    }
    const std::uint32_t tail = c - inner_len + run.icv_len;
    if (rte_pktmbuf_headroom(m) < run.head_need || rte_pktmbuf_tailroom(m) < tail) {
      b.fail(i, sa, DropReason::kNoSpace);
      continue;
    }
    // Step 2: its sequence number, and the limits (three compares while clear of them all).
    const bool clear = run.clear(inner_len);
    const std::uint64_t this_seq = run.seq++;
    if (!clear) [[unlikely]] {
      if (this_seq > kMaxSeq) {
        raise_sa_event(*sa, kEvSeqExhausted);
        b.fail(i, sa, DropReason::kSeqExhausted);
        continue;
      }
      if (!within_limits(*sa, run.pkts, run.bytes, inner_len)) {
        b.fail(i, sa, DropReason::kSaDown);
        continue;
      }
      run.load_bounds();  // past a soft limit they moved (within_limits)
    }
    ++run.pkts;
    run.bytes += inner_len;
    seqs[i] = static_cast<std::uint32_t>(this_seq);
    ++n_good;
  }
  if (run.sa != nullptr) run.close(b);
  return n_good;
}

// Step 3 over the burst: per good packet, the outer header from the template, sequence number
// and IV, padding and trailer, and its crypto op. IVs (RFC 3602 §3: unpredictable) are read
// straight from the engine's CSPRNG keystream, one kMaxEspIvLen slot per op whatever the SA's
// IV length. (One loop body, not a per-packet helper: as a helper with its eight arguments the
// compiler kept fewer values in registers, about 3 instructions per packet more.) kIv16: every
// SA of the burst has a 16-byte IV, copied as one fixed-size move; the per-SA length is only
// looked at otherwise (chosen per burst from steps 1-2's runs, so not per packet).
template <bool kIv16>
IPSECGW_STEP void outbound_step3(crypto::EspEngine& engine, OutboundBurst& b, unsigned n,
                                 unsigned n_good) noexcept {
  const std::uint8_t* ivs =
      n_good != 0 ? engine.random_view(n_good * crypto::kMaxEspIvLen) : nullptr;
  // Locals: not reloaded after the stores into packet data.
  rte_mbuf* const* pkts = b.pkts;
  OutboundSa* const* sas = b.sas;
  const std::uint8_t* verdict = b.verdict;
  std::uint32_t* clen = b.clen;
  crypto::EspCryptoOp* ops = b.ops;
  std::uint8_t* op_pkt = b.op_pkt;
  // Per-SA values, recomputed only when the SA changes between consecutive packets (scalars,
  // not a struct: GCC kept a struct's fields on the stack).
  const OutboundSa* cur = nullptr;
  std::uint32_t ck_base = 0, esp_off = 0, trailer_room = 0, cipher_off = 0, iv_len = 0;
  std::uint16_t df_set = 0, df_copy_mask = 0;
  bool udp = false;
  std::uint16_t ip_id = t_ip_id;
  unsigned o = 0;
  for (unsigned i = 0; i < n; ++i) {
    if (verdict[i] != kGood) continue;
    rte_mbuf* m = pkts[i];
    const OutboundSa& sa = *sas[i];
    if (&sa != cur) {
      cur = &sa;
      ck_base = sa.ip_cksum_base;
      cipher_off = sa.alg.cipher_offset;
      iv_len = sa.alg.iv_len;
      esp_off = sa.outer_hdr_len - cipher_off;
      trailer_room = kEspTrailerLen + sa.alg.icv_len;
      // DF (RFC 4301 §8.1): set, clear, or copied from the inner header (masks, no branch).
      df_set = sa.df_set;
      df_copy_mask = sa.df_copy_mask;
      udp = (sa.flags & kSaUdpEncap) != 0;
    }
    const std::uint32_t inner_len = m->pkt_len;
    const std::uint32_t pad = clen[i] - inner_len - kEspTrailerLen;

    // Single segment (checked in step 1), head and tail room checked: grow the mbuf directly
    // (what rte_pktmbuf_prepend/append do, without their re-checks and last-segment walk).
    auto* inner_p = rte_pktmbuf_mtod(m, std::uint8_t*);
    const auto* inner = reinterpret_cast<const rte_ipv4_hdr*>(inner_p);
    const std::uint8_t inner_tos = inner->type_of_service;
    const std::uint16_t inner_frag = net16(inner->fragment_offset);
    std::uint8_t* tail = inner_p + inner_len;
    const std::uint32_t grow = sa.outer_hdr_len + pad + trailer_room;
    m->data_off = static_cast<std::uint16_t>(m->data_off - sa.outer_hdr_len);
    m->data_len = static_cast<std::uint16_t>(m->data_len + grow);
    m->pkt_len += grow;
    std::uint8_t* out = inner_p - sa.outer_hdr_len;
    std::memcpy(out, sa.hdr_template, kTemplateCopy);  // IPv4 [+ UDP] + SPI

    // Outer IPv4 (RFC 4301 §5.1.2.1): DSCP copied; ECN copied (RFC 6040 §4.1 normal mode).
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(out);
    const std::uint32_t total = m->pkt_len;
    ip->type_of_service = inner_tos;
    ip->total_length = net16(static_cast<std::uint16_t>(total));
    ip->packet_id = net16(ip_id++);
    ip->fragment_offset =
        net16(static_cast<std::uint16_t>(df_set | (inner_frag & df_copy_mask)));
    ip->hdr_checksum = ip_cksum_finish(ck_base, out);
    if (udp) {
      // RFC 3948 §2.1 / §3.1.2: UDP length, checksum zero.
      auto* udp = reinterpret_cast<rte_udp_hdr*>(out + kIpv4HeaderLen);
      udp->dgram_len = net16(static_cast<std::uint16_t>(total - kIpv4HeaderLen));
      udp->dgram_cksum = 0;
    }
    std::uint8_t* esp = out + esp_off;
    const std::uint32_t seq_be = net32(b.seq[i]);
    std::memcpy(esp + 4, &seq_be, 4);
    // A fixed-size copy for the 16-byte IV of every algorithm so far (one vector move).
    const std::uint8_t* iv = ivs + o * crypto::kMaxEspIvLen;
    if (kIv16 || iv_len == crypto::kMaxEspIvLen)
      std::memcpy(esp + kEspIvOffset, iv, crypto::kMaxEspIvLen);
    else
      std::memcpy(esp + kEspIvOffset, iv, iv_len);

    // RFC 4303 §2.4: padding bytes 1, 2, 3, ...; then pad length and next header (IPv4). One
    // 16-byte copy when the appended bytes (pad + trailer + ICV) can hold it: the bytes past
    // the padding are overwritten by the trailer here and the ICV by the crypto.
    if (pad + trailer_room >= sizeof kPadBytes) std::memcpy(tail, kPadBytes, sizeof kPadBytes);
    else std::memcpy(tail, kPadBytes, pad);
    tail[pad] = static_cast<std::uint8_t>(pad);
    tail[pad + 1] = kIpProtoIpip;

    crypto::EspCryptoOp& op = ops[o];
    op.ks = &sa.keys;
    op.data = esp;
    op.auth_len = cipher_off + clen[i];
    op.cipher_offset = cipher_off;
    op.cipher_len = clen[i];
    op.iv = esp + kEspIvOffset;
    op.icv = esp + op.auth_len;
    op.status = crypto::OpStatus::kOk;
    op_pkt[o] = static_cast<std::uint8_t>(i);
    clen[i] = inner_len;  // from here on: the inner length, for the counters
    ++o;
  }
  t_ip_id = ip_id;
  b.n_ops = o;
}

// Step 5: the crypto status of each op. Step 2 counted the packets (the SA's counters, on the
// line it had just read for the limits; the lcore's here, once per burst); an op that failed
// (never, for well-formed ops) is dropped and taken back out of its SA's counters.
IPSECGW_STEP void outbound_step5(OutboundBurst& b) noexcept {
  const unsigned o = b.n_ops;
  const crypto::EspCryptoOp* ops = b.ops;
  unsigned failed = 0;
  std::uint64_t failed_bytes = 0;
  for (unsigned k = 0; k < o; ++k) {
    if (ops[k].status == crypto::OpStatus::kOk) [[likely]] continue;
    const unsigned i = b.op_pkt[k];
    OutboundSa* sa = b.sas[i];
    const std::uint32_t len = b.clen[i];  // the inner length since step 3
    b.fail(i, sa, DropReason::kCryptoError);
    sa->counters.packets.store(sa->counters.packets.load(std::memory_order_relaxed) - 1,
                               std::memory_order_relaxed);
    sa->counters.bytes.store(sa->counters.bytes.load(std::memory_order_relaxed) - len,
                             std::memory_order_relaxed);
    ++failed;
    failed_bytes += len;
  }
  b.st.esp_out_packets += o - failed;
  b.st.esp_out_bytes += b.good_bytes - failed_bytes;
}

}  // namespace

std::uint16_t esp_outbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                           std::span<OutboundSa* const> sas, LcoreStats& st) noexcept {
  const BurstBounds bounds = burst_bounds(pkts.size(), sas.size());
  crypto::EspCryptoOp ops[kMaxBurst];
  OutboundBurst b(st, pkts.data(), sas.data(), ops);
  b.now = rte_rdtsc();
  const unsigned n_good = outbound_step12(b, bounds.n);
  drop_overflow(st, sas.data(), b.verdict, bounds);
  if (b.all_iv16) outbound_step3<true>(engine, b, bounds.n, n_good);
  else outbound_step3<false>(engine, b, bounds.n, n_good);
  if (b.n_ops == 0) return partition_burst(pkts.data(), b.verdict, bounds.total_n);
  engine.encrypt_validated(std::span<crypto::EspCryptoOp>(ops, b.n_ops));  // step 4
  outbound_step5(b);
  return partition_burst(pkts.data(), b.verdict, bounds.total_n);
}

}  // namespace ipsecgw::dp
