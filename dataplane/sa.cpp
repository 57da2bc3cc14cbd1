// Runtime SA construction and teardown (control core only; never per packet).
#include "dataplane/sa.hpp"

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "dataplane/esp.hpp"

namespace ipsecgw::dp {

static_assert(sizeof(ReplayWindow) <= 4096 / 8 + 64, "replay window is a fixed bitmap");
static_assert(alignof(SaHead) == 64 && alignof(InboundSa) == 64 && alignof(OutboundSa) == 64);
// The per-packet lines (see SaHead's layout note): line 0 read-only, line 1 the owner's per-run
// limits and counters, the key schedule's first 4 lines, the direction's own line.
static_assert(offsetof(SaHead, alg) + sizeof(crypto::EspAlgParams) <= 64 &&
                  offsetof(SaHead, published) + sizeof(SaHead::published) <= 64 &&
                  offsetof(SaHead, dead) + sizeof(SaHead::dead) <= 64 &&
                  offsetof(SaHead, owner) + sizeof(SaHead::owner) <= 64,
              "hot read-only fields must stay in the first cache line");
static_assert(offsetof(SaHead, run_max_packets) == 64 &&
                  offsetof(SaHead, counters) + offsetof(SaCounterBlock, drops) <= 128,
              "limits and packets/bytes/last_used counters: line 1");
static_assert(offsetof(SaHead, keys) % 64 == 0);
// Each direction carries only its own runtime state, right after the head: the replay window
// (inbound), or one line with the header template, its fields and the sequence number
// (outbound: hdr_template is its first member and 64-aligned, so it starts at sizeof(SaHead),
// kSaHotLines' last line; offsetof is not for derived types, so the test SaLayout checks that
// the template's fields and seq_next lie in that line). A block appended at the end of
// OutboundSa leaves that line in place: only the size below changes.
static_assert(sizeof(InboundSa) == sizeof(SaHead) + (sizeof(ReplayWindow) + 63) / 64 * 64);
static_assert(sizeof(OutboundSa) >= sizeof(SaHead) + 64);
// Sizes at the time of writing (x86-64): the single Sa of both directions was 1728 bytes.
// SaHead holds a drop counter per DropReason (SaCounters): 1024 with 24 reasons, 1216 with 50,
// 1280 with 54 (InboundSa 1920, OutboundSa 1408); packed for issue #12 (owner and sequence
// lines folded, HMAC states 32 bytes each): 1152 / 1728 / 1216.
static_assert(sizeof(SaHead) == 1152 && sizeof(InboundSa) == 1728 && sizeof(OutboundSa) == 1216);

namespace {

constexpr std::uint16_t kMinMtu = 576;    // RFC 791 minimum reassembly size every host accepts
constexpr std::uint16_t kMaxMtu = 9216;   // jumbo

bool prefix_ok(const Ipv4Prefix& p) noexcept {
  return p.len <= 32 && (p.addr & ~p.mask()) == 0;
}

Result<void> validate(const SaSpec& s) {
  // RFC 4303 §2.1: SPI 0 is reserved for local use, 1..255 reserved by IANA.
  if (s.spi < 256) return make_error("spi: must be >= 256 (RFC 4303 §2.1), got " +
                                     std::to_string(s.spi));
  if (s.enc_key.size() != crypto::cipher_key_len(s.cipher))
    return make_error("enc_key: " + std::string(crypto::to_string(s.cipher)) + " needs " +
                      std::to_string(crypto::cipher_key_len(s.cipher)) + " bytes, got " +
                      std::to_string(s.enc_key.size()));
  if (s.auth_key.size() != crypto::integ_key_len(s.integ))
    return make_error("auth_key: " + std::string(crypto::to_string(s.integ)) + " needs " +
                      std::to_string(crypto::integ_key_len(s.integ)) + " bytes, got " +
                      std::to_string(s.auth_key.size()));
  if (s.replay_window > ReplayWindow::kMaxSize)
    return make_error("replay_window: must be 0..4096, got " + std::to_string(s.replay_window));
  if (!prefix_ok(s.local_subnet)) return make_error("local_subnet: host bits set or length > 32");
  if (!prefix_ok(s.peer_subnet)) return make_error("peer_subnet: host bits set or length > 32");
  if (s.dir == Direction::kOutbound) {  // tunnel endpoints, MTU: outbound only
    if (s.mtu < kMinMtu || s.mtu > kMaxMtu)
      return make_error("mtu: must be " + std::to_string(kMinMtu) + ".." +
                        std::to_string(kMaxMtu) + ", got " + std::to_string(s.mtu));
    if (s.local_addr == 0) return make_error("local_addr: outbound SA needs a tunnel source");
    if (s.peer_addr == 0) return make_error("peer_addr: outbound SA needs a tunnel destination");
    if (s.ttl == 0) return make_error("ttl: must be 1..255");
  }
  if (s.udp_encap) {
    if (s.local_port == 0) return make_error("local_port: must be non-zero with udp_encap");
    if (s.peer_port == 0) return make_error("peer_port: must be non-zero with udp_encap");
  }
  if (s.soft_bytes != 0 && s.hard_bytes != 0 && s.soft_bytes > s.hard_bytes)
    return make_error("soft_bytes: must not exceed hard_bytes");
  if (s.soft_packets != 0 && s.hard_packets != 0 && s.soft_packets > s.hard_packets)
    return make_error("soft_packets: must not exceed hard_packets");
  return {};
}

// Outer IPv4 [+ UDP] + ESP SPI; lengths, ID, TOS, DF, checksum and sequence filled per packet.
void build_template(OutboundSa& sa) noexcept {
  std::uint8_t* p = sa.hdr_template;
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p);
  ip->version_ihl = 0x45;  // version 4, IHL 5 (no options)
  ip->time_to_live = sa.ttl;
  ip->next_proto_id = (sa.flags & kSaUdpEncap) ? kIpProtoUdp : kIpProtoEsp;
  ip->src_addr = rte_cpu_to_be_32(sa.local_addr);
  ip->dst_addr = rte_cpu_to_be_32(sa.peer_addr);
  std::size_t off = kIpv4HeaderLen;
  if (sa.flags & kSaUdpEncap) {
    // RFC 3948 §2.1: UDP header, checksum zero (§3.1.2).
    auto* udp = reinterpret_cast<rte_udp_hdr*>(p + off);
    udp->src_port = rte_cpu_to_be_16(sa.local_port);
    udp->dst_port = rte_cpu_to_be_16(sa.peer_port);
    udp->dgram_cksum = 0;
    off += kUdpHeaderLen;
  }
  std::memcpy(p + off, &sa.spi_be, 4);  // RFC 4303 §2.1
  // The checksum words every packet shares (offsets 8, 12, 14, 16, 18); esp_outbound adds
  // the 4 it writes per packet (version/TOS, total length, ID, flags/fragment offset).
  std::uint32_t sum = 0;
  for (std::size_t o : {8, 12, 14, 16, 18}) {
    std::uint16_t w;
    std::memcpy(&w, p + o, 2);
    sum += w;
  }
  sa.ip_cksum_base = sum;
}

// The fields both directions share.
void init_head(SaHead& sa, const SaSpec& spec) noexcept {
  sa.spi = spec.spi;
  sa.spi_be = rte_cpu_to_be_32(spec.spi);
  sa.dir = spec.dir;
  sa.flags = static_cast<std::uint8_t>((spec.udp_encap ? kSaUdpEncap : 0) |
                                       (spec.replay_window != 0 ? kSaAntiReplay : 0));
  sa.alg = crypto::esp_alg_params(spec.cipher, spec.integ);
  sa.conn_id = spec.conn_id;
  sa.local_subnet = spec.local_subnet;
  sa.peer_subnet = spec.peer_subnet;
  sa.local_addr = spec.local_addr;
  sa.peer_addr = spec.peer_addr;
  // 0 in the spec: no limit, kept as one that is never reached (see run_clear_of_limits).
  auto limit = [](std::uint64_t v) { return v == 0 ? kNoVolumeLimit : v; };
  sa.hard_bytes = limit(spec.hard_bytes);
  sa.hard_packets = limit(spec.hard_packets);
  sa.soft_bytes = limit(spec.soft_bytes);
  sa.soft_packets = limit(spec.soft_packets);
  // Before the soft limit is crossed a run may take the totals to one below it (crossing it
  // must raise the event, within_limits), and never past the hard limit.
  sa.run_max_packets = std::min(sa.hard_packets, sa.soft_packets - (spec.soft_packets != 0));
  sa.run_max_bytes = std::min(sa.hard_bytes, sa.soft_bytes - (spec.soft_bytes != 0));
}

void init_dir(InboundSa& sa, const SaSpec& spec) noexcept { sa.replay.reset(spec.replay_window); }

void init_dir(OutboundSa& sa, const SaSpec& spec) noexcept {
  sa.outer_hdr_len = static_cast<std::uint16_t>(
      kIpv4HeaderLen + (spec.udp_encap ? kUdpHeaderLen : 0) + kEspHeaderLen + sa.alg.iv_len);
  sa.df = spec.df;
  sa.df_set = spec.df == DfPolicy::kSet ? RTE_IPV4_HDR_DF_FLAG : 0;
  sa.df_copy_mask = spec.df == DfPolicy::kCopy ? RTE_IPV4_HDR_DF_FLAG : 0;
  sa.ttl = spec.ttl;
  sa.local_port = spec.local_port;
  sa.peer_port = spec.peer_port;
  sa.seq_next.store(1, std::memory_order_relaxed);  // RFC 4303 §3.3.3: first packet is 1
  set_outbound_mtu(sa, spec.mtu);  // after outer_hdr_len and alg
  build_template(sa);
}

template <class S>
void destroy(S* sa) noexcept {
  if (sa == nullptr) return;
  sa->keys.wipe();
  sa->~S();
  rte_free(sa);
}

}  // namespace

template <class S>
Result<S*> sa_create(const SaSpec& spec, int socket_id) {
  if (spec.dir != S::kDir)
    return make_error(std::string("dir: ") +
                      (S::kDir == Direction::kInbound ? "an inbound" : "an outbound") +
                      " SA needs an " + (S::kDir == Direction::kInbound ? "inbound" : "outbound") +
                      " spec");
  if (auto v = validate(spec); !v) return Error{v.error()};

  void* mem = rte_zmalloc_socket("ipsecgw_sa", sizeof(S), alignof(S), socket_id);
  if (mem == nullptr) return make_error("sa: out of memory (rte_zmalloc_socket)");
  S* sa = new (mem) S();

  // The expansion the direction reads per packet first (right after the HMAC states).
  constexpr crypto::KeyUse kUse =
      S::kDir == Direction::kInbound ? crypto::KeyUse::kDecrypt : crypto::KeyUse::kEncrypt;
  if (auto ks = crypto::make_key_schedule(sa->keys, spec.cipher, spec.enc_key.span(), spec.integ,
                                          spec.auth_key.span(), kUse);
      !ks) {
    destroy(sa);
    return make_error(ks.error());
  }
  init_head(*sa, spec);
  init_dir(*sa, spec);
  return sa;
}

template Result<InboundSa*> sa_create<InboundSa>(const SaSpec&, int);
template Result<OutboundSa*> sa_create<OutboundSa>(const SaSpec&, int);

void set_outbound_mtu(OutboundSa& sa, std::uint16_t mtu) noexcept {
  // esp_outbound_size grows with the inner length (padding to the block): the largest length
  // that fits, searched down from the first guess past it.
  std::uint32_t l = 0;
  if (const std::uint32_t over = esp_outbound_size(sa, 0); over < mtu) {
    l = std::min<std::uint32_t>(mtu - over + 16, 0xFFFF);
    while (l > 0 && esp_outbound_size(sa, l) > mtu) --l;
  }
  sa.mtu.store(mtu, std::memory_order_relaxed);
  sa.max_inner.store(static_cast<std::uint16_t>(l), std::memory_order_relaxed);
}

void sa_destroy(InboundSa* sa) noexcept { destroy(sa); }
void sa_destroy(OutboundSa* sa) noexcept { destroy(sa); }

SaCounters sa_read_counters(const SaHead& sa) noexcept {
  SaCounters c;
  c.packets = sa.counters.packets.load(std::memory_order_relaxed);
  c.bytes = sa.counters.bytes.load(std::memory_order_relaxed);
  c.last_used_tsc = sa.counters.last_used_tsc.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < kDropReasonCount; ++i)
    c.drops[i] = sa.counters.drops[i].load(std::memory_order_relaxed);
  return c;
}

}  // namespace ipsecgw::dp
