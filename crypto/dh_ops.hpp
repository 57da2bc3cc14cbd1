// A process-wide count of DH modular exponentiations (key pairs generated and shared secrets
// computed), for the /ipsecgw/ike telemetry: the cost a flood can put on the control core.
#pragma once

#include <cstdint>

namespace ipsecgw::crypto {

std::uint64_t dh_operations() noexcept;

}  // namespace ipsecgw::crypto
