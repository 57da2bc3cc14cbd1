// Per-lcore counters: written only by their lcore, read (racily, 64-bit aligned) by the control
// plane for telemetry and the exit report. Each lcore's block sits on its own cache lines.
#pragma once

#include <cstdint>

#include "dataplane/api/types.hpp"

namespace ipsecgw::dp {

struct alignas(64) LcoreStats {
  std::uint64_t drops[kDropReasonCount] = {};
  std::uint64_t esp_out_packets = 0;  // encrypted and handed to TX
  std::uint64_t esp_out_bytes = 0;    // inner bytes
  std::uint64_t esp_in_packets = 0;   // decrypted, verified and handed on
  std::uint64_t esp_in_bytes = 0;     // inner bytes
  // The gateway adds its own fields below (rx/tx/punted/forwarded ...).
  std::uint64_t rx_packets = 0;
  std::uint64_t tx_packets = 0;
  std::uint64_t punted = 0;
  std::uint64_t forwarded = 0;
  std::uint64_t keepalives = 0;  // NAT-T keepalives received (RFC 3948 §2.3), not drops
  std::uint64_t handed_off = 0;  // packets passed to the SA's owner worker (dataplane/sa.hpp)

  void drop(DropReason r, std::uint64_t n = 1) noexcept {
    drops[static_cast<unsigned>(r)] += n;
  }
  std::uint64_t dropped(DropReason r) const noexcept {
    return drops[static_cast<unsigned>(r)];
  }
};

}  // namespace ipsecgw::dp
