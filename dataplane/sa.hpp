// The data plane's runtime SAs, one struct per direction (InboundSa, OutboundSa) over a common
// SaHead: what workers read per packet. Built once from an SaSpec on the control core (key
// schedule, algorithm parameters, outer header template, offsets), then only the sequence
// number, replay window, counters, owner and event flags change.
//
// Threading:
//  - Inbound: one owner per SA (as VPP's ipsec_sa_t thread index). The first worker that looks
//    the SA up for a packet claims it (`owner`, in SaHead: compare-and-swap from kNoOwner to its
//    worker index); from then on a worker that finds an SA owned by another worker hands the
//    packet to that worker's hand-off ring (the gateway's inject ring, multi-producer) instead of
//    decrypting it. So the replay window has exactly one writer whatever RSS, multi-queue RX or
//    reassembly (outer fragments are reassembled on the control lcore and injected to worker
//    0, which hands them on) do, and needs no atomics. RSS on the outer addresses keeps most
//    packets on their owner's queue, so hand-offs stay rare. The owner never changes for the
//    life of an InboundSa: a deleted and re-installed SA (same SPI or not) is a new InboundSa,
//    claimed afresh. A packet therefore moves at most once per InboundSa instance. An SA that
//    no worker looked up is unowned; packets without an SA (kNoSa) are counted where they are.
//  - Outbound: one owner per SA too, claimed the same way by the first worker whose policy
//    lookup finds it (`owner`, in SaHead). A worker that finds an SA owned by another hands
//    the inner packet, unmodified, to that worker's inner hand-off ring; the owner looks the
//    policy up again (the SA pointer does not travel: RCU protects it only while the finder
//    runs) and encrypts. So one worker reserves an SA's sequence numbers and transmits its
//    packets, on its own TX queue in reservation order: the gateway puts an SA's packets on the
//    wire in sequence order, and a peer sees no reordering of ours whatever its replay window
//    (RFC 4303 §3.4.3; strongSwan's default is 32). With one writer its line is never contended
//    (the other workers read only line 0).
//  - `seq_next` and the packet/byte counters are relaxed atomics, so the control plane can read
//    them while workers run, written with a plain load and store (owner_add, esp_internal.hpp),
//    not a locked read-modify-write: esp_outbound / esp_inbound must never run for one SA on two
//    threads at once (the owner rule above; a test or tool calling them directly keeps to it).
//    The per-reason drop counters stay fetch_add (any worker may count a drop against an SA),
//    and `events`/`dead` are atomics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/result.hpp"
#include "crypto/esp_crypto.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "dataplane/replay_window.hpp"

namespace ipsecgw::dp {

constexpr std::size_t kEspHeaderLen = 8;        // SPI + sequence number (RFC 4303 §2)
constexpr std::size_t kUdpHeaderLen = 8;
constexpr std::size_t kIpv4HeaderLen = 20;
constexpr std::uint16_t kNatTPort = 4500;       // RFC 3948
constexpr std::uint8_t kIpProtoEsp = 50;
constexpr std::uint8_t kIpProtoIpip = 4;        // ESP next header in tunnel mode
constexpr std::uint8_t kIpProtoUdp = 17;

constexpr std::uint16_t kNoOwner = 0xFFFF;  // `owner` of an SA before any worker claimed it
constexpr std::uint32_t kSaPublished = 1;   // SaHead::published once the SA is fully built
// An SA's volume limit (SaHead::hard_bytes ...) when its SaSpec sets none (0): never reached.
constexpr std::uint64_t kNoVolumeLimit = ~std::uint64_t{0};

enum SaFlags : std::uint8_t {
  kSaUdpEncap = 1 << 0,
  kSaAntiReplay = 1 << 1,
};

enum SaEventFlags : std::uint8_t {
  kEvSeqExhausted = 1 << 0,
  kEvSoftLimit = 1 << 1,
  kEvHardLimit = 1 << 2,
};

// Per-SA counters. Not a line of its own: packets, bytes and last_used_tsc, written by the
// owner once per burst-run, share the head's second line with the volume limits read beside
// them; the per-reason drops (rare) follow in the lines after it.
struct SaCounterBlock {
  std::atomic<std::uint64_t> packets{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> last_used_tsc{0};
  std::atomic<std::uint64_t> drops[kDropReasonCount] = {};
};

// What both directions share: identity, algorithm parameters, selectors, lifetimes, event
// flags, keys and counters. Never allocated on its own: an SA is an InboundSa or an OutboundSa
// (as VPP's ipsec_sa_t runtime split), so passing an SA of the wrong direction to esp_inbound /
// esp_outbound or to a table does not compile. Code that serves both (counters, events,
// telemetry) takes an SaHead.
//
// Layout (issue #12: with random traffic over 10,000 tunnels every line a packet touches is a
// cache miss): what the per-packet path reads or writes is packed into as few lines as
// possible, and the lookups prefetch exactly those (kSaHotLines in sa_table.cpp / spd.cpp):
//   line 0         identity, algorithm parameters, selectors, flags, owner (read-only per packet)
//   line 1         run bounds (volume limits) + packets/bytes/last-used counters (the owner's
//                  per-run line)
//   keys, 4 lines  parameters, HMAC states and the direction's AES expansion (AES-128; 5 for
//                  AES-192/256), the other expansion after them, cold
//   the direction's own line: outer header template + sequence number (outbound), replay
//   window state with the first 448 bits of its bitmap (inbound)
// so 7 lines per packet for AES-128 (was 12, 1,344 bytes, outbound). The drop counters and the
// other AES expansion sit in between and are read only when used.
struct alignas(64) SaHead {
  // ---- line 0: what the ESP code and the hand-off read per packet or per run ----
  std::uint32_t spi = 0;       // host order
  std::uint32_t spi_be = 0;    // network order, for header writes and compares
  Direction dir = Direction::kInbound;
  std::uint8_t flags = 0;      // SaFlags
  // IV length, block alignment, cipher offset, ICV length and ipsec-mb modes, chosen from the
  // algorithms when the SA is created (crypto::esp_alg_params).
  crypto::EspAlgParams alg;
  std::uint32_t conn_id = 0;
  // kSaPublished once the control thread has built the SA, stored with memory_order_release
  // just before the SA is linked into a table (DpSaInstaller); InboundSaTable's lookup loads it
  // with memory_order_acquire right after rte_hash returns the pointer. It makes the
  // publication visible to ThreadSanitizer: rte_hash does the same release (add) / acquire
  // (lookup) pair (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF), but inside librte_hash, which is not
  // instrumented, so without this TSan cannot order the SA's initialising stores before a
  // worker's reads. On x86 both are plain MOVs; the load hits the line the worker reads next
  // (spi, flags, alg).
  std::atomic<std::uint32_t> published{0};
  Ipv4Prefix local_subnet;   // inbound: inner dst must match; outbound: inner src
  Ipv4Prefix peer_subnet;    // inbound: inner src must match; outbound: inner dst
  Ipv4 local_addr = 0, peer_addr = 0;  // tunnel endpoints (host order)
  // Set by workers, read and cleared by the control plane's event poll.
  std::atomic<std::uint8_t> events{0};
  std::atomic<bool> dead{false};  // hard limit reached: drop with kSaDown
  // The index of the worker that processes this SA's packets, kNoOwner until the first worker
  // claims it (see the threading note above). Written once, then read by every worker that
  // receives the SA's packets: it sits on this read-only line, apart from the lines its owner
  // writes (counters, sequence number, replay window).
  std::atomic<std::uint16_t> owner{kNoOwner};
  // ---- line 1: the owner's per-run line: how far the totals may go before a volume limit
  // needs a look, and the packets/bytes/last-used counters ----
  // A run of packets passes without a per-packet limit check while the SA's totals after it
  // stay within these (run_clear_of_limits): the hard limit, or one below the soft limit until
  // the soft limit is crossed (within_limits then moves them to the hard limit). Owner only
  // (set before the SA is published, then by its owner worker), like the replay window.
  alignas(64) std::uint64_t run_max_packets = 0;
  std::uint64_t run_max_bytes = 0;
  SaCounterBlock counters;  // packets, bytes, last_used_tsc on line 1; drops after it
  // The volume limits themselves (RFC 4301 §4.4.2.1), read only when a run gets near one:
  // kNoVolumeLimit where the SaSpec has none (0 there), so that the checks are plain compares.
  std::uint64_t hard_bytes = 0, hard_packets = 0, soft_bytes = 0, soft_packets = 0;

  // Parameters, HMAC states, then the AES expansion this direction uses (sa_create picks it):
  // the first 4 lines are hot (AES-128), see crypto::EspKeySchedule.
  alignas(64) crypto::EspKeySchedule keys;

 protected:
  SaHead() = default;
  ~SaHead() = default;
};

// Inbound runtime SA: the head plus the replay window.
struct alignas(64) InboundSa final : SaHead {
  static constexpr Direction kDir = Direction::kInbound;
  // Anti-replay state (one owner, no atomics): its first line holds the top, size, ring mask
  // and the first 448 bits of the bitmap, all a window of up to 256 packets uses (the default
  // is 64).
  alignas(64) ReplayWindow replay;
};

// Outbound runtime SA: the head plus one line of its own: outer header template, MTU, DF policy
// and the sequence number.
struct alignas(64) OutboundSa final : SaHead {
  static constexpr Direction kDir = Direction::kOutbound;
  // Outer IPv4 (+UDP) + ESP SPI template, checksums/lengths/seq filled per packet.
  alignas(64) std::uint8_t hdr_template[kIpv4HeaderLen + kUdpHeaderLen + kEspHeaderLen] = {};
  std::uint16_t outer_hdr_len = 0;  // IPv4 [+ UDP] + ESP header + IV
  // Max outer packet size. Atomic: the control thread may change it in place
  // (SaInstaller::set_outbound_mtu) while workers read it (relaxed).
  std::atomic<std::uint16_t> mtu{1500};
  DfPolicy df = DfPolicy::kCopy;
  std::uint8_t ttl = 64;
  std::uint16_t local_port = kNatTPort, peer_port = kNatTPort;  // host order
  // The largest inner packet that fits `mtu` once encapsulated (RFC 1191 next-hop MTU; what
  // the worker and esp_outbound compare a packet's length with), stored with mtu by
  // set_outbound_mtu(): the MTU check is then one load per SA and one compare per packet.
  std::atomic<std::uint16_t> max_inner{0};
  // Next sequence number to use; starts at 1 (RFC 4303 §3.3.3). Values past 2^32-1 are never
  // sent. Written by the owner per burst-run, on the template's line, which only the owner
  // reads (other workers read `owner`, on line 0).
  std::atomic<std::uint64_t> seq_next{1};
  // Constants of the per-packet header writes, computed once by sa_create so that a run of
  // packets of one SA (one packet, with thousands of tunnels) starts without working them out:
  // the outer IPv4 checksum's one's-complement sum (RFC 1071, native-order 16-bit words, as
  // rte_raw_cksum) over the template words every packet shares (TTL/protocol, source,
  // destination), and the DF policy (RFC 4301 §8.1) as masks: the outer fragment_offset is
  // df_set | (inner fragment_offset & df_copy_mask) (host order).
  std::uint32_t ip_cksum_base = 0;
  std::uint16_t df_set = 0, df_copy_mask = 0;
};

// The cache lines (byte offsets from the SA) that the per-packet path reads or writes for an
// AES-128 SA of either direction, the layout note above: what the SA lookups prefetch
// (spd.cpp, sa_table.cpp) as they find an SA. AES-192/256 read one more line of round keys
// (the key schedule's fifth), a replay window over 256 packets one more bitmap line.
inline constexpr std::size_t kSaHotLines[] = {
    0,                                                 // line 0: identity, alg, flags, owner
    64,                                                // line 1: limits, counters
    offsetof(SaHead, keys), offsetof(SaHead, keys) + 64,        // parameters, HMAC states,
    offsetof(SaHead, keys) + 128, offsetof(SaHead, keys) + 192,  // AES round keys
    sizeof(SaHead),  // the direction's line: template + sequence number, or replay window
};

// Sets the SA's MTU and the largest inner packet that fits it (OutboundSa::max_inner). The
// control thread, also while workers use the SA (relaxed stores: a worker sizes a packet with
// the old or the new value).
void set_outbound_mtu(OutboundSa& sa, std::uint16_t mtu) noexcept;

// Allocate (rte_zmalloc_socket) and build the runtime SA from a spec whose direction is S's
// (S = InboundSa or OutboundSa). Errors name the field.
template <class S>
Result<S*> sa_create(const SaSpec& spec, int socket_id = -1);
extern template Result<InboundSa*> sa_create<InboundSa>(const SaSpec&, int);
extern template Result<OutboundSa*> sa_create<OutboundSa>(const SaSpec&, int);
// Wipe key material and free. Only after the SA is unreachable to workers (RCU grace period).
void sa_destroy(InboundSa* sa) noexcept;
void sa_destroy(OutboundSa* sa) noexcept;
// Snapshot of the counters for the control plane.
SaCounters sa_read_counters(const SaHead& sa) noexcept;

}  // namespace ipsecgw::dp
