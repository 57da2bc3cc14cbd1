// A connection's status row as the API's `status_detail` object (Neutron has no such field;
// the OpenStack client shows it under its raw name).
#pragma once

#include <nlohmann/json.hpp>

#include "app/connections.hpp"

namespace ipsecgw::app {

// {"reason", "phase1", "phase2", "ike_algorithms", "esp_algorithms", "peer_address",
//  "peer_port", "spi_in", "spi_out" (hex strings, "" without SAs), "udp_encap", "last_error",
//  "last_error_at", "last_rekey_at", "in_packets", "in_bytes", "out_packets", "out_bytes"}
nlohmann::json status_detail_json(const ConnRow& r);

}  // namespace ipsecgw::app
