#include "app/conn_table.hpp"

#include <algorithm>

namespace ipsecgw::app {

void ConnTable::reindex() {
  at_.clear();
  by_name_.clear();
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    at_[rows_[i].key] = i;
    by_name_.emplace(rows_[i].row.name, i);  // the first one so named keeps the name
  }
}

void ConnTable::append(RowKey key, ConnRow row) {
  const std::size_t i = rows_.size();
  at_[key] = i;
  by_name_.emplace(row.name, i);
  rows_.push_back({key, std::move(row)});
}

void ConnTable::apply(RowChanges changes) {
  std::lock_guard lk(mu_);
  if (!changes.removed.empty()) {
    std::vector<bool> gone(rows_.size());
    bool any = false;
    for (RowKey k : changes.removed)
      if (auto it = at_.find(k); it != at_.end()) gone[it->second] = any = true;
    if (any) {  // the rows after each one move up: O(rows)
      std::size_t kept = 0;
      for (std::size_t i = 0; i < rows_.size(); ++i) {
        if (gone[i]) continue;
        if (kept != i) rows_[kept] = std::move(rows_[i]);
        ++kept;
      }
      rows_.resize(kept);
      reindex();
    }
  }
  bool out_of_order = false;
  for (auto& [key, row] : changes.rows) {
    ++written_;
    if (auto it = at_.find(key); it != at_.end()) {
      ConnRow& r = rows_[it->second].row;
      const bool renamed = r.name != row.name;  // never by ConnectionStatus; kept right anyway
      r = std::move(row);
      if (renamed) reindex();
    } else if (rows_.empty() || key > rows_.back().key) {
      append(key, std::move(row));
    } else {
      rows_.push_back({key, std::move(row)});
      out_of_order = true;
    }
  }
  if (out_of_order) {
    std::stable_sort(rows_.begin(), rows_.end(),
                     [](const Entry& a, const Entry& b) { return a.key < b.key; });
    reindex();
  }
}

void ConnTable::replace(RowChanges all) {
  std::vector<Entry> rows;
  rows.reserve(all.rows.size());
  for (auto& [key, row] : all.rows) rows.push_back({key, std::move(row)});
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Entry& a, const Entry& b) { return a.key < b.key; });
  std::lock_guard lk(mu_);
  written_ += rows.size();
  rows_ = std::move(rows);
  reindex();
}

std::size_t ConnTable::size() const {
  std::lock_guard lk(mu_);
  return rows_.size();
}

ConnPage ConnTable::page(std::size_t start,
                         const std::function<bool(const ConnRow&, std::size_t)>& take) const {
  ConnPage p;
  std::lock_guard lk(mu_);
  p.total = rows_.size();
  for (std::size_t i = start; i < rows_.size() && take(rows_[i].row, p.rows.size()); ++i)
    p.rows.push_back(rows_[i].row);
  return p;
}

std::optional<ConnRow> ConnTable::find(const std::string& name) const {
  std::lock_guard lk(mu_);
  const auto it = by_name_.find(name);
  if (it == by_name_.end()) return std::nullopt;
  return rows_[it->second].row;
}

std::vector<ConnRow> ConnTable::rows() const {
  std::lock_guard lk(mu_);
  std::vector<ConnRow> out;
  out.reserve(rows_.size());
  for (const Entry& e : rows_) out.push_back(e.row);
  return out;
}

std::uint64_t ConnTable::rows_written() const {
  std::lock_guard lk(mu_);
  return written_;
}

}  // namespace ipsecgw::app
