#include "app/connections.hpp"

#include <cstdio>
#include <sstream>

#include "app/logging.hpp"

namespace ipsecgw::app {

std::string describe_row(const ConnRow& r) {
  std::ostringstream o;
  o << "connection " << r.name << " (peer " << r.peer << "): " << r.state;
  if (!r.reason.empty()) o << " (" << r.reason << ")";
  if (r.spi_in != 0 || r.spi_out != 0) {
    char spis[64];
    std::snprintf(spis, sizeof spis, " spi_in 0x%08x spi_out 0x%08x", r.spi_in, r.spi_out);
    o << spis << (r.udp_encap ? " esp-in-udp" : " esp");
  }
  return o.str();
}

void ConnectionStatus::add_static_connections(const Config& cfg) {
  for (const auto& c : cfg.ipsec_site_connections)
    if (c.manual_keys && c.admin_state_up)
      static_rows_.push_back({c.name, dp::format_ipv4(c.peer_address), "STATIC", "manual keys",
                              c.manual_keys->inbound.spi, c.manual_keys->outbound.spi,
                              c.manual_keys->udp_encap});
}

void ConnectionStatus::add_ike_connection(std::string name, dp::Ipv4 peer) {
  ike_conns_.push_back({std::move(name), peer});
  last_ike_rows_.emplace_back();
}

void ConnectionStatus::remove_ike_connection(const std::string& name) {
  for (std::size_t i = 0; i < ike_conns_.size(); ++i) {
    if (ike_conns_[i].name != name) continue;
    ike_conns_.erase(ike_conns_.begin() + static_cast<std::ptrdiff_t>(i));
    last_ike_rows_.erase(last_ike_rows_.begin() + static_cast<std::ptrdiff_t>(i));
    removed_ = true;
    return;
  }
}

ConnRow ConnectionStatus::ike_row(const ike::Daemon& ike, const IkeConn& c) {
  const auto st = ike.status(c.name);
  ConnRow r{c.name, dp::format_ipv4(c.peer), ike::to_string(st.state), st.reason};
  if (st.child && st.state == ike::ConnState::kActive) {
    r.spi_in = st.child->spi_in;
    r.spi_out = st.child->spi_out;
    r.udp_encap = st.child->udp_encap;
  }
  return r;
}

std::vector<ConnRow> ConnectionStatus::current_rows(const ike::Daemon* ike) const {
  std::vector<ConnRow> rows = static_rows_;
  if (ike != nullptr)
    for (const IkeConn& c : ike_conns_) rows.push_back(ike_row(*ike, c));
  return rows;
}

bool ConnectionStatus::refresh(const ike::Daemon& ike) {
  bool changed = removed_;
  removed_ = false;
  for (std::size_t i = 0; i < ike_conns_.size(); ++i) {
    ConnRow r = ike_row(ike, ike_conns_[i]);
    if (r == last_ike_rows_[i]) continue;
    changed = true;
    if (r.state == "ERROR")
      APP_LOG(WARNING, "%s", describe_row(r).c_str());
    else
      APP_LOG(NOTICE, "%s", describe_row(r).c_str());
    last_ike_rows_[i] = std::move(r);
  }
  return changed;
}

std::vector<ConnRow> ConnectionStatus::rows() const {
  std::vector<ConnRow> rows = static_rows_;
  rows.insert(rows.end(), last_ike_rows_.begin(), last_ike_rows_.end());
  return rows;
}

}  // namespace ipsecgw::app
