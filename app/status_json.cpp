#include "app/status_json.hpp"

#include <cstdio>

namespace ipsecgw::app {
namespace {

std::string spi_hex(std::uint32_t spi) {
  if (spi == 0) return "";
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", spi);
  return b;
}

}  // namespace

nlohmann::json status_detail_json(const ConnRow& r) {
  return {
      {"reason", r.reason},
      {"phase1", r.phase1},
      {"phase2", r.phase2},
      {"ike_algorithms", r.ike_algorithms},
      {"esp_algorithms", r.esp_algorithms},
      {"peer_address", r.peer},
      {"peer_port", r.peer_port},
      {"spi_in", spi_hex(r.spi_in)},
      {"spi_out", spi_hex(r.spi_out)},
      {"udp_encap", r.udp_encap},
      {"last_error", r.last_error},
      {"last_error_at", r.last_error_at},
      {"last_rekey_at", r.last_rekey_at},
      {"in_packets", r.in_packets},
      {"in_bytes", r.in_bytes},
      {"out_packets", r.out_packets},
      {"out_bytes", r.out_bytes},
  };
}

}  // namespace ipsecgw::app
