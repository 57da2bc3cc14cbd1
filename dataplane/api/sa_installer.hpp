// The narrow interface between the control plane (IKE, static config) and the data plane's SA
// tables, in the spirit of strongSwan's kernel_ipsec_t: plain data in, no DPDK types.
// Order for a new CHILD SA: add the inbound SA first, then the outbound one (which also
// installs or re-points the policy for its selectors), so no packet meets a missing SA.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "common/result.hpp"
#include "crypto/esp_crypto.hpp"
#include "crypto/secure_bytes.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::dp {

enum class DfPolicy : std::uint8_t { kCopy, kSet, kClear };

struct SaSpec {
  Direction dir = Direction::kInbound;
  std::uint32_t spi = 0;  // host order; inbound: our SPI, outbound: the peer's
  std::uint32_t conn_id = 0;  // the site connection this SA belongs to
  crypto::CipherAlg cipher = crypto::CipherAlg::kAes128Cbc;
  crypto::IntegAlg integ = crypto::IntegAlg::kHmacSha1_96;
  crypto::SecureBytes enc_key;
  crypto::SecureBytes auth_key;
  // Tunnel endpoints (outer header). Outbound: src = local_addr, dst = peer_addr.
  Ipv4 local_addr = 0;
  Ipv4 peer_addr = 0;
  // ESP in UDP (RFC 3948). Ports are host order.
  bool udp_encap = false;
  std::uint16_t local_port = 4500;
  std::uint16_t peer_port = 4500;
  // Traffic selectors: the connection's one local and one peer subnet.
  Ipv4Prefix local_subnet;
  Ipv4Prefix peer_subnet;
  std::uint32_t replay_window = 64;  // inbound; 0 disables anti-replay; up to 4096
  DfPolicy df = DfPolicy::kCopy;     // outbound outer DF bit
  std::uint16_t mtu = 1500;          // outbound: max outer packet size
  std::uint8_t ttl = 64;             // outbound outer TTL
  // Volume limits (0 = none). Soft raises an event once; hard stops the SA.
  std::uint64_t soft_bytes = 0, hard_bytes = 0;
  std::uint64_t soft_packets = 0, hard_packets = 0;
};

struct SaCounters {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;  // inner bytes
  std::array<std::uint64_t, kDropReasonCount> drops{};
  std::uint64_t last_used_tsc = 0;  // 0 = never
};

// kAcquire: a packet matched a connection's trap policy while it had no outbound SA (spi 0,
// dir outbound, conn_id set); raised at most about once a second per policy. IKE answers it by
// negotiating (RFC 4301 §4.4.1 "acquire" in the spirit of PF_KEY SADB_ACQUIRE).
enum class SaEventKind : std::uint8_t { kSeqExhausted, kSoftLimit, kHardLimit, kAcquire };

struct SaEvent {
  SaEventKind kind;
  Direction dir;
  std::uint32_t spi;
  std::uint32_t conn_id;
};

class SaInstaller {
 public:
  virtual ~SaInstaller() = default;
  // A fresh random inbound SPI (>= 256, RFC 4303 §2.1) not in use, reserved until added or freed.
  virtual Result<std::uint32_t> allocate_spi() = 0;
  virtual void release_spi(std::uint32_t spi) = 0;
  // Inbound: keyed by SPI. Outbound: keyed by (local_subnet, peer_subnet); replaces the SA
  // currently used for those selectors (make-before-break rekey); the previous one is freed
  // after an RCU grace period.
  virtual Result<void> add_sa(SaSpec spec) = 0;
  virtual Result<void> del_sa(Direction dir, std::uint32_t spi) = 0;
  virtual std::optional<SaCounters> query_sa(Direction dir, std::uint32_t spi) = 0;
  // Trap policy (strongSwan's "trap", PF_KEY's larval policy): the connection's selectors stay
  // in the SPD while it has no outbound SA, so its packets are dropped (never sent in the clear)
  // and raise kAcquire instead of falling through to the unmatched-traffic rule. Deleting the
  // connection's outbound SA leaves the trap; adding one for the same selectors fills it. Only
  // remove_trap (connection removed) takes the policy away. One trap per conn_id; installing
  // again replaces it.
  virtual Result<void> install_trap(std::uint32_t conn_id, Ipv4Prefix local_subnet,
                                    Ipv4Prefix peer_subnet) {
    (void)conn_id, (void)local_subnet, (void)peer_subnet;
    return make_error("trap: not supported by this installer");
  }
  virtual Result<void> remove_trap(std::uint32_t conn_id) {
    (void)conn_id;
    return make_error("trap: not supported by this installer");
  }
  // Changes the max outer packet size of the installed outbound SA `spi` in place (same SPI,
  // keys and sequence number): a connection's MTU update without renegotiation.
  virtual Result<void> set_outbound_mtu(std::uint32_t spi, std::uint16_t mtu) {
    (void)spi, (void)mtu;
    return make_error("mtu: in-place update not supported by this installer");
  }
  // Events coming back from the data plane (polled on the control lcore).
  virtual std::vector<SaEvent> poll_events() = 0;
};

}  // namespace ipsecgw::dp
