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

#include <cstdint>
#include <span>

#include "crypto/esp_crypto.hpp"
#include "dataplane/sa.hpp"
#include "dataplane/stats.hpp"

struct rte_mbuf;

namespace ipsecgw::dp {

constexpr unsigned kMaxBurst = 32;

// Outbound: pkts[i] holds an inner IPv4 packet to be sent through sas[i] (all outbound SAs).
// On return the good packets hold the full outer packet: IPv4 [+ UDP 4500] + ESP + ICV, with the
// outer IPv4 checksum filled in and a zero UDP checksum (RFC 3948 §3.1.2). Packets whose outer
// size would exceed the SA's MTU are NOT handled here (the gateway fragments or sends ICMP first);
// they are dropped as kMtuExceeded if they reach this function.
// n <= kMaxBurst.
std::uint16_t esp_outbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                           std::span<OutboundSa* const> sas, LcoreStats& stats) noexcept;

// The outer size (IPv4 + [UDP] + ESP + IV + padded payload + ICV) of an inner packet of
// `inner_len` bytes through `sa`; used for the MTU check before esp_outbound.
std::uint32_t esp_outbound_size(const OutboundSa& sa, std::uint32_t inner_len) noexcept;

// Where an inbound ESP packet's SPI is, and how it arrived.
struct EspInboundInfo {
  std::uint32_t spi = 0;  // host order
  bool udp_encap = false;
};

// Parses the outer IPv4 (and UDP 4500) header of a packet addressed to us and reads the SPI.
// Returns false (reason in *why) when it is not a well-formed ESP / ESP-in-UDP packet.
bool esp_inbound_parse(const rte_mbuf* m, EspInboundInfo* info, DropReason* why) noexcept;

// Inbound: pkts[i] is an outer IPv4 packet (ESP or ESP-in-UDP) and sas[i] the SA found for its
// SPI (nullptr when none: counted as kNoSa). Checks, in order: lengths, encapsulation matches
// the SA, replay window (pre-check), ICV in constant time, then window update, padding, next
// header 4, inner header sanity, selectors. Good packets are left holding the inner IPv4 packet.
std::uint16_t esp_inbound(crypto::EspEngine& engine, std::span<rte_mbuf*> pkts,
                          std::span<InboundSa* const> sas, LcoreStats& stats) noexcept;

// A UDP payload on port 4500 (RFC 3948 §2.2 / §2.3): four zero bytes = IKE (non-ESP marker),
// a single 0xFF byte = NAT keepalive, otherwise ESP (when at least an SPI + seq long).
enum class Udp4500Kind : std::uint8_t { kEsp, kIke, kKeepalive, kRunt };
Udp4500Kind classify_udp4500(const std::uint8_t* payload, std::uint32_t len) noexcept;

}  // namespace ipsecgw::dp
