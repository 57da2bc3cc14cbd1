// Stand-ins for the data plane under a real ike::Daemon when the test or benchmark looks only at
// the control side (app/reconciler, app/connections): datagrams go nowhere, SPIs are counted up
// from 0x1000 and every SA and trap call succeeds. Used by tests/app and
// benchmarks/bench_status.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/api/datagram.hpp"
#include "dataplane/api/sa_installer.hpp"

namespace ipsecgw::app::test {

class NullSender final : public dp::DatagramSender {
 public:
  Result<void> send(const dp::DatagramView&) override { return {}; }
};

// Not final: a test that looks at some calls overrides those (tests/app/test_reconciler.cpp).
class NullInstaller : public dp::SaInstaller {
 public:
  Result<std::uint32_t> allocate_spi() override { return next_++; }
  void release_spi(std::uint32_t) override {}
  Result<void> add_sa(dp::SaSpec) override { return {}; }
  Result<void> del_sa(dp::Direction, std::uint32_t) override { return {}; }
  std::optional<dp::SaCounters> query_sa(dp::Direction, std::uint32_t) override {
    return std::nullopt;
  }
  std::vector<dp::SaEvent> poll_events() override { return {}; }
  Result<void> install_trap(std::uint32_t, dp::Ipv4Prefix, dp::Ipv4Prefix) override {
    return {};
  }
  Result<void> remove_trap(std::uint32_t) override { return {}; }
  std::uint32_t next_ = 0x1000;
};

}  // namespace ipsecgw::app::test
