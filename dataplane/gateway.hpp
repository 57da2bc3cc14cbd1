// The gateway's data plane runtime: two DPDK ports (unprotected = public side holding the VPN
// service address; protected = local subnets), N worker lcores polling RX in bursts, and the
// slow path on the control (main) lcore reached through rte_rings: ARP, ICMP echo to our own
// addresses, IKE on UDP 500/4500, outer-fragment reassembly and ICMP errors.
//
// Life cycle (app/runtime.cpp): rte_eal_init -> Gateway::create(cfg) -> install SAs through
// installer() -> start() -> loop { control_poll(); ... } until a signal -> stop() -> destroy.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "dataplane/api/datagram.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "dataplane/api/types.hpp"
#include "dataplane/stats.hpp"

namespace ipsecgw::dp {

class DpSaInstaller;
struct GatewayImpl;

using MacAddr = std::array<std::uint8_t, 6>;

// The gateway's two ports; the value indexes per-port arrays (GatewayImpl::ports, TX buffers).
enum class Side : std::uint8_t { kUnprotected = 0, kProtected = 1 };

struct PortConfig {
  std::uint16_t port_id = 0;   // DPDK port id (order of -a / --vdev)
  Ipv4Prefix subnet;           // the connected subnet of this port
  Ipv4 addr = 0;               // our address on it
  Ipv4 gateway = 0;            // default next hop on this port (0 = none: on-link only)
  std::uint16_t mtu = 1500;    // L3 MTU of the link
};

struct StaticNeighbor {
  Ipv4 ip = 0;
  MacAddr mac{};
};

struct Route {  // extra routes on the protected side (inner destinations behind a router)
  Ipv4Prefix dst;
  Ipv4 via = 0;
};

enum class UnmatchedPolicy : std::uint8_t { kDrop, kForward };

struct GatewayConfig {
  PortConfig unprotected;
  PortConfig protected_port;
  std::vector<Route> protected_routes;
  std::vector<StaticNeighbor> neighbors;  // static ARP entries (override resolution)
  UnmatchedPolicy unmatched = UnmatchedPolicy::kDrop;  // protected-side traffic with no tunnel
  unsigned sa_capacity = 4096;        // per direction
  unsigned mbufs = 0;                 // 0 = sized from ports/queues/workers
  unsigned rx_desc = 1024, tx_desc = 1024;
  std::uint32_t replay_window_default = 64;
  // A worker that found no work for 1024 loops sleeps this long (RCU offline meanwhile);
  // 0 = pure busy polling. Useful on shared/few-core machines.
  unsigned idle_sleep_us = 0;
  // A learned ARP entry not confirmed for this long is asked for again (RFC 1122 §2.3.2.1);
  // removed when that goes unanswered. Static neighbours never age.
  unsigned arp_timeout_s = 300;
  // ICMP echo requests to our addresses answered per second, all workers together (each
  // worker gets an equal share, at least 1/s, with a burst of one second's worth); the rest
  // are dropped as icmp_echo_rate_limited before they reach the slow path. 0 = answer none.
  unsigned icmp_echo_per_second = 1000;
  // Register the /ipsecgw/stats, /ports and /sa rte_telemetry commands (once per process).
  bool telemetry = true;
};

struct PortCounters {
  std::uint64_t ipackets = 0, opackets = 0, ibytes = 0, obytes = 0, imissed = 0, ierrors = 0,
                oerrors = 0, rx_nombuf = 0;
};

class Gateway {
 public:
  // After rte_eal_init. Uses every worker lcore EAL gave (all but the main lcore); needs >= 1.
  static Result<std::unique_ptr<Gateway>> create(const GatewayConfig& cfg);
  ~Gateway();  // stops workers if running, frees everything, wipes keys

  SaInstaller& installer() noexcept;
  DpSaInstaller& tables() noexcept;

  // IKE datagrams (UDP 500/4500 to our unprotected address) go to this handler on the control
  // lcore; without one they are counted and dropped.
  void set_datagram_handler(DatagramHandler* h) noexcept;
  DatagramSender& datagram_sender() noexcept;  // sends from the control lcore

  Result<void> start();        // launch workers on their lcores
  // One control-loop iteration: slow-path rings (ARP, ICMP, IKE, reassembly), ARP timers,
  // RCU reclamation. Call in a loop on the main lcore; returns the number of items handled.
  unsigned control_poll();
  void stop();                 // workers drain and exit; idempotent

  // Counters for telemetry and the exit report.
  std::vector<LcoreStats> lcore_stats() const;  // one per worker, then the control lcore
  LcoreStats total_stats() const;
  PortCounters port_counters(bool protected_side) const;
  std::string report() const;  // human-readable counters (ports, lcores, SAs with drop reasons)

 private:
  Gateway() = default;
  std::unique_ptr<GatewayImpl> impl_;  // dataplane/gateway_impl.hpp
};

}  // namespace ipsecgw::dp
