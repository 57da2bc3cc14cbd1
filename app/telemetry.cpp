#include "app/telemetry.hpp"

#include <rte_telemetry.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "crypto/dh_ops.hpp"
#include "dataplane/telemetry_columns.hpp"
#include "ike/ike_sa.hpp"

namespace ipsecgw::app {
namespace {

// A reply must fit DPDK's 16 KiB telemetry buffer, or whole columns are left out of it: a
// page of /ipsecgw/connections holds the rows whose JSON fits kRowBudget, counted the way DPDK
// writes them (strings cut at RTE_TEL_MAX_STRING_LEN - 1 bytes, then escaped).
constexpr std::size_t kReplyMax = 16 * 1024;
constexpr std::size_t kRowBudget = kReplyMax - 1024;  // the keys, count/total/start/next

std::size_t json_string_bytes(const std::string& s) {
  std::size_t n = 3;  // quotes, separator
  const std::size_t len = std::min<std::size_t>(s.size(), RTE_TEL_MAX_STRING_LEN - 1);
  for (std::size_t i = 0; i < len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    n += c < 0x20 ? 6 : (c == '"' || c == '\\' || c == '/') ? 2 : 1;
  }
  return n;
}

std::size_t row_json_bytes(const ConnRow& r) {
  constexpr std::size_t kU64 = 21;  // 20 digits and a separator
  std::size_t n = 8 * kU64;
  for (const std::string* s : {&r.name, &r.peer, &r.state, &r.reason, &r.phase1, &r.phase2,
                               &r.ike_algorithms, &r.esp_algorithms, &r.last_error,
                               &r.last_error_at, &r.last_rekey_at})
    n += json_string_bytes(*s);
  return n;
}

// Columns, like /ipsecgw/sa (dict keys must be plain names, which connection names need not
// be): row i of every array is one connection. One page: rows from START (the parameter,
// default 0) while they fit; `next` is the START of the next page, absent on the last one.
int tel_connections(const char*, const char* params, rte_tel_data* d) {
  std::size_t start = 0;
  if (params != nullptr && *params != '\0') {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(params, &end, 10);
    if (errno != 0 || end == params || *end != '\0' || params[0] == '-') return -EINVAL;
    start = static_cast<std::size_t>(v);
  }
  // Only this page's rows are copied (under the table's lock), not the whole table.
  std::size_t bytes = 0;
  const ConnPage page = connection_table().page(start, [&](const ConnRow& r, std::size_t taken) {
    if (taken >= RTE_TEL_MAX_ARRAY_ENTRIES) return false;
    bytes += row_json_bytes(r);
    return bytes <= kRowBudget || taken == 0;
  });
  const std::vector<ConnRow>& rows = page.rows;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "count", rows.size());
  rte_tel_data_add_dict_u64(d, "total", page.total);
  rte_tel_data_add_dict_u64(d, "start", start);
  if (start + rows.size() < page.total) rte_tel_data_add_dict_u64(d, "next", start + rows.size());
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

// One connection, by its name (the name it has in /ipsecgw/connections: its Neutron name, or
// its id where that is empty or not unique; the first row so named, static rows first): every
// field as a dict entry.
int tel_connection(const char*, const char* params, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  if (params == nullptr || *params == '\0') {
    rte_tel_data_add_dict_string(d, "error", "a connection name or id is required: "
                                             "/ipsecgw/connection,NAME");
    return 0;
  }
  const std::optional<ConnRow> row = connection_table().find(params);  // a hash lookup
  if (!row) {
    rte_tel_data_add_dict_string(d, "error", "no such connection (see /ipsecgw/connections)");
    return 0;
  }
  const ConnRow& r = *row;
  const std::pair<const char*, const std::string*> strings[] = {
      {"name", &r.name}, {"peer", &r.peer}, {"state", &r.state}, {"reason", &r.reason},
      {"phase1", &r.phase1}, {"phase2", &r.phase2}, {"ike_algorithms", &r.ike_algorithms},
      {"esp_algorithms", &r.esp_algorithms}, {"last_error", &r.last_error},
      {"last_error_at", &r.last_error_at}, {"last_rekey_at", &r.last_rekey_at}};
  const std::pair<const char*, std::uint64_t> numbers[] = {
      {"spi_in", r.spi_in}, {"spi_out", r.spi_out}, {"udp_encap", r.udp_encap},
      {"peer_port", r.peer_port}, {"in_packets", r.in_packets}, {"in_bytes", r.in_bytes},
      {"out_packets", r.out_packets}, {"out_bytes", r.out_bytes}};
  for (const auto& [k, v] : strings) rte_tel_data_add_dict_string(d, k, v->c_str());
  for (const auto& [k, v] : numbers) rte_tel_data_add_dict_u64(d, k, v);
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
      {"half_open", c.half_open},  // held now (a gauge)
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
                             "Site connections, a page at a time: status, reason, phases, "
                             "algorithms, SPIs, traffic. Param: first row (see next)");
  rte_telemetry_register_cmd("/ipsecgw/connection", tel_connection,
                             "One site connection's status, every field. Param: its name (as in "
                             "/ipsecgw/connections)");
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

ConnTable& connection_table() {
  static ConnTable table;
  return table;
}

}  // namespace ipsecgw::app
