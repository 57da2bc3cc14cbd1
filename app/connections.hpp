// The site connections' status as the process shows it: in the log when it changes, in the
// exit report, and through /ipsecgw/connections (app/telemetry.cpp). Static connections
// (manual_keys) show state STATIC; IKE connections show what ike::Daemon::status reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "ike/daemon.hpp"

namespace ipsecgw::app {

struct ConnRow {
  std::string name;
  std::string peer;
  std::string state;  // DOWN / PENDING / ACTIVE / ERROR, or STATIC (manual keys)
  std::string reason;
  std::uint32_t spi_in = 0, spi_out = 0;
  bool udp_encap = false;
  friend bool operator==(const ConnRow&, const ConnRow&) = default;
};

// "connection NAME (peer ADDR): STATE (reason) spi_in 0x... spi_out 0x... esp"
std::string describe_row(const ConnRow& r);

class ConnectionStatus {
 public:
  // One STATIC row per admin-up connection with manual_keys.
  void add_static_connections(const Config& cfg);
  // An IKE connection, shown by its name and peer address.
  void add_ike_connection(std::string name, dp::Ipv4 peer);
  // Forgets an IKE connection (removed by the reconciler); the next refresh() reports a change.
  void remove_ike_connection(const std::string& name);
  bool has_static_connections() const noexcept { return !static_rows_.empty(); }

  // The static rows, then each IKE connection as `ike` reports it now (none without `ike`).
  std::vector<ConnRow> current_rows(const ike::Daemon* ike) const;

  // Reads the IKE connections' status, logs each one that changed since the last call (the
  // first call logs all) and returns true when any did; rows() then gives the new rows.
  bool refresh(const ike::Daemon& ike);
  // The static rows, then the IKE rows as of the last refresh().
  std::vector<ConnRow> rows() const;

 private:
  struct IkeConn {
    std::string name;
    dp::Ipv4 peer;
  };
  static ConnRow ike_row(const ike::Daemon& ike, const IkeConn& c);

  std::vector<ConnRow> static_rows_;
  std::vector<IkeConn> ike_conns_;
  std::vector<ConnRow> last_ike_rows_;  // one per ike_conns_ entry
  bool removed_ = false;                // a connection went since the last refresh()
};

}  // namespace ipsecgw::app
