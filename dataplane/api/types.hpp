// Plain data shared by the data plane, the control plane (IKE, config) and tests. No DPDK.
// Addresses are IPv4 in host byte order.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ipsecgw::dp {

using Ipv4 = std::uint32_t;  // host byte order

struct Ipv4Prefix {
  Ipv4 addr = 0;  // network address, host order (bits past len are zero)
  std::uint8_t len = 0;

  // The top `len` bits (len 0..32) by one 64-bit shift: no branch or select for len 0 (the
  // outbound next hop computes it per packet when every packet goes to another peer).
  constexpr Ipv4 mask() const noexcept {
    return static_cast<Ipv4>(~std::uint64_t{0} << (32 - len));
  }
  constexpr bool contains(Ipv4 a) const noexcept { return (a & mask()) == addr; }
  friend constexpr bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};
static_assert(Ipv4Prefix{0, 0}.mask() == 0 && Ipv4Prefix{0, 1}.mask() == 0x80000000u &&
              Ipv4Prefix{0, 24}.mask() == 0xFFFFFF00u && Ipv4Prefix{0, 32}.mask() == 0xFFFFFFFFu);

// "192.0.2.1" -> address; nullopt when malformed.
std::optional<Ipv4> parse_ipv4(std::string_view s);
// "10.1.0.0/16" -> prefix (host bits must be zero); nullopt when malformed.
std::optional<Ipv4Prefix> parse_prefix(std::string_view s);
std::string format_ipv4(Ipv4 a);
std::string format_prefix(const Ipv4Prefix& p);

enum class Direction : std::uint8_t { kInbound, kOutbound };

// Every drop has a reason; each indexes per-lcore and per-SA counters.
// Every reason a packet is dropped, one per drop site (or group of sites of the same kind), as
// one table: the enum, the snake_case name (counters, telemetry, the exit report: "drop_<name>")
// and the description are generated from it together, as VPP's foreach_esp_*_error lists are.
// New reasons go anywhere; nothing stores the numeric values.
#define IPSECGW_FOREACH_DROP_REASON(_)                                                          \
  /* framing and outer IPv4 (worker RX) */                                                      \
  _(kRunt, "runt", "shorter than the headers it claims")                                       \
  _(kWrongDstMac, "wrong_dst_mac", "Ethernet destination neither our MAC nor broadcast")       \
  _(kNotIpv4, "not_ipv4", "Ethernet type neither IPv4 nor ARP")                                \
  _(kBadIpHeader, "bad_ip_header", "IPv4 version, IHL, total length or header checksum wrong") \
  _(kLinearizeFailed, "linearize_failed", "multi-segment mbuf could not be made one segment")  \
  /* addressed to us, not ESP */                                                                \
  _(kFragmentRefused, "fragment_refused",                                                       \
    "outer fragment to our address that is not ESP/UDP on the unprotected port")              \
  _(kIcmpNotEcho, "icmp_not_echo", "ICMP to our address other than an echo request")           \
  _(kIcmpEchoRateLimited, "icmp_echo_rate_limited",                                            \
    "ICMP echo request over the echo-reply rate (icmp_echo_per_second): not answered")         \
  _(kBadIcmpChecksum, "bad_icmp_checksum", "ICMP echo request with a wrong checksum")          \
  _(kUdpClosedPort, "udp_closed_port", "UDP to our address on a port other than 500/4500")     \
  _(kLocalUnsupported, "local_unsupported",                                                     \
    "to our address with a protocol we do not serve (not ESP/UDP/ICMP, or any on protected)")  \
  _(kBadUdpChecksum, "bad_udp_checksum", "IKE datagram whose UDP checksum fails (RFC 768)")    \
  _(kNotIke, "not_ike", "UDP 4500 datagram for the IKE handler without the non-ESP marker")    \
  _(kNoIkeHandler, "no_ike_handler", "IKE datagram while no IKE daemon is attached")           \
  _(kReassembledUnsupported, "reassembled_unsupported",                                         \
    "reassembled outer datagram that is neither ESP nor IKE")                                  \
  _(kBadPunt, "bad_punt", "punted frame of an unknown kind (a bug)")                           \
  /* ARP */                                                                                     \
  _(kArpUnsupported, "arp_unsupported", "ARP for another hardware or protocol type")           \
  _(kArpUnsolicited, "arp_unsolicited", "ARP reply for an address we did not ask for: ignored")\
  _(kArpTableFull, "arp_table_full",                                                            \
    "ARP entry not added: table (or its share for unrequested entries) full")                  \
  /* transit */                                                                                 \
  _(kTransitFromPublic, "transit_from_public",                                                  \
    "transit packet from the unprotected port (no clear-text transit from the public side)")   \
  _(kNotUnicast, "not_unicast", "multicast or broadcast on the protected port (not tunnelled)") \
  _(kNoPolicy, "no_policy", "outbound packet matched no tunnel and policy says drop")          \
  _(kTrapped, "trapped", "matched a trap policy with no SA yet: held back, IKE acquired")      \
  _(kTtlExceeded, "ttl_exceeded", "TTL 1 or 0 on a packet we route (no ICMP sent)")            \
  _(kClearTooBig, "clear_too_big",                                                              \
    "unmatched packet forwarded in the clear larger than the unprotected MTU (no ICMP sent)")  \
  _(kMtuExceeded, "mtu_exceeded", "too big for the tunnel with DF: ICMP frag-needed sent")     \
  _(kTunnelMtuTooSmall, "tunnel_mtu_too_small",                                                 \
    "too big for the tunnel without DF, and the tunnel MTU leaves no room to fragment")        \
  _(kFragmentFailed, "fragment_failed", "inner fragmentation failed (no mbufs)")               \
  _(kInnerTooBig, "inner_too_big",                                                              \
    "decrypted packet larger than the protected MTU or chained (no ICMP sent)")                \
  _(kNoHeadroom, "no_headroom", "no headroom for the Ethernet header")                         \
  _(kNoRoute, "no_route", "next hop unresolved (ARP) or no route")                             \
  /* ESP (esp_inbound / esp_outbound) */                                                        \
  _(kNotEsp, "not_esp", "handed to the ESP parser but not ESP (protocol, IKE or keepalive)")   \
  _(kNoSa, "no_sa", "no inbound SA for this SPI")                                              \
  _(kEncapMismatch, "encap_mismatch", "ESP-in-UDP for a plain-ESP SA or the reverse")          \
  _(kBadLength, "bad_length", "ciphertext not a multiple of the block size")                   \
  _(kBadIcv, "bad_icv", "integrity check failed")                                              \
  _(kReplay, "replay", "sequence number already seen inside the window")                       \
  _(kOutsideWindow, "outside_window", "sequence number left of the window")                    \
  _(kBadPadding, "bad_padding", "padding not 1, 2, 3 ... (RFC 4303 §2.4) or pad length too big")\
  _(kBadNextHeader, "bad_next_header", "next header not IPv4 (4) in tunnel mode")              \
  _(kBadInnerChecksum, "bad_inner_checksum",                                                    \
    "decrypted inner IPv4 header checksum wrong (RFC 1812 §5.2.2)")                            \
  _(kSelectorMismatch, "selector_mismatch", "inner addresses outside the SA's subnets")        \
  _(kSeqExhausted, "seq_exhausted", "outbound sequence number would wrap (RFC 4303 §3.3.3)")   \
  _(kNoSpace, "no_space", "no headroom/tailroom for the ESP headers or trailer")               \
  _(kBurstOverflow, "burst_overflow", "more packets than an ESP burst takes (kMaxBurst)")      \
  _(kCryptoError, "crypto_error", "the crypto library rejected the job")                       \
  _(kSaDown, "sa_down", "SA removed, expired or over its limits while the packet was in flight")\
  /* outer reassembly, rings, TX */                                                             \
  _(kReassemblyDropped, "reassembly_dropped",                                                  \
    "outer fragment dropped by reassembly (table full, timed out, too many or bad fragments)")\
  _(kFragError, "frag_error", "reassembled packet too big for a jumbo mbuf, or a fragment of ESP")\
  _(kNoMbuf, "no_mbuf", "mbuf pool empty or mbuf too small (control lcore)")                   \
  _(kPuntRingFull, "punt_ring_full", "slow-path ring full (ARP, ICMP echo, fragments)")       \
  _(kIkeRingFull, "ike_ring_full", "IKE ring (exchanges in progress) to the control lcore full")\
  _(kIkeNewRingFull, "ike_new_ring_full",                                                       \
    "IKE ring for new exchanges (zero responder cookie: MM1s) to the control lcore full")      \
  _(kRingFull, "ring_full", "inject or hand-off ring full")                                    \
  _(kTxFull, "tx_full", "the TX queue did not take the packet")

enum class DropReason : std::uint8_t {
#define IPSECGW_DROP_ENUM(e, name, desc) e,
  IPSECGW_FOREACH_DROP_REASON(IPSECGW_DROP_ENUM)
#undef IPSECGW_DROP_ENUM
  kCount
};

constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);
std::string_view to_string(DropReason r) noexcept;  // snake_case: "bad_icv"
std::string_view describe(DropReason r) noexcept;   // one line, for docs and --help

}  // namespace ipsecgw::dp
