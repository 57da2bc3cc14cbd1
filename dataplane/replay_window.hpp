// Inbound anti-replay window (RFC 4303 §3.4.3), 32-bit sequence numbers (no ESN).
//
// The window covers the `size` sequence numbers ending at the highest one verified so far
// (`top`). A bitmap remembers which of them were received. The bitmap is a ring of R bits
// indexed by seq % R, R the smallest power of two >= size (at least 64, at most kMaxSize), in a
// fixed kMaxSize-bit array (no allocation, no pointers: the SA is built with rte_zmalloc and
// placement new). Because size <= R, every sequence number inside the window has its own bit;
// when `top` advances, the bits of the newly covered numbers are cleared first, so stale bits
// from numbers R or more below `top` never count. A small window (the default 64) thus uses the
// first word only, on the same cache line as top and size (issue #12: one line per packet).
//
// Use (RFC 4303 §3.4.3): check() before the ICV is verified (no state change, so a forged packet
// cannot move the window), update() only after the ICV verified. update() checks again, since
// two packets of one burst may carry the same number and both pass the pre-check.
//
// One owner (the worker that owns the SA): no atomics.
#pragma once

#include <cstdint>
#include <cstring>

namespace ipsecgw::dp {

enum class ReplayVerdict : std::uint8_t {
  kOk,
  kReplay,         // inside the window and already received
  kOutsideWindow,  // left of the window (too old), or 0 which is never sent (RFC 4303 §3.3.3)
};

class ReplayWindow {
 public:
  static constexpr std::uint32_t kMaxSize = 4096;  // bits

  ReplayWindow() noexcept = default;
  explicit ReplayWindow(std::uint32_t size) noexcept { reset(size); }

  // Empties the window. size 0 disables anti-replay checks; sizes above kMaxSize are clamped
  // (sa_create rejects them before).
  void reset(std::uint32_t size) noexcept {
    size_ = static_cast<std::uint16_t>(size > kMaxSize ? kMaxSize : size);
    // The ring: the smallest power of two >= size, at least one word, so that a small window's
    // bits stay in the first words (the SA's replay line) instead of spreading over 4096 bits.
    std::uint32_t ring = 64;
    while (ring < size_) ring <<= 1;
    mask_ = static_cast<std::uint16_t>(ring - 1);
    top_ = 0;
    std::memset(bits_, 0, sizeof bits_);
  }

  std::uint32_t size() const noexcept { return size_; }
  bool enabled() const noexcept { return size_ != 0; }
  // Highest sequence number verified so far (0 = none yet).
  std::uint32_t top() const noexcept { return top_; }

  // Pre-ICV check; changes nothing. The common case (in-order traffic: seq beyond the top) is
  // the first test; seq > top_ >= 0 also rules out 0.
  ReplayVerdict check(std::uint32_t seq) const noexcept {
    if (seq > top_) return ReplayVerdict::kOk;
    if (seq == 0) return ReplayVerdict::kOutsideWindow;  // never valid (RFC 4303 §3.3.3)
    if (size_ == 0) return ReplayVerdict::kOk;
    if (top_ - seq >= size_) return ReplayVerdict::kOutsideWindow;
    return test_bit(seq) ? ReplayVerdict::kReplay : ReplayVerdict::kOk;
  }

  // After the ICV verified: checks again and, when still acceptable, records seq (sliding the
  // window right when seq is beyond the top). Returns the verdict of the re-check. One combined
  // check-and-update: the in-order case (seq == top_ + 1) clears nothing and sets one bit; inside
  // the window the bit's word is read once, tested and written back.
  ReplayVerdict update(std::uint32_t seq) noexcept {
    if (seq > top_) {
      if (size_ != 0) {
        // Bits of the skipped numbers are cleared; seq's own bit is set whatever it held (stale).
        const std::uint32_t gap = seq - top_ - 1;  // numbers skipped between top_ and seq
        if (gap != 0) clear_after_top(gap);
        const std::uint32_t p = seq & mask_;
        bits_[p >> 6] |= std::uint64_t{1} << (p & 63);
      }
      top_ = seq;
      return ReplayVerdict::kOk;
    }
    if (seq == 0) return ReplayVerdict::kOutsideWindow;
    if (size_ == 0) return ReplayVerdict::kOk;
    if (top_ - seq >= size_) return ReplayVerdict::kOutsideWindow;
    const std::uint32_t p = seq & mask_;
    std::uint64_t& w = bits_[p >> 6];
    const std::uint64_t bit = std::uint64_t{1} << (p & 63);
    if (w & bit) return ReplayVerdict::kReplay;
    w |= bit;
    return ReplayVerdict::kOk;
  }

 private:
  static constexpr std::uint32_t kWords = kMaxSize / 64;

  bool test_bit(std::uint32_t seq) const noexcept {
    const std::uint32_t p = seq & mask_;
    return (bits_[p >> 6] >> (p & 63)) & 1u;
  }
  // Clears the bits of top_+1 .. top_+count (the numbers the window slides over).
  void clear_after_top(std::uint32_t count) noexcept {
    if (count > mask_) {  // the whole ring
      std::memset(bits_, 0, (mask_ + 1u) / 8);
      return;
    }
    std::uint32_t pos = (top_ + 1) & mask_;
    while (count != 0) {
      const std::uint32_t off = pos & 63;
      const std::uint32_t n = (64 - off) < count ? (64 - off) : count;
      const std::uint64_t mask = n == 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1) << off;
      bits_[pos >> 6] &= ~mask;
      pos = (pos + n) & mask_;
      count -= n;
    }
  }

  std::uint32_t top_ = 0;
  std::uint16_t size_ = 0;
  std::uint16_t mask_ = 63;  // ring bits - 1 (a power of two minus one, 63..kMaxSize - 1)
  std::uint64_t bits_[kWords] = {};
};

}  // namespace ipsecgw::dp
