// The CHILD SAs (ESP SA pairs) an ISAKMP SA holds: the current pair, with its lifetimes, and
// the pairs it replaced, which keep their inbound SA for a grace period after a rekey.
// An ISAKMP SA holds one such collection per slot: per connection and (local, peer) subnet
// pair (IkeSa::Slot).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

namespace ipsecgw::ike {

using Millis = std::chrono::milliseconds;

// What was installed for the connection.
struct ChildSaInfo {
  std::uint32_t spi_in = 0;
  std::uint32_t spi_out = 0;
  bool udp_encap = false;
  std::uint16_t peer_port = 0;
  std::uint32_t lifetime_s = 0;
};

class ChildSas {
 public:
  // A replaced pair: its inbound SA is deleted at `at`.
  struct Retiring {
    std::uint32_t spi_in, spi_out;
    Millis at;
  };

  const std::optional<ChildSaInfo>& current() const { return current_; }
  Millis installed_at() const { return installed_; }
  Millis soft_expiry() const { return soft_; }
  Millis hard_expiry() const { return hard_; }
  void set_soft_expiry(Millis at) { soft_ = at; }

  // Makes `c` the current pair; the one it replaces, if any, retires at `retire_at` and is
  // returned.
  std::optional<ChildSaInfo> replace(const ChildSaInfo& c, Millis installed, Millis soft,
                                     Millis hard, Millis retire_at);
  // Forgets the current pair (it was deleted).
  void clear_current() { current_.reset(); }

  // Our inbound SPIs of the replaced pairs still in their grace period.
  std::vector<std::uint32_t> retiring_inbound_spis() const;
  // Our inbound SPIs of every pair held (replaced ones first, then the current one).
  std::vector<std::uint32_t> inbound_spis() const;
  // Removes and returns the replaced pairs whose grace period ended by `now`.
  std::vector<Retiring> take_retired(Millis now);
  // Removes and returns the replaced pair with outbound SPI `spi_out`, if held.
  std::optional<Retiring> take_retiring(std::uint32_t spi_out);
  // Removes and returns every replaced pair.
  std::vector<Retiring> take_all_retiring();
  // When the next replaced pair's grace period ends (Millis::max() when none is held).
  Millis next_retirement() const;

 private:
  std::optional<ChildSaInfo> current_;
  Millis installed_{0}, soft_{0}, hard_{0};
  std::vector<Retiring> retiring_;
};

}  // namespace ipsecgw::ike
