// Raising an SA event (sequence numbers exhausted, soft/hard volume limit, acquire) from a
// worker, so that the control side's poll_events() walks the SAs only when one was raised.
// Events are rare (once per SA per condition); without this count poll_events() visited every
// installed SA on every call (every IKE tick, 20 ms): 20,000 cache misses per tick with
// 10,000 tunnels, for nothing (issue #12).
#pragma once

#include <atomic>
#include <cstdint>

#include "dataplane/sa.hpp"

namespace ipsecgw::dp {

// Events raised in this process so far (all installers): poll_events() walks when it changed.
inline std::atomic<std::uint64_t> g_sa_events_raised{0};

// After the event bit (or the acquire flag) is set: the release pairs with poll_events()'s
// acquire load, so a walk that follows a changed count sees the bit.
inline void note_sa_event_raised() noexcept {
  g_sa_events_raised.fetch_add(1, std::memory_order_release);
}

// SAs and trap policies poll_events() visited, all installers: for tests (no walk without an
// event, tests/dataplane/test_sa_events.cpp).
inline std::atomic<std::uint64_t> g_sa_event_walk_visits{0};

inline void raise_sa_event(SaHead& sa, std::uint8_t ev) noexcept {
  sa.events.fetch_or(ev, std::memory_order_relaxed);
  note_sa_event_raised();
}

}  // namespace ipsecgw::dp
