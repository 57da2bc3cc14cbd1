#include "app/connections.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "app/conn_table.hpp"
#include "app/logging.hpp"

namespace ipsecgw::app {
namespace {

constexpr const char* kAdminDown = "admin_state_up false";
constexpr auto kTrafficEvery = std::chrono::seconds(1);

bool is_error_news(const ConnRow& r) {
  return r.state == "ERROR" || (r.state == "DOWN" && !r.reason.empty() && r.reason != kAdminDown);
}

}  // namespace

bool same_status(const ConnRow& a, const ConnRow& b) {
  return a.name == b.name && a.peer == b.peer && a.state == b.state && a.reason == b.reason &&
         a.spi_in == b.spi_in && a.spi_out == b.spi_out && a.udp_encap == b.udp_encap &&
         a.peer_port == b.peer_port;
}

std::string describe_row(const ConnRow& r) {
  std::ostringstream o;
  o << "connection " << r.name << " (peer " << r.peer << "): " << r.state;
  if (!r.reason.empty()) o << " (" << r.reason << ")";
  if (r.spi_in != 0 || r.spi_out != 0) {
    char spis[64];
    std::snprintf(spis, sizeof spis, " spi_in 0x%08x spi_out 0x%08x", r.spi_in, r.spi_out);
    o << spis << (r.udp_encap ? " esp-in-udp" : " esp");
    if (r.peer_port != 0) o << " peer port " << r.peer_port;
    if (!r.esp_algorithms.empty()) o << " ike " << r.ike_algorithms << " esp " << r.esp_algorithms;
  }
  return o.str();
}

NeutronStatus neutron_status_of(const ike::ConnectionDetail& d) {
  using ike::ConnState;
  if (!d.admin_state_up) return {"DOWN", kAdminDown};
  switch (d.status.state) {
    case ConnState::kActive: return {"ACTIVE", ""};
    case ConnState::kPending:
      return {"PENDING_CREATE", "IKE negotiation in progress"};
    case ConnState::kError:
      if (d.tunnel_ended) return {"DOWN", d.status.reason};
      return {"ERROR", d.status.reason};
    case ConnState::kDown: break;
  }
  return {"DOWN", ""};
}

std::string iso8601(WallClock::time_point t) {
  const std::time_t s = WallClock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void ConnectionStatus::add_static_connections(const Config& cfg) {
  for (const auto& c : cfg.ipsec_site_connections)
    if (c.manual_keys && c.admin_state_up) {
      ConnRow r{c.name, dp::format_ipv4(c.peer_address), "STATIC", "manual keys",
                c.manual_keys->inbound.spi, c.manual_keys->outbound.spi,
                c.manual_keys->udp_encap};
      static_rows_.push_back(std::move(r));
      statics_unpublished_ = true;
    }
}

void ConnectionStatus::add_ike_connection(std::string name, dp::Ipv4 peer) {
  if (by_name_.count(name) != 0) remove_ike_connection(name);
  added_.push_back(name);
  ike_conns_.push_back({name, peer, {}, {}, {}});
  ike_conns_.back().key = next_key_++;
  by_name_[std::move(name)] = std::prev(ike_conns_.end());
}

void ConnectionStatus::remove_ike_connection(const std::string& name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return;
  if (sweep_at_ == it->second) ++sweep_at_;
  removed_keys_.push_back(it->second->key);
  ike_conns_.erase(it->second);
  by_name_.erase(it);
  removed_ = true;
}

const ConnectionStatus::IkeConn* ConnectionStatus::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &*it->second;
}

ConnRow ConnectionStatus::ike_row(const ike::Daemon& ike, const IkeConn& c) {
  const auto d = ike.detail(c.name);
  const NeutronStatus ns = neutron_status_of(d);
  ConnRow r{c.name, dp::format_ipv4(c.peer), ns.state, ns.reason};
  if (d.status.child && d.status.state == ike::ConnState::kActive) {
    r.spi_in = d.status.child->spi_in;
    r.spi_out = d.status.child->spi_out;
    r.udp_encap = d.status.child->udp_encap;
  }
  r.phase1 = d.phase1;
  r.phase2 = d.phase2;
  r.ike_algorithms = d.ike_algorithms;
  r.esp_algorithms = d.esp_algorithms;
  if (d.phase1 != "NONE") r.peer_port = d.peer.port;
  return r;
}

void ConnectionStatus::carry_history(const IkeConn& c, ConnRow& r) {
  r.last_error = c.last.last_error;
  r.last_error_at = c.last.last_error_at;
  r.last_rekey_at = c.last.last_rekey_at;
  r.in_packets = c.last.in_packets;
  r.in_bytes = c.last.in_bytes;
  r.out_packets = c.last.out_packets;
  r.out_bytes = c.last.out_bytes;
}

void ConnectionStatus::note_transitions(IkeConn& c, ConnRow& r, WallClock::time_point now) const {
  if (is_error_news(r) && (r.state != c.last.state || r.reason != c.last.reason)) {
    r.last_error = r.reason;
    r.last_error_at = iso8601(now);
  }
  const bool had_pair = c.last.state == "ACTIVE" && c.last.spi_in != 0;
  if (had_pair && r.state == "ACTIVE" &&
      (r.spi_in != c.last.spi_in || r.spi_out != c.last.spi_out))
    r.last_rekey_at = iso8601(now);
}

// The current pair's counters; when the pair changed, the old one's final counts (its inbound
// SA lives on for the rekey grace period) join the totals of the replaced pairs.
void ConnectionStatus::read_traffic(IkeConn& c, ConnRow& r, dp::SaInstaller& sas) {
  auto read = [&sas](std::uint32_t spi_in, std::uint32_t spi_out, Traffic& t) {
    if (auto in = sas.query_sa(dp::Direction::kInbound, spi_in)) {
      t.in_packets = std::max(t.in_packets, in->packets);
      t.in_bytes = std::max(t.in_bytes, in->bytes);
    }
    if (auto out = sas.query_sa(dp::Direction::kOutbound, spi_out)) {
      t.out_packets = std::max(t.out_packets, out->packets);
      t.out_bytes = std::max(t.out_bytes, out->bytes);
    }
  };
  const bool changed = r.spi_in != c.last.spi_in || r.spi_out != c.last.spi_out;
  if (changed && c.last.spi_in != 0) {
    read(c.last.spi_in, c.last.spi_out, c.current);
    c.before.in_packets += c.current.in_packets;
    c.before.in_bytes += c.current.in_bytes;
    c.before.out_packets += c.current.out_packets;
    c.before.out_bytes += c.current.out_bytes;
  }
  if (changed) c.current = {};
  if (r.spi_in != 0) read(r.spi_in, r.spi_out, c.current);
  r.in_packets = c.before.in_packets + c.current.in_packets;
  r.in_bytes = c.before.in_bytes + c.current.in_bytes;
  r.out_packets = c.before.out_packets + c.current.out_packets;
  r.out_bytes = c.before.out_bytes + c.current.out_bytes;
}

std::vector<ConnRow> ConnectionStatus::current_rows(const ike::Daemon* ike) const {
  std::vector<ConnRow> rows = static_rows_;
  if (ike != nullptr)
    for (const IkeConn& c : ike_conns_) {
      ConnRow r = ike_row(*ike, c);
      carry_history(c, r);
      rows.push_back(std::move(r));
    }
  return rows;
}

ConnRow ConnectionStatus::current_row(const ike::Daemon& ike, const std::string& name) const {
  if (const IkeConn* c = find(name)) {
    ConnRow r = ike_row(ike, *c);
    carry_history(*c, r);
    return r;
  }
  ConnRow r;
  r.name = name;
  return r;
}

bool ConnectionStatus::examine(const ike::Daemon& ike, IkeConn& c, dp::SaInstaller* sas,
                               bool traffic, WallClock::time_point now) {
  ++rows_examined_;
  c.examined_in = refreshes_;
  ConnRow r = ike_row(ike, c);
  carry_history(c, r);
  note_transitions(c, r, now);
  const bool pair_changed = r.spi_in != c.last.spi_in || r.spi_out != c.last.spi_out;
  if (sas != nullptr && (traffic || pair_changed)) read_traffic(c, r, *sas);
  if (r == c.last) return false;
  if (!same_status(r, c.last)) {
    if (r.state == "ERROR")
      APP_LOG(WARNING, "%s", describe_row(r).c_str());
    else
      APP_LOG(NOTICE, "%s", describe_row(r).c_str());
  }
  c.last = std::move(r);
  if (!c.unpublished) {
    c.unpublished = true;
    unpublished_.push_back(c.name);
  }
  return true;
}

bool ConnectionStatus::refresh(ike::Daemon& ike, dp::SaInstaller* sas,
                               WallClock::time_point now) {
  bool changed = removed_;
  removed_ = false;
  std::vector<std::string> names = std::move(added_);
  added_.clear();
  auto more = ike.take_status_changes();
  names.insert(names.end(), std::make_move_iterator(more.begin()),
               std::make_move_iterator(more.end()));
  ++refreshes_;
  for (const std::string& name : names)
    if (auto it = by_name_.find(name); it != by_name_.end() && it->second->examined_in != refreshes_)
      changed |= examine(ike, *it->second, sas, false, now);
  if (sweep_left_ == 0 && now >= next_sweep_ && !ike_conns_.empty()) {
    sweep_left_ = ike_conns_.size();
    sweep_at_ = ike_conns_.begin();
    next_sweep_ = now + kTrafficEvery;
  }
  for (std::size_t n = 0; n < kSweepPerRefresh && sweep_left_ > 0; ++n, --sweep_left_) {
    if (sweep_at_ == ike_conns_.end()) sweep_at_ = ike_conns_.begin();
    if (sweep_at_ == ike_conns_.end()) {
      sweep_left_ = 0;
      break;
    }
    changed |= examine(ike, *sweep_at_++, sas, true, now);
  }
  return changed;
}

std::vector<ConnRow> ConnectionStatus::rows() const {
  std::vector<ConnRow> rows = static_rows_;
  for (const IkeConn& c : ike_conns_) rows.push_back(c.last);
  return rows;
}

void ConnectionStatus::publish(ConnTable& table) {
  RowChanges changes;
  changes.removed = std::move(removed_keys_);
  removed_keys_.clear();
  if (statics_unpublished_)
    for (std::size_t i = 0; i < static_rows_.size(); ++i)
      changes.rows.emplace_back(static_cast<RowKey>(i), static_rows_[i]);
  statics_unpublished_ = false;
  // A name whose connection went (or went and came back, not yet examined) finds no row to
  // publish: its key is among the removed ones, the new connection's row comes when examined.
  for (const std::string& name : unpublished_)
    if (auto it = by_name_.find(name); it != by_name_.end() && it->second->unpublished) {
      it->second->unpublished = false;
      changes.rows.emplace_back(it->second->key, it->second->last);
    }
  unpublished_.clear();
  // In key order: the new connections' rows go to the table's end in the order added.
  std::sort(changes.rows.begin(), changes.rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  if (!changes.empty()) table.apply(std::move(changes));
}

void ConnectionStatus::publish_all(ConnTable& table, const ike::Daemon* ike) const {
  RowChanges all;
  for (std::size_t i = 0; i < static_rows_.size(); ++i)
    all.rows.emplace_back(static_cast<RowKey>(i), static_rows_[i]);
  if (ike != nullptr)
    for (const IkeConn& c : ike_conns_) {
      ConnRow r = ike_row(*ike, c);
      carry_history(c, r);
      all.rows.emplace_back(c.key, std::move(r));
    }
  table.replace(std::move(all));
}

}  // namespace ipsecgw::app
