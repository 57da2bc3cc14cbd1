// RFC 4303 §3.4.3 anti-replay window behaviour, checked against a naive reference model (a set
// of received numbers and the highest one) for the sizes the gateway allows.
#include "dataplane/replay_window.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>

namespace ipsecgw::dp {
namespace {

using V = ReplayVerdict;

// Accept-and-record helper: check (pre-ICV), then update (post-ICV).
V receive(ReplayWindow& w, std::uint32_t seq) {
  V v = w.check(seq);
  if (v != V::kOk) return v;
  return w.update(seq);
}

TEST(ReplayWindow, AcceptsInOrderSequenceNumbers) {
  ReplayWindow w(64);
  for (std::uint32_t s = 1; s <= 1000; ++s) ASSERT_EQ(receive(w, s), V::kOk) << s;
  EXPECT_EQ(w.top(), 1000u);
}

TEST(ReplayWindow, RejectsSequenceZeroAlways) {
  ReplayWindow w(64);
  EXPECT_EQ(w.check(0), V::kOutsideWindow);
  EXPECT_EQ(w.update(0), V::kOutsideWindow);
  ReplayWindow off(0);
  EXPECT_EQ(off.check(0), V::kOutsideWindow);
}

TEST(ReplayWindow, RejectsDuplicateInsideWindow) {
  ReplayWindow w(64);
  ASSERT_EQ(receive(w, 1), V::kOk);
  EXPECT_EQ(receive(w, 1), V::kReplay);
  ASSERT_EQ(receive(w, 10), V::kOk);
  EXPECT_EQ(receive(w, 10), V::kReplay);
  EXPECT_EQ(receive(w, 1), V::kReplay);
  EXPECT_EQ(receive(w, 5), V::kOk);  // never seen, inside the window
  EXPECT_EQ(receive(w, 5), V::kReplay);
}

TEST(ReplayWindow, CheckDoesNotChangeState) {
  ReplayWindow w(64);
  ASSERT_EQ(receive(w, 100), V::kOk);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(w.check(200), V::kOk);
    EXPECT_EQ(w.check(90), V::kOk);
  }
  EXPECT_EQ(w.top(), 100u);
  EXPECT_EQ(w.check(36), V::kOutsideWindow);  // 100 - 64
  EXPECT_EQ(w.check(37), V::kOk);
}

TEST(ReplayWindow, UpdateRechecksSoDuplicatesInOneBurstAreCaught) {
  ReplayWindow w(64);
  // Two packets of one burst both pass the pre-check, the second update must fail.
  ASSERT_EQ(w.check(7), V::kOk);
  ASSERT_EQ(w.check(7), V::kOk);
  EXPECT_EQ(w.update(7), V::kOk);
  EXPECT_EQ(w.update(7), V::kReplay);
}

TEST(ReplayWindow, RejectsLeftOfWindow) {
  ReplayWindow w(32);
  ASSERT_EQ(receive(w, 100), V::kOk);
  EXPECT_EQ(receive(w, 68), V::kOutsideWindow);  // 100-32: just left of the window
  EXPECT_EQ(receive(w, 69), V::kOk);              // the left edge
  EXPECT_EQ(receive(w, 1), V::kOutsideWindow);
}

TEST(ReplayWindow, BigJumpForgetsEverythingBehind) {
  ReplayWindow w(64);
  for (std::uint32_t s = 1; s <= 64; ++s) ASSERT_EQ(receive(w, s), V::kOk);
  ASSERT_EQ(receive(w, 1'000'000), V::kOk);
  EXPECT_EQ(receive(w, 64), V::kOutsideWindow);
  // Numbers just below the new top were never seen: accepted once.
  EXPECT_EQ(receive(w, 999'999), V::kOk);
  EXPECT_EQ(receive(w, 999'999), V::kReplay);
  EXPECT_EQ(receive(w, 1'000'000 - 63), V::kOk);
  EXPECT_EQ(receive(w, 1'000'000 - 64), V::kOutsideWindow);
  // Jump by exactly the ring size and by a multiple of it: stale bits must not alias.
  ASSERT_EQ(receive(w, 1'000'000 + 4096), V::kOk);
  EXPECT_EQ(receive(w, 1'000'000 + 4096 - 1), V::kOk);
  ASSERT_EQ(receive(w, 1'000'000 + 3 * 4096), V::kOk);
  EXPECT_EQ(receive(w, 1'000'000 + 3 * 4096 - 4096 + 4096 - 1), V::kOk);
}

TEST(ReplayWindow, HandlesTopOfSequenceSpace) {
  ReplayWindow w(64);
  ASSERT_EQ(receive(w, 0xFFFFFFFFu), V::kOk);
  EXPECT_EQ(receive(w, 0xFFFFFFFFu), V::kReplay);
  EXPECT_EQ(receive(w, 0xFFFFFFFFu - 63), V::kOk);
  EXPECT_EQ(receive(w, 0xFFFFFFFFu - 64), V::kOutsideWindow);
  EXPECT_EQ(receive(w, 1), V::kOutsideWindow);  // no ESN: no wrap-around
}

TEST(ReplayWindow, DisabledAcceptsDuplicatesAndOldNumbers) {
  ReplayWindow w(0);
  EXPECT_FALSE(w.enabled());
  EXPECT_EQ(receive(w, 100), V::kOk);
  EXPECT_EQ(receive(w, 100), V::kOk);
  EXPECT_EQ(receive(w, 1), V::kOk);
}

TEST(ReplayWindow, SizeAboveMaximumIsClamped) {
  ReplayWindow w(100000);
  EXPECT_EQ(w.size(), ReplayWindow::kMaxSize);
}

// Each size: exact window edges, and a long random sequence against a reference model.
class ReplayWindowSizes : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(ReplayWindowSizes, EdgesAreExact) {
  const std::uint32_t size = GetParam();
  ReplayWindow w(size);
  const std::uint32_t top = 10 * size + 12345;
  ASSERT_EQ(receive(w, top), V::kOk);
  EXPECT_EQ(w.check(top - size), V::kOutsideWindow);
  EXPECT_EQ(w.check(top - size + 1), V::kOk);
  // Fill the whole window, then every number inside is a replay.
  for (std::uint32_t s = top - size + 1; s < top; ++s) ASSERT_EQ(receive(w, s), V::kOk) << s;
  for (std::uint32_t s = top - size + 1; s <= top; ++s) ASSERT_EQ(w.check(s), V::kReplay) << s;
  // Slide by one: the old left edge leaves, the new number is fresh.
  ASSERT_EQ(receive(w, top + 1), V::kOk);
  EXPECT_EQ(w.check(top - size + 1), V::kOutsideWindow);
  EXPECT_EQ(w.check(top - size + 2), V::kReplay);
}

TEST_P(ReplayWindowSizes, MatchesReferenceModelOnRandomTraffic) {
  const std::uint32_t size = GetParam();
  ReplayWindow w(size);
  std::set<std::uint32_t> seen;
  std::uint32_t top = 0;
  std::mt19937 rng(size);
  std::uint32_t next = 1;
  for (int i = 0; i < 200000; ++i) {
    // Mostly forward with reordering, some duplicates, some far jumps.
    std::uint32_t r = rng() % 100;
    std::uint32_t seq;
    if (r < 60) seq = next++;
    else if (r < 85) seq = next > 2 * size ? next - 1 - rng() % (2 * size) : 1 + rng() % next;
    else if (r < 98) seq = seen.empty() ? next : *std::next(seen.begin(), 0) + rng() % 8;
    else { next += rng() % (3 * ReplayWindow::kMaxSize); seq = next++; }
    if (seq == 0) seq = 1;

    V expect;
    if (seq > top) expect = V::kOk;
    else if (top - seq >= size) expect = V::kOutsideWindow;
    else expect = seen.count(seq) ? V::kReplay : V::kOk;
    ASSERT_EQ(w.check(seq), expect) << "i=" << i << " seq=" << seq << " top=" << top;
    if (expect == V::kOk) {
      ASSERT_EQ(w.update(seq), V::kOk);
      seen.insert(seq);
      if (seq > top) top = seq;
      // Keep the model small: forget what fell out of the window.
      while (!seen.empty() && top - *seen.begin() >= size) seen.erase(seen.begin());
    }
  }
}

// Non-powers of two and sizes around the ring sizes (R = max(64, next power of two)) too.
INSTANTIATE_TEST_SUITE_P(Sizes, ReplayWindowSizes,
                         ::testing::Values(2u, 32u, 63u, 64u, 65u, 100u, 256u, 257u, 1024u, 4096u),
                         [](const auto& info) { return "W" + std::to_string(info.param); });

}  // namespace
}  // namespace ipsecgw::dp
