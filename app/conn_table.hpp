// The site connections' rows as /ipsecgw/connections and /ipsecgw/connection serve them
// (app/telemetry.cpp). The control lcore writes only the rows that changed
// (ConnectionStatus::publish, app/connections.hpp), the telemetry thread reads one page or one
// row; both under the table's lock, which each holds for the rows it touches only: the cost per
// IKE tick is the rows changed, not the number of connections (issue #12).
//
// Rows have a key (RowKey, app/connections.hpp) that says their place: the static rows first,
// then the IKE connections in the order they were added (a connection added again comes last).
// A name need not be unique (a static connection of the configuration and one the API added
// may share it); a key is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "app/connections.hpp"

namespace ipsecgw::app {

// What changed in the rows since the last batch: `rows` new or changed, with their keys (in key
// order: new rows then go to the end one by one), `removed` gone.
struct RowChanges {
  std::vector<std::pair<RowKey, ConnRow>> rows;
  std::vector<RowKey> removed;
  bool empty() const noexcept { return rows.empty() && removed.empty(); }
};

// One page of rows from a START, and how many rows the table has.
struct ConnPage {
  std::vector<ConnRow> rows;
  std::size_t total = 0;
};

class ConnTable {
 public:
  // Removes `removed`, then writes `rows`: a known key's row in place, a key after every other
  // at the end (what a new connection's is), O(1) each (amortised); a key before others
  // (static rows published after IKE ones) is inserted in its place, O(rows). A removal is
  // O(rows) too (the rows after it move up, the indexes are rebuilt): removals are an
  // operator's action, rare.
  void apply(RowChanges changes);
  // Every row anew: `all` (keys unique; any order).
  void replace(RowChanges all);
  void clear() { replace({}); }

  std::size_t size() const;
  // Rows from `start` for as long as take(row, rows taken so far) says yes: only those rows
  // are copied, under the lock.
  ConnPage page(std::size_t start,
                const std::function<bool(const ConnRow&, std::size_t)>& take) const;
  // The first row (in the table's order) with this name: a hash lookup.
  std::optional<ConnRow> find(const std::string& name) const;
  // Every row, in order (tests; the telemetry thread reads pages).
  std::vector<ConnRow> rows() const;
  // Rows written into the table so far (by apply and replace): for tests of the work per
  // publish.
  std::uint64_t rows_written() const;

 private:
  struct Entry {
    RowKey key;
    ConnRow row;
  };
  void reindex();                     // rebuilds at_ and by_name_ from rows_
  void append(RowKey key, ConnRow row);

  mutable std::mutex mu_;
  std::vector<Entry> rows_;                                // in key order
  std::unordered_map<RowKey, std::size_t> at_;             // key -> index in rows_
  std::unordered_map<std::string, std::size_t> by_name_;  // name -> first index so named
  std::uint64_t written_ = 0;
};

}  // namespace ipsecgw::app
