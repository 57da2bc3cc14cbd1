// rte_telemetry columns: DPDK 22.11 telemetry nests only arrays in dicts, so a table (per lcore,
// per SA, per connection) is reported as one array per column, row i of every array being one
// row. Used by the /ipsecgw/* commands of dataplane/gateway_counters.cpp and app/telemetry.cpp.
#pragma once

#include <rte_telemetry.h>

#include <cstdint>
#include <string>

namespace ipsecgw::dp {

// Adds to dict `d` an array `name` of get(row) for every row; `rows` is any range. An array
// that cannot be allocated or added is left out.
template <class Rows, class Get>
void add_u64_column(rte_tel_data* d, const char* name, const Rows& rows, Get get) {
  rte_tel_data* a = rte_tel_data_alloc();
  if (a == nullptr) return;
  rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
  for (const auto& r : rows) rte_tel_data_add_array_u64(a, static_cast<std::uint64_t>(get(r)));
  if (rte_tel_data_add_dict_container(d, name, a, 0) != 0) rte_tel_data_free(a);
}

// The same with strings: get(row) returns a std::string.
template <class Rows, class Get>
void add_string_column(rte_tel_data* d, const char* name, const Rows& rows, Get get) {
  rte_tel_data* a = rte_tel_data_alloc();
  if (a == nullptr) return;
  rte_tel_data_start_array(a, RTE_TEL_STRING_VAL);
  for (const auto& r : rows) rte_tel_data_add_array_string(a, std::string(get(r)).c_str());
  if (rte_tel_data_add_dict_container(d, name, a, 0) != 0) rte_tel_data_free(a);
}

}  // namespace ipsecgw::dp
