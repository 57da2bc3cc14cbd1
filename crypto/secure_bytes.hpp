// SecureBytes: a move-only byte buffer for key material, wiped with OPENSSL_cleanse when it is
// destroyed or reassigned. It has no operator<< on purpose: keys never reach a log.
#pragma once

#include <openssl/crypto.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace ipsecgw::crypto {

class SecureBytes {
 public:
  SecureBytes() = default;
  explicit SecureBytes(std::size_t n) : buf_(n, 0) {}
  SecureBytes(const std::uint8_t* p, std::size_t n) : buf_(p, p + n) {}
  explicit SecureBytes(std::span<const std::uint8_t> s) : buf_(s.begin(), s.end()) {}
  SecureBytes(const SecureBytes&) = delete;
  SecureBytes& operator=(const SecureBytes&) = delete;
  SecureBytes(SecureBytes&& o) noexcept : buf_(std::move(o.buf_)) { o.buf_.clear(); }
  SecureBytes& operator=(SecureBytes&& o) noexcept {
    if (this != &o) {
      wipe();
      buf_ = std::move(o.buf_);
      o.buf_.clear();
    }
    return *this;
  }
  ~SecureBytes() { wipe(); }

  // An explicit copy, so that duplicating key material is always visible in the code.
  SecureBytes clone() const { return SecureBytes(buf_.data(), buf_.size()); }

  std::uint8_t* data() noexcept { return buf_.data(); }
  const std::uint8_t* data() const noexcept { return buf_.data(); }
  std::size_t size() const noexcept { return buf_.size(); }
  bool empty() const noexcept { return buf_.empty(); }
  std::span<const std::uint8_t> span() const noexcept { return {buf_.data(), buf_.size()}; }
  std::span<std::uint8_t> span() noexcept { return {buf_.data(), buf_.size()}; }
  std::uint8_t& operator[](std::size_t i) noexcept { return buf_[i]; }
  std::uint8_t operator[](std::size_t i) const noexcept { return buf_[i]; }

  void resize(std::size_t n) {
    // Grow by copying into a fresh buffer so the old allocation can be wiped.
    SecureBytes tmp(n);
    std::memcpy(tmp.data(), buf_.data(), n < buf_.size() ? n : buf_.size());
    *this = std::move(tmp);
  }
  void append(std::span<const std::uint8_t> s) {
    SecureBytes tmp(buf_.size() + s.size());
    if (!buf_.empty()) std::memcpy(tmp.data(), buf_.data(), buf_.size());
    if (!s.empty()) std::memcpy(tmp.data() + buf_.size(), s.data(), s.size());
    *this = std::move(tmp);
  }
  void wipe() noexcept {
    if (!buf_.empty()) OPENSSL_cleanse(buf_.data(), buf_.size());
  }

  // Constant-time equality (CRYPTO_memcmp) for secrets.
  friend bool operator==(const SecureBytes& a, const SecureBytes& b) noexcept {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
  }

 private:
  std::vector<std::uint8_t> buf_;
};

}  // namespace ipsecgw::crypto
