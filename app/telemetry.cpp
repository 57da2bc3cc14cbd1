#include "app/telemetry.hpp"

#include <rte_telemetry.h>

#include <mutex>

#include "crypto/dh_ops.hpp"
#include "dataplane/telemetry_columns.hpp"
#include "ike/ike_sa.hpp"

namespace ipsecgw::app {
namespace {

// The control lcore writes the rows, the telemetry thread reads them.
std::mutex g_conn_mu;
std::vector<ConnRow> g_conn_rows;

// Columns, like /ipsecgw/sa (dict keys must be plain names, which connection names need not
// be): row i of every array is one connection.
int tel_connections(const char*, const char*, rte_tel_data* d) {
  std::vector<ConnRow> rows;
  {
    std::lock_guard lk(g_conn_mu);
    rows = g_conn_rows;
  }
  if (rows.size() > RTE_TEL_MAX_ARRAY_ENTRIES) rows.resize(RTE_TEL_MAX_ARRAY_ENTRIES);
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "count", rows.size());
  using dp::add_string_column, dp::add_u64_column;
  add_string_column(d, "name", rows, [](const ConnRow& r) { return r.name; });
  add_string_column(d, "peer", rows, [](const ConnRow& r) { return r.peer; });
  add_string_column(d, "state", rows, [](const ConnRow& r) { return r.state; });
  add_string_column(d, "reason", rows, [](const ConnRow& r) { return r.reason; });
  add_u64_column(d, "spi_in", rows, [](const ConnRow& r) { return r.spi_in; });
  add_u64_column(d, "spi_out", rows, [](const ConnRow& r) { return r.spi_out; });
  add_u64_column(d, "udp_encap", rows, [](const ConnRow& r) { return r.udp_encap; });
  add_string_column(d, "phase1", rows, [](const ConnRow& r) { return r.phase1; });
  add_string_column(d, "phase2", rows, [](const ConnRow& r) { return r.phase2; });
  add_string_column(d, "ike_algorithms", rows, [](const ConnRow& r) { return r.ike_algorithms; });
  add_string_column(d, "esp_algorithms", rows, [](const ConnRow& r) { return r.esp_algorithms; });
  add_u64_column(d, "peer_port", rows, [](const ConnRow& r) { return r.peer_port; });
  add_string_column(d, "last_error", rows, [](const ConnRow& r) { return r.last_error; });
  add_string_column(d, "last_error_at", rows, [](const ConnRow& r) { return r.last_error_at; });
  add_string_column(d, "last_rekey_at", rows, [](const ConnRow& r) { return r.last_rekey_at; });
  add_u64_column(d, "in_packets", rows, [](const ConnRow& r) { return r.in_packets; });
  add_u64_column(d, "in_bytes", rows, [](const ConnRow& r) { return r.in_bytes; });
  add_u64_column(d, "out_packets", rows, [](const ConnRow& r) { return r.out_packets; });
  add_u64_column(d, "out_bytes", rows, [](const ConnRow& r) { return r.out_bytes; });
  return 0;
}

// The IKE daemon's drop and defence counters (ike::IkeCounters), copied by the control lcore.
std::mutex g_ike_mu;
ike::IkeCounters g_ike;

int tel_ike(const char*, const char*, rte_tel_data* d) {
  ike::IkeCounters c;
  {
    std::lock_guard lk(g_ike_mu);
    c = g_ike;
  }
  rte_tel_data_start_dict(d);
  const std::pair<const char*, std::uint64_t> fields[] = {
      {"bad_cookie_drops", c.bad_cookie_drops},
      {"half_open_created", c.half_open_created},
      {"half_open_peer_cap", c.half_open_peer_cap},
      {"half_open_global_cap", c.half_open_global_cap},
      {"unknown_peer_drops", c.unknown_peer_drops},
      {"unauthenticated_drops", c.unauthenticated_drops},
      {"replay_drops", c.replay_drops},
      {"mid_cap_rekeys", c.mid_cap_rekeys},
      {"quick_mode_cap_drops", c.quick_mode_cap_drops},
      {"dh_failures", c.dh_failures},
      {"peer_id_mismatches", c.peer_id_mismatches},
      {"on_demand_dpd", c.on_demand_dpd},
  };
  for (const auto& [name, v] : fields) rte_tel_data_add_dict_u64(d, name, v);
  // Key pairs generated + shared secrets computed, by every thread of the process.
  rte_tel_data_add_dict_u64(d, "dh_ops", crypto::dh_operations());
  return 0;
}

}  // namespace

void register_telemetry() {
  static bool registered = false;
  if (registered) return;
  rte_telemetry_register_cmd("/ipsecgw/connections", tel_connections,
                             "Site connections: Neutron status, reason, phases, algorithms, SPIs, "
                             "last error/rekey, traffic. No parameters");
  // Help texts must stay under RTE_TEL_MAX_STRING_LEN (128), else registration fails.
  rte_telemetry_register_cmd("/ipsecgw/ike", tel_ike,
                             "IKE counters: cookie/replay/unauthenticated drops, half-open caps, "
                             "DH failures and operations (dh_ops). No parameters");
  registered = true;
}

void publish_ike_counters(const ike::IkeCounters& c) {
  std::lock_guard lk(g_ike_mu);
  g_ike = c;
}

void publish_connections(std::vector<ConnRow> rows) {
  std::lock_guard lk(g_conn_mu);
  g_conn_rows = std::move(rows);
}

}  // namespace ipsecgw::app
