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

  constexpr Ipv4 mask() const noexcept { return len == 0 ? 0 : ~Ipv4{0} << (32 - len); }
  constexpr bool contains(Ipv4 a) const noexcept { return (a & mask()) == addr; }
  friend constexpr bool operator==(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

// "192.0.2.1" -> address; nullopt when malformed.
std::optional<Ipv4> parse_ipv4(std::string_view s);
// "10.1.0.0/16" -> prefix (host bits must be zero); nullopt when malformed.
std::optional<Ipv4Prefix> parse_prefix(std::string_view s);
std::string format_ipv4(Ipv4 a);
std::string format_prefix(const Ipv4Prefix& p);

enum class Direction : std::uint8_t { kInbound, kOutbound };

// Every drop has a reason; each indexes per-lcore and per-SA counters.
enum class DropReason : std::uint8_t {
  kRunt,              // shorter than the headers it claims
  kBadIpHeader,       // not IPv4, bad IHL/total length/checksum
  kNoSa,              // no inbound SA for this SPI
  kEncapMismatch,     // ESP-in-UDP for a plain-ESP SA or the reverse
  kBadLength,         // ciphertext not a multiple of the block size
  kBadIcv,            // integrity check failed
  kReplay,            // sequence number already seen inside the window
  kOutsideWindow,     // sequence number left of the window
  kBadPadding,        // padding bytes not 1, 2, 3 ... (RFC 4303 §2.4) or pad length too big
  kBadNextHeader,     // next header not IPv4 (4) in tunnel mode
  kSelectorMismatch,  // inner addresses outside the SA's subnets
  kSeqExhausted,      // outbound sequence number would wrap (RFC 4303 §3.3.3)
  kNoPolicy,          // outbound packet matched no tunnel and policy says drop
  kNoSpace,           // no headroom/tailroom for the ESP headers
  kMtuExceeded,       // too big and DF set (ICMP frag-needed sent)
  kCryptoError,       // the crypto library rejected the job
  kNoRoute,           // next hop unresolved (ARP) or no route
  kTtlExceeded,
  kFragError,         // reassembly failed
  kRingFull,          // slow-path ring or hand-off ring full
  kTxFull,            // the TX queue did not take the packet
  kNotForUs,          // unsupported protocol / not addressed to us
  kSaDown,            // SA removed/expired while the packet was in flight
  kTrapped,           // matched a trap policy with no SA yet: held back, IKE acquired
  kBadInnerChecksum,  // decrypted inner IPv4 header checksum wrong (RFC 1812 §5.2.2)
  kWrongDstMac,       // Ethernet destination neither our MAC nor broadcast (promiscuous RX)
  kArpUnsolicited,    // ARP reply for an address we did not ask for: ignored
  kArpTableFull,      // ARP entry not added: table (or its opportunistic share) full
  kCount
};

constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);
std::string_view to_string(DropReason r) noexcept;  // snake_case: "bad_icv"

}  // namespace ipsecgw::dp
