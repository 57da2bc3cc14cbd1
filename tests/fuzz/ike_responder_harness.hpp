// A responder IKE daemon whose every answer is reproducible: fixed DH private values, nonces
// from a counter, a fixed cookie secret, a fake clock, SA installer and sender. The fuzz target
// fuzz_ike_responder feeds it datagram sequences; because the same initiator messages always
// get the same answers, a recorded exchange (tests/fuzz/seeds/fuzz_ike_responder, written by
// gen_ike_responder_seed) replays to the end of Quick Mode and mutations of it reach every
// phase of the message handler.
//
// Input format: records of [port: 1 byte, 0 = UDP 500, else 4500][length: 2 bytes, big-endian]
// [datagram], each delivered from the peer (198.51.100.2) to us (192.0.2.1); a record whose
// length runs past the input ends it. Between records the clock advances 100 ms and the daemon
// ticks (retransmissions, reaping).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "crypto/ike_crypto.hpp"
#include "ike/daemon.hpp"

namespace ipsecgw::ike::fuzz {

constexpr dp::Ipv4 kUs = 0xc0000201;    // 192.0.2.1
constexpr dp::Ipv4 kPeer = 0xc6336402;  // 198.51.100.2

class FixedClock final : public Clock {
 public:
  Millis now() const override { return t; }
  Millis t{1000000};
};

// DH from a fixed private exponent per side, nonces (and the cookie secret) from a counter.
class FixedKeys final : public KeySource {
 public:
  explicit FixedKeys(std::uint8_t side) : side_(side) {}
  Result<crypto::DhKeyPair> dh(crypto::DhGroup g) override {
    Bytes x(32);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::uint8_t>(side_ * 31 + i + 1);
    return crypto::DhKeyPair::from_private(g, x);
  }
  Bytes nonce(std::size_t n) override {
    Bytes out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(side_ ^ (counter_ + i));
    ++counter_;
    return out;
  }

 private:
  std::uint8_t side_;
  std::uint8_t counter_ = 0;
};

struct Sent {
  dp::UdpEndpoint from, to;
  Bytes data;
};

class RecordingSender final : public dp::DatagramSender {
 public:
  Result<void> send(const dp::DatagramView& d) override {
    sent.push_back({d.local, d.remote, Bytes(d.payload.begin(), d.payload.end())});
    return {};
  }
  std::vector<Sent> sent;
};

// Counts what the daemon installs; SPIs from a counter.
class CountingInstaller final : public dp::SaInstaller {
 public:
  explicit CountingInstaller(std::uint32_t base) : next_(base) {}
  Result<std::uint32_t> allocate_spi() override { return next_++; }
  void release_spi(std::uint32_t) override {}
  Result<void> add_sa(dp::SaSpec s) override {
    (s.dir == dp::Direction::kInbound ? inbound : outbound)++;
    return {};
  }
  Result<void> del_sa(dp::Direction, std::uint32_t) override { return {}; }
  std::optional<dp::SaCounters> query_sa(dp::Direction, std::uint32_t) override {
    return std::nullopt;
  }
  std::vector<dp::SaEvent> poll_events() override { return {}; }
  int inbound = 0, outbound = 0;

 private:
  std::uint32_t next_;
};

// Main Mode with MODP-1024 and Quick Mode with PFS MODP-1024: the cheapest exponentiations, so
// a mutated input that reaches both costs a few milliseconds.
inline ConnectionConfig fuzz_connection(bool responder) {
  ConnectionConfig c;
  c.name = "fuzz";
  c.id = responder ? 1 : 2;
  c.local_addr = responder ? kUs : kPeer;
  c.peer_addr = responder ? kPeer : kUs;
  c.local_subnet = *dp::parse_prefix(responder ? "10.1.0.0/16" : "10.2.0.0/24");
  c.peer_subnet = *dp::parse_prefix(responder ? "10.2.0.0/24" : "10.1.0.0/16");
  const std::string psk = "fuzzing-pre-shared-key";
  c.psk = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(psk.data()), psk.size());
  c.ike.group = crypto::DhGroup::kModp1024;
  c.ipsec.pfs = crypto::DhGroup::kModp1024;
  c.initiator = responder ? InitiatorMode::kResponseOnly : InitiatorMode::kBidirectional;
  return c;
}

// The responder under test, built fresh for every input.
struct Responder {
  FixedClock clock;
  RecordingSender sender;
  CountingInstaller installer{0x1000};
  FixedKeys keys{1};
  Daemon daemon{sender, installer, clock, &keys};

  Responder() {
    if (!daemon.add_connection(fuzz_connection(true)).ok()) __builtin_trap();
  }
  void deliver(std::uint16_t port, ByteView datagram) {
    daemon.on_datagram({{kUs, port}, {kPeer, port}, datagram});
  }
  // Runs a whole input (format above).
  void run(const std::uint8_t* data, std::size_t size) {
    std::size_t off = 0;
    while (off + 3 <= size) {
      const std::uint16_t port = data[off] == 0 ? 500 : 4500;
      const std::size_t len = (std::size_t{data[off + 1]} << 8) | data[off + 2];
      off += 3;
      if (len > size - off) break;
      deliver(port, ByteView(data + off, len));
      off += len;
      clock.t += Millis{100};
      daemon.tick();
    }
  }
};

inline void append_record(Bytes& out, std::uint16_t port, ByteView datagram) {
  out.push_back(port == 500 ? 0 : 1);
  out.push_back(static_cast<std::uint8_t>(datagram.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(datagram.size()));
  out.insert(out.end(), datagram.begin(), datagram.end());
}

}  // namespace ipsecgw::ike::fuzz
