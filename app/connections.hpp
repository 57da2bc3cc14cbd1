// The site connections' status as the process shows it: in the log when it changes (one line
// per change, with the reason), in the exit report, through /ipsecgw/connections
// (app/telemetry.cpp) and in the API's ipsec-site-connection (app/api). Static connections
// (manual_keys) show state STATIC; IKE connections show Neutron's status (DOWN,
// PENDING_CREATE, ACTIVE, ERROR) mapped from what ike::Daemon::detail reports
// (neutron_status_of), with the detail of their phases, SAs and traffic.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "ike/daemon.hpp"

namespace ipsecgw::app {

using WallClock = std::chrono::system_clock;

struct ConnRow {
  std::string name;
  std::string peer;
  std::string state;  // DOWN / PENDING_CREATE / ACTIVE / ERROR, or STATIC (manual keys)
  std::string reason;
  std::uint32_t spi_in = 0, spi_out = 0;
  bool udp_encap = false;
  // Detail (IKE connections; ike::ConnectionDetail).
  std::string phase1, phase2;  // "NONE", "MM3_SENT", "ESTABLISHED"; "QM1_SENT", "INSTALLED"
  std::string ike_algorithms, esp_algorithms;
  std::uint16_t peer_port = 0;  // the peer's IKE port as we reach it now (after NAT)
  // The last ERROR reason (or the reason a tunnel ended: dead peer, peer's Delete) and when,
  // kept after the connection recovers; times are ISO 8601 UTC, "" = never.
  std::string last_error, last_error_at;
  std::string last_rekey_at;  // the current SA pair replaced an earlier one at this time
  // ESP traffic since the connection was added (inner bytes), the SA pairs it had summed.
  std::uint64_t in_packets = 0, in_bytes = 0, out_packets = 0, out_bytes = 0;
  friend bool operator==(const ConnRow&, const ConnRow&) = default;
};

// What a status log line says changed: state, reason, SPIs, encapsulation, peer port.
bool same_status(const ConnRow& a, const ConnRow& b);

// "connection NAME (peer ADDR): STATE (reason) spi_in 0x... spi_out 0x... esp port N ..."
std::string describe_row(const ConnRow& r);

// Neutron's status of an IKE connection and its reason:
//   admin down                          -> DOWN "admin_state_up false"
//   an IPsec SA pair installed          -> ACTIVE
//   a negotiation in progress           -> PENDING_CREATE "IKE negotiation in progress"
//   a tunnel ended (dead peer, Delete)  -> DOWN with that reason
//   a negotiation failed                -> ERROR with the reason (wrong PSK, no proposal ...)
//   nothing yet                         -> DOWN
struct NeutronStatus {
  std::string state, reason;
};
NeutronStatus neutron_status_of(const ike::ConnectionDetail& d);

// ISO 8601 UTC, seconds: "2026-12-02T09:00:00Z".
std::string iso8601(WallClock::time_point t);

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
  // One IKE connection as `ike` reports it now, with the times and traffic of the last
  // refresh(); a row with only the name when it is not known.
  ConnRow current_row(const ike::Daemon& ike, const std::string& name) const;

  // Reads the IKE connections' status, logs each one whose status changed since the last call
  // (the first call logs all) and returns true when any row changed; rows() then gives the new
  // rows. With `sas`, the traffic counters of each connection's SAs are read at most once a
  // second (at `now`).
  bool refresh(const ike::Daemon& ike, dp::SaInstaller* sas = nullptr,
               WallClock::time_point now = WallClock::now());
  // The static rows, then the IKE rows as of the last refresh().
  std::vector<ConnRow> rows() const;

 private:
  struct Traffic {  // of the SA pairs before the current one, and the current one's last read
    std::uint64_t in_packets = 0, in_bytes = 0, out_packets = 0, out_bytes = 0;
  };
  struct IkeConn {
    std::string name;
    dp::Ipv4 peer;
    ConnRow last;     // as of the last refresh()
    Traffic before;   // the replaced SA pairs' totals
    Traffic current;  // the current pair as last read
  };
  static ConnRow ike_row(const ike::Daemon& ike, const IkeConn& c);
  // Times and traffic carried from the previous row into `r` (computed now).
  static void carry_history(const IkeConn& c, ConnRow& r);
  void note_transitions(IkeConn& c, ConnRow& r, WallClock::time_point now) const;
  static void read_traffic(IkeConn& c, ConnRow& r, dp::SaInstaller& sas);

  std::vector<ConnRow> static_rows_;
  std::vector<IkeConn> ike_conns_;
  bool removed_ = false;  // a connection went since the last refresh()
  WallClock::time_point next_traffic_{};
};

}  // namespace ipsecgw::app
