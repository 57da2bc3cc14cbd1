// Private state of the Gateway (dataplane/gateway.hpp), shared by gateway.cpp (ports, life
// cycle), gateway_counters.cpp (counters, report, telemetry), worker.cpp (per packet, runs on worker lcores) and slowpath.cpp (the
// control lcore: ARP, ICMP, IKE punt, reassembly, the DatagramSender).
#pragma once

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crypto/esp_crypto.hpp"
#include "dataplane/esp.hpp"
#include "dataplane/gateway.hpp"
#include "dataplane/neighbor_table.hpp"
#include "dataplane/sa_table.hpp"

struct rte_mempool;
struct rte_ring;
struct rte_ip_frag_tbl;
struct rte_ip_frag_death_row;

namespace ipsecgw::dp {

struct GatewayImpl;

constexpr std::uint16_t kEthHdrLen = 14;
constexpr std::uint16_t kIkePort = 500;
constexpr unsigned kPuntRingSize = 1024;   // ARP, ICMP echo, fragments, frag-needed
constexpr unsigned kIkeRingSize = 1024;    // IKE only (each of the two rings)
// IKE's priority: up to kMaxBurst x this per worker, IKE ring and control poll.
constexpr unsigned kIkeBurstsPerPoll = 4;
constexpr unsigned kResolveRingSize = 256;
constexpr unsigned kInjectRingSize = 1024;  // reassembled ESP + hand-offs to the SA owner
constexpr unsigned kInnerRingSize = 1024;   // inner packets for the outbound SA's owner
constexpr unsigned kHandoffRingSize = 2048;
constexpr unsigned kTxBufLen = 64;
constexpr unsigned kMaxFragsOut = 16;        // inner fragments per packet
constexpr std::uint32_t kJumboDataRoom = 9216 + RTE_PKTMBUF_HEADROOM;  // reassembled packets

// Why a packet went to the control lcore: kept in mbuf->hash.usr (low byte), with a 16-bit
// argument in the high half (the next-hop MTU for kFragNeeded).
// kIkeNew: an IKE message with a zero responder cookie (an MM1, the start of a new exchange:
// what a spoofer floods most cheaply); kIke: every other IKE message (exchanges in progress,
// Quick Modes, DPD, deletes).
enum class PuntKind : std::uint8_t { kArp = 1, kIcmpEcho, kIke, kFrag, kFragNeeded, kIkeNew };

inline void set_punt(rte_mbuf* m, PuntKind k, std::uint16_t arg = 0) noexcept {
  m->hash.usr = static_cast<std::uint32_t>(k) | std::uint32_t{arg} << 16;
}
inline PuntKind punt_kind(const rte_mbuf* m) noexcept {
  return static_cast<PuntKind>(m->hash.usr & 0xff);
}
inline std::uint16_t punt_arg(const rte_mbuf* m) noexcept {
  return static_cast<std::uint16_t>(m->hash.usr >> 16);
}

struct PortState {
  PortConfig cfg;
  Side side = Side::kUnprotected;
  std::uint16_t nq_rx = 0, nq_tx = 0;
  bool ctl_has_txq = false;  // the control lcore owns TX queue `workers`
  bool configured = false;  // rte_eth_dev_configure done by us: we close it
  bool started = false;
  MacAddr mac{};
  rte_ring* handoff = nullptr;  // MP/SC: TX for lcores without a queue, drained by worker 0
  std::string driver;
  bool rss = false;
  PortCounters final_counters;  // snapshot taken when the port stops
};

// Packets waiting for TX on one port from one lcore.
struct TxBuf {
  std::uint16_t n = 0;
  rte_mbuf* pkts[kTxBufLen];
};

// unique_ptr deleter for what rte_zmalloc_socket returned (objects with trivial destructors).
struct RteFreeDeleter {
  void operator()(void* p) const noexcept { rte_free(p); }
};

struct alignas(64) WorkerCtx {
  GatewayImpl* g = nullptr;
  unsigned idx = 0;    // 0..workers-1, also the RCU thread id
  unsigned lcore = 0;
  bool has_rxq[2] = {false, false};
  bool has_txq[2] = {false, false};  // else TX goes through the port's handoff ring
  rte_ring* punt = nullptr;     // SP/SC worker -> control: frames for the slow path
  // SP/SC worker -> control: IKE datagrams (UDP 500, 4500 with the non-ESP marker, to our
  // address) in rings of their own, drained first: a ping or fragment flood filling `punt`
  // cannot drop IKE, DPD or rekeys (issue #10.4). `ike` (exchanges in progress) before
  // `ike_new` (zero responder cookie: new exchanges), so a flood of MM1s cannot crowd out the
  // Quick Modes, DPD and rekeys of established peers either.
  rte_ring* ike = nullptr;
  rte_ring* ike_new = nullptr;
  rte_ring* resolve = nullptr;  // SP/SC worker -> control: next hops to resolve (ARP)
  // MP/SC -> this worker: outer ESP packets (data at the outer IPv4 header) for its inbound
  // path: reassembled ESP from the control lcore, and packets of SAs this worker owns handed
  // over by the other workers (dataplane/sa.hpp: one owner per inbound SA).
  rte_ring* inject = nullptr;
  // MP/SC -> this worker, only with two or more workers: inner packets (data at the IPv4
  // header, not yet modified) for outbound SAs this worker owns, handed over by the others.
  rte_ring* inner_in = nullptr;
  std::unique_ptr<crypto::EspEngine> engine;
  // This worker's SPI -> inbound SA cache (dataplane/sa_table.hpp): 256 KiB per worker, on the
  // ports' socket, whatever the number of tunnels.
  std::unique_ptr<InboundSaCache, RteFreeDeleter> sa_cache;
  TxBuf tx[2];
  // Rate limit of resolve requests: a tiny direct-mapped (key, tsc) table.
  std::uint64_t rl_key[64] = {};
  std::uint64_t rl_tsc[64] = {};
  // ICMP echo requests punted by this worker: a GCRA token bucket of this worker's share of
  // GatewayConfig::icmp_echo_per_second (`echo_interval` TSC cycles per reply, a burst of one
  // second's worth); echo_interval 0 = answer none. Over the rate: icmp_echo_rate_limited.
  std::uint64_t echo_interval = 0, echo_tolerance = 0, echo_tat = 0;
  LcoreStats stats;
};

struct PendingResolve {
  unsigned tries = 0;
  std::uint64_t next_tsc = 0;
  std::uint64_t hold_until = 0;  // after giving up: no new attempt before this
  bool refresh = false;          // re-confirming a learned entry: removed when unanswered
  std::deque<rte_mbuf*> queued;  // control-lcore frames waiting for the MAC (L2 dst unset)
};

struct SaRow {
  Direction dir;
  std::uint32_t spi, conn_id;
  Ipv4 local, peer;
  bool udp_encap;
  SaCounters c;
};

class GatewaySender;

struct GatewayImpl {
  GatewayConfig cfg;
  PortState ports[2];
  unsigned workers = 0;                                  // worker lcores: all but the main one
  std::vector<std::unique_ptr<WorkerCtx>> worker_ctxs;  // one per worker, in lcore order
  rte_mempool* pool = nullptr;
  rte_mempool* jumbo = nullptr;  // reassembled outer packets
  std::unique_ptr<Rcu> rcu;
  std::unique_ptr<DpSaInstaller> inst;
  NeighborTable neigh;
  std::atomic<bool> stop_flag{false};
  bool running = false;
  DatagramHandler* handler = nullptr;
  std::unique_ptr<GatewaySender> sender;

  // ---- control lcore ----
  alignas(64) LcoreStats ctl_stats;
  TxBuf ctl_tx_[2];
  std::vector<std::uint8_t> scratch;  // 64 KiB, reassembled IKE datagrams
  std::unordered_map<std::uint64_t, PendingResolve> pending;  // key: neighbor_key(side, ip)
  std::unordered_set<std::uint64_t> static_keys;              // neighbor_key of static entries
  std::unordered_map<std::uint64_t, std::uint64_t> neigh_confirmed;  // learned: tsc last confirmed
  std::uint64_t last_age_tsc = 0;
  rte_ip_frag_tbl* frag_tbl = nullptr;
  rte_ip_frag_death_row* death_row = nullptr;
  std::uint16_t ip_id = 1;
  std::uint64_t hz = 0;
  std::uint64_t last_timer_tsc = 0;
  std::uint64_t last_snapshot_tsc = 0;
  std::uint64_t icmp_tokens = 0, icmp_refill_tsc = 0;
  unsigned inject_rr = 0;
  std::uint64_t ike_in = 0, ike_out = 0, arp_replies_sent = 0, arp_requests_sent = 0,
                icmp_sent = 0, reassembled = 0;

  // ---- telemetry (read from the telemetry thread) ----
  mutable std::mutex snap_mu;
  std::vector<SaRow> sa_snapshot;

  ~GatewayImpl();

  // gateway.cpp
  Result<void> setup_port(PortState& p);

  // gateway_counters.cpp
  void refresh_sa_snapshot();
  std::vector<SaRow> sa_rows() const;  // control thread

  // worker.cpp
  static int worker_main(void* arg);
  void worker_loop(WorkerCtx& w) noexcept;

  // slowpath.cpp
  unsigned control_poll() noexcept;
  void handle_punt(rte_mbuf* m) noexcept;
  void handle_arp(Side s, rte_mbuf* m) noexcept;
  void handle_icmp_echo(Side s, rte_mbuf* m) noexcept;
  void handle_ike(rte_mbuf* m) noexcept;
  void handle_frag(rte_mbuf* m) noexcept;
  void free_death_row() noexcept;  // after every reassembly call (slowpath.cpp)
  void handle_frag_needed(rte_mbuf* m) noexcept;
  void learn(Side s, Ipv4 ip, const MacAddr& mac,
             NeighborTable::Origin o = NeighborTable::Origin::kResolved) noexcept;
  void age_neighbors(std::uint64_t now) noexcept;
  void resolve(Side s, Ipv4 ip) noexcept;
  void send_arp_request(Side s, Ipv4 ip) noexcept;
  void arp_timers(std::uint64_t now) noexcept;
  // Send a frame built on the control lcore (L2 source and type filled, destination to be set)
  // to IPv4 next hop `nh` on side `s`: now if resolved, else queued behind ARP.
  void ctl_send_via(Side s, Ipv4 nh, rte_mbuf* m) noexcept;
  void ctl_tx(Side s, rte_mbuf* m) noexcept;
  void ctl_flush() noexcept;
  void ctl_dispatch_datagram(const std::uint8_t* ip, std::uint32_t len) noexcept;
  Result<void> send_datagram(const DatagramView& d);
};

// gateway_counters.cpp: port counters from the device; the /ipsecgw/stats, /ports and /sa
// telemetry commands, registered once per process, report on `g` until it is withdrawn.
PortCounters read_port_counters(std::uint16_t port_id);
void publish_telemetry(GatewayImpl& g);
void withdraw_telemetry(const GatewayImpl& g);

// Next hop for `dst` on side `s`; 0 = no route.
inline Ipv4 next_hop(const GatewayConfig& cfg, Side s, Ipv4 dst) noexcept {
  if (s == Side::kUnprotected) {
    if (cfg.unprotected.subnet.contains(dst)) return dst;
    return cfg.unprotected.gateway;
  }
  if (cfg.protected_port.subnet.contains(dst)) return dst;
  const Route* best = nullptr;
  for (const Route& r : cfg.protected_routes)
    if (r.dst.contains(dst) && (best == nullptr || r.dst.len > best->dst.len)) best = &r;
  if (best != nullptr) return best->via;
  return cfg.protected_port.gateway;
}

// Decrement the TTL with an incremental checksum update (RFC 1624 §3: HC' = ~(~HC + ~m + m')).
inline void ttl_decrement(rte_ipv4_hdr* ip) noexcept {
  std::uint32_t sum = static_cast<std::uint16_t>(~rte_be_to_cpu_16(ip->hdr_checksum));
  sum += 0xFEFF;  // ~(0x0100): the TTL is the high byte of its 16-bit word
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  ip->time_to_live--;
  ip->hdr_checksum = rte_cpu_to_be_16(static_cast<std::uint16_t>(~sum));
}


}  // namespace ipsecgw::dp

namespace ipsecgw::dp {

// The DatagramSender handed to the IKE daemon: builds Ethernet/IPv4/UDP on the control lcore.
class GatewaySender final : public DatagramSender {
 public:
  explicit GatewaySender(GatewayImpl& g) noexcept : g_(g) {}
  Result<void> send(const DatagramView& d) override { return g_.send_datagram(d); }

 private:
  GatewayImpl& g_;
};

}  // namespace ipsecgw::dp
