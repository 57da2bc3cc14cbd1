// One "ipsec site connection" (Neutron VPNaaS model) as plain data: the app maps YAML to it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "crypto/esp_crypto.hpp"
#include "crypto/ike_crypto.hpp"
#include "crypto/secure_bytes.hpp"
#include "dataplane/api/types.hpp"

namespace ipsecgw::ike {

// IKEv1 Main Mode with PSK (RFC 2409 §5.4).
struct IkePolicy {
  crypto::CipherAlg cipher = crypto::CipherAlg::kAes128Cbc;
  crypto::HashAlg hash = crypto::HashAlg::kSha1;
  crypto::DhGroup group = crypto::DhGroup::kModp1536;
  std::uint32_t lifetime_s = 3600;  // 60..86400
};

// ESP tunnel (RFC 2407 §4.5).
struct IpsecPolicy {
  crypto::CipherAlg cipher = crypto::CipherAlg::kAes128Cbc;
  crypto::IntegAlg integ = crypto::IntegAlg::kHmacSha1_96;
  crypto::DhGroup pfs = crypto::DhGroup::kModp1536;  // PFS group for Quick Mode
  std::uint32_t lifetime_s = 3600;                   // 60..86400
};

enum class DpdAction : std::uint8_t { kHold, kRestart };
struct DpdConfig {
  DpdAction action = DpdAction::kHold;
  std::uint32_t interval_s = 30;  // >= 1
  std::uint32_t timeout_s = 120;  // > interval
};

enum class InitiatorMode : std::uint8_t { kBidirectional, kResponseOnly };

struct ConnectionConfig {
  std::string name;
  std::uint32_t id = 0;  // conn_id carried into SaSpec
  dp::Ipv4 local_addr = 0;
  dp::Ipv4 peer_addr = 0;
  // The identity the peer must prove in its ID payload (MM5/MM6): an IPv4 address in dotted
  // form (ID_IPV4_ADDR), else an FQDN or user@FQDN. Empty: not checked.
  std::string peer_id;
  // Our identity in our ID payload (MM5/MM6), in the same forms. Empty: our address.
  std::string local_id;
  // The subnets the tunnel joins (Neutron endpoint groups; Libreswan's leftsubnets and
  // rightsubnets): local_subnet and peer_subnet, plus the extra ones. One CHILD SA per
  // (local, peer) pair (selectors()).
  dp::Ipv4Prefix local_subnet;
  dp::Ipv4Prefix peer_subnet;
  std::vector<dp::Ipv4Prefix> extra_local_subnets;
  std::vector<dp::Ipv4Prefix> extra_peer_subnets;
  crypto::SecureBytes psk;
  IkePolicy ike;
  IpsecPolicy ipsec;
  DpdConfig dpd;
  InitiatorMode initiator = InitiatorMode::kBidirectional;
  bool admin_state_up = true;
  std::uint16_t mtu = 1500;
};

// Checks the ranges above; the error names the field.
Result<void> validate(const ConnectionConfig& c);

// One (local, peer) subnet pair of a connection: the selectors of one CHILD SA.
struct Selector {
  dp::Ipv4Prefix local, peer;
  bool operator==(const Selector&) const = default;
};
// Every pair, local-major: (local_subnet, peer_subnet) first.
std::vector<Selector> selectors(const ConnectionConfig& c);
// The data plane's conn_id of pair `pair` (its trap and SAs): the connection's id for the
// first pair, id + pair * 2^24 for the others (ids below 2^24, at most kMaxPairs pairs).
constexpr std::size_t kMaxPairs = 64;
constexpr std::uint32_t trap_id(std::uint32_t conn_id, std::size_t pair) {
  return conn_id + static_cast<std::uint32_t>(pair << 24);
}
// The connection id a trap id belongs to.
constexpr std::uint32_t conn_of_trap(std::uint32_t trap) { return trap & 0xffffffU; }

// The settings of the ISAKMP SA that connections sharing a peer share (PSK, ike policy, our
// and the peer's identity): "" when a and b agree, else which one differs ("psk", ...).
std::string phase1_difference(const ConnectionConfig& a, const ConnectionConfig& b);

}  // namespace ipsecgw::ike
