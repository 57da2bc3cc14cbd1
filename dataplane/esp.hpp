// ESP tunnel mode, per burst (RFC 4303, RFC 3948 for UDP encapsulation). Per packet: no
// allocation, no locks, no exceptions, no syscalls, no virtual calls.
//
// Burst contract (as DPDK's lib/ipsec): a call returns the number of good packets, which are
// moved to the front of `pkts` in their original order; the bad ones follow them. Each bad
// packet has already been counted (LcoreStats::drops and the SA's drops) and the caller only
// frees pkts[good..n).
//
// mbufs carry no L2 header here: the data starts at an IPv4 header. The gateway strips and
// prepends Ethernet.
#pragma once

#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mbuf_ptype.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

#include "crypto/esp_crypto.hpp"
#include "dataplane/sa.hpp"
#include "dataplane/stats.hpp"

namespace ipsecgw::dp {

// Packets per ESP burst, and per RX burst of the workers. 128, not DPDK's customary 32: each of
// ipsec-mb's cipher and hash burst calls ends by flushing its multi-buffer lanes, which costs
// less per packet the more jobs a call carries (raw AES-128-CBC + HMAC-SHA1, AVX-512 code,
// 64-byte packets: 1.14x the packets per second at 64 jobs a call and 1.17x at 128 against 32;
// BM_RawCallSize, docs/performance.md "Bursts of 128"). Indices below kMaxBurst are uint8_t.
constexpr unsigned kMaxBurst = 128;
static_assert(kMaxBurst <= 256);

// Outbound: pkts[i] holds an inner IPv4 packet to be sent through sas[i] (all outbound SAs).
// On return the good packets hold the full outer packet: IPv4 [+ UDP 4500] + ESP + ICV, with the
// outer IPv4 checksum filled in and a zero UDP checksum (RFC 3948 §3.1.2). Packets whose outer
// size would exceed the SA's MTU are NOT handled here (the gateway fragments or sends ICMP first);
// they are dropped as kMtuExceeded if they reach this function.
// n <= kMaxBurst.
std::uint16_t esp_outbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                           std::span<OutboundSa* const> sas, LcoreStats& stats) noexcept;

constexpr std::uint32_t kEspTrailerLen = 2;  // pad length + next header (RFC 4303 §2.4-2.6)

// RFC 4303 §2.4: payload + padding + pad length + next header is a multiple of the SA's block
// alignment (a power of two: the cipher block, or 4).
constexpr std::uint32_t esp_padded_len(std::uint32_t inner_len, std::uint32_t align) noexcept {
  return (inner_len + kEspTrailerLen + align - 1) & ~(align - 1);
}

// The outer size (IPv4 + [UDP] + ESP + IV + padded payload + ICV) of an inner packet of
// `inner_len` bytes through `sa`; used for the MTU check before esp_outbound (per packet
// whenever the SA or the length changes, i.e. per packet with thousands of tunnels: inline).
inline std::uint32_t esp_outbound_size(const OutboundSa& sa, std::uint32_t inner_len) noexcept {
  return sa.outer_hdr_len + esp_padded_len(inner_len, sa.alg.block_align) + sa.alg.icv_len;
}

// Where an inbound ESP packet's SPI is, and how it arrived.
struct EspInboundInfo {
  std::uint32_t spi = 0;  // host order
  bool udp_encap = false;
};

// The outer layout of an inbound ESP packet is parsed once and kept in its mbuf (as VPP keeps
// per-packet state in buffer metadata): packet_type = kEspPtype (IPv4 + ESP tunnel) or
// kEspPtypeUdp (+ UDP 4500), l3_len = outer IPv4 header length, l4_len = UDP header length or
// 0, tso_segsz = the outer IPv4 total length (these TX fields are unused on the receive path).
// The RX path writes packet_type for every packet it hands to the ESP code, and reassembled
// packets reach it in freshly allocated mbufs (packet_type 0), so a value left by the NIC is
// never taken for a recorded layout.
constexpr std::uint32_t kEspPtype = RTE_PTYPE_L3_IPV4 | RTE_PTYPE_TUNNEL_ESP;
constexpr std::uint32_t kEspPtypeUdp = kEspPtype | RTE_PTYPE_L4_UDP;

inline bool esp_layout_recorded(const rte_mbuf* m) noexcept {
  return m->packet_type == kEspPtype || m->packet_type == kEspPtypeUdp;
}
// The ESP header's offset from the outer IPv4 header, and the SPI (host order), of a packet
// whose layout is recorded.
inline std::uint32_t esp_recorded_offset(const rte_mbuf* m) noexcept {
  return static_cast<std::uint32_t>(m->l3_len + m->l4_len);
}
// Records the layout of an inbound ESP packet in its mbuf (above): the ESP header `esp_off`
// bytes from the outer IPv4 header, after a UDP header when `udp_encap`; `total` the outer
// IPv4 total length.
inline void esp_record_layout(rte_mbuf* m, std::uint32_t esp_off, bool udp_encap,
                              std::uint32_t total) noexcept {
  const std::uint32_t l4 = udp_encap ? kUdpHeaderLen : 0;
  m->packet_type = udp_encap ? kEspPtypeUdp : kEspPtype;
  m->tx_offload = rte_mbuf_tx_offload(0, esp_off - l4, l4, total, 0, 0, 0);
}
inline std::uint32_t esp_recorded_spi(const rte_mbuf* m) noexcept {
  std::uint32_t spi_be;
  std::memcpy(&spi_be, rte_pktmbuf_mtod_offset(m, const std::uint8_t*, esp_recorded_offset(m)), 4);
  if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(spi_be);
  else return spi_be;
}

// Parses the outer IPv4 (and UDP 4500) header of a packet addressed to us, reads the SPI and
// records the layout in the mbuf (above). Returns false (reason in *why) when it is not a
// well-formed ESP / ESP-in-UDP packet.
bool esp_inbound_parse(rte_mbuf* m, EspInboundInfo* info, DropReason* why) noexcept;

// The same for a packet whose outer IPv4 header the caller has already checked (version 4,
// `ihl` >= 20 inside the first segment, total length >= ihl and inside the packet, not a
// fragment): only the UDP 4500 and ESP parts are parsed. Same drop reasons.
bool esp_inbound_parse_l4(rte_mbuf* m, std::uint32_t ihl, EspInboundInfo* info,
                          DropReason* why) noexcept;

// Inbound: pkts[i] is an outer IPv4 packet (ESP or ESP-in-UDP) and sas[i] the SA found for its
// SPI (nullptr when none: counted as kNoSa). Checks, in order: lengths, encapsulation matches
// the SA, replay window (pre-check), ICV in constant time, then window update, padding, next
// header 4, inner header sanity, selectors. Good packets are left holding the inner IPv4 packet.
// The outer header is parsed here (the drop reasons are esp_inbound_parse's).
std::uint16_t esp_inbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                          std::span<InboundSa* const> sas, LcoreStats& stats) noexcept;

// The same for packets whose layout is recorded (esp_layout_recorded() true for every one, as
// esp_inbound_parse / esp_inbound_parse_l4 leave them): the outer header is not parsed again.
std::uint16_t esp_inbound_recorded(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                                   std::span<InboundSa* const> sas, LcoreStats& stats) noexcept;

// A UDP payload on port 4500 (RFC 3948 §2.2 / §2.3): four zero bytes = IKE (non-ESP marker),
// a single 0xFF byte = NAT keepalive, otherwise ESP (when at least an SPI + seq long).
enum class Udp4500Kind : std::uint8_t { kEsp, kIke, kKeepalive, kRunt };
Udp4500Kind classify_udp4500(const std::uint8_t* payload, std::uint32_t len) noexcept;

// RFC 791 header checksum check: the one's-complement sum of the header (checksum field
// included) is 0xFFFF. A 20-byte header (no options, nearly every packet) is summed as five
// 32-bit words and folded (RFC 1071 §2: the sum may be taken in wider words, in either byte
// order), about a fifth of rte_raw_cksum's generic loop; other lengths go to rte_raw_cksum.
inline bool ipv4_header_checksum_ok(const rte_ipv4_hdr* ip, std::uint32_t ihl) noexcept {
  if (ihl != sizeof(rte_ipv4_hdr)) return rte_raw_cksum(ip, ihl) == 0xFFFF;
  std::uint32_t w[5];
  std::memcpy(w, ip, sizeof w);
  std::uint64_t sum = std::uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];
  sum = (sum & 0xFFFFFFFFu) + (sum >> 32);  // at most 33 bits
  sum = (sum & 0xFFFFFFFFu) + (sum >> 32);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return sum == 0xFFFF;
}

}  // namespace ipsecgw::dp
