// Steps of the control side's scans over configuration objects: one per object a lookup or a
// cross-check visits, or a copy duplicates. Counted so that a test can tell work that grows
// linearly with the number of connections from work that grows with its square, without
// timing anything (tests/app/test_scaling.cpp). Per thread, a plain add: no cost worth naming.
#pragma once

#include <cstdint>

namespace ipsecgw::app {

inline thread_local std::uint64_t g_scan_steps = 0;

inline void count_scan_steps(std::uint64_t n = 1) noexcept { g_scan_steps += n; }
inline std::uint64_t scan_steps() noexcept { return g_scan_steps; }

}  // namespace ipsecgw::app
