// One "ipsec site connection" (Neutron VPNaaS model) as plain data: the app maps YAML to it.
#pragma once

#include <cstdint>
#include <string>

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
  dp::Ipv4Prefix local_subnet;
  dp::Ipv4Prefix peer_subnet;
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

}  // namespace ipsecgw::ike
