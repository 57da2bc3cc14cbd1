// UDP datagrams between the data plane's punt path and the IKE daemon. No DPDK.
// For port 4500 the payload is given WITHOUT the 4-byte non-ESP marker (RFC 3948 §2.2): the
// data plane strips it on receive and adds it on send when either port is 4500.
#pragma once

#include <cstdint>
#include <span>

#include "common/result.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::dp {

struct UdpEndpoint {
  Ipv4 addr = 0;
  std::uint16_t port = 0;  // host order
  friend bool operator==(const UdpEndpoint&, const UdpEndpoint&) = default;
};

struct DatagramView {
  UdpEndpoint local;   // our address and port (500 or 4500)
  UdpEndpoint remote;  // the peer's
  std::span<const std::uint8_t> payload;
};

// Implemented by the IKE daemon; called on the control lcore for every IKE datagram received.
class DatagramHandler {
 public:
  virtual ~DatagramHandler() = default;
  virtual void on_datagram(const DatagramView& d) = 0;
};

// Implemented by the gateway (and by fakes in tests): sends one datagram from the control lcore.
class DatagramSender {
 public:
  virtual ~DatagramSender() = default;
  virtual Result<void> send(const DatagramView& d) = 0;
};

}  // namespace ipsecgw::dp
