// The site connections' status as the process shows it: in the log when it changes (one line
// per change, with the reason), in the exit report, through /ipsecgw/connections
// (app/telemetry.cpp) and in the API's ipsec-site-connection (app/api). Static connections
// (manual_keys) show state STATIC; IKE connections show Neutron's status (DOWN,
// PENDING_CREATE, ACTIVE, ERROR) mapped from what ike::Daemon::detail reports
// (neutron_status_of), with the detail of their phases, SAs and traffic.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
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

// A row's key in the telemetry table (app/conn_table.hpp), unique where names need not be: the
// static rows' are their index, each IKE connection's is given when it is added, after every
// earlier one (from kFirstIkeKey). Ordered by key, the rows are in the order of rows().
using RowKey = std::uint64_t;
class ConnTable;

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

  // Reads the status of the IKE connections that may have changed (ike::Daemon::
  // take_status_changes, and those added since), logs each one whose status changed since the
  // last call (a new connection: its first status) and returns true when any row changed or
  // went; publish() then writes the changed rows to telemetry, rows() gives them all. Besides,
  // a sweep re-reads at most kSweepPerRefresh other rows per call, in order, starting over at
  // most once a second: with `sas` it reads their traffic counters (each connection's at most
  // once a second, less often with more than kSweepPerRefresh * the refreshes per second), and
  // it catches any change not reported.
  // The rows examined per call are thus the changed ones plus kSweepPerRefresh, whatever the
  // number of idle connections.
  bool refresh(ike::Daemon& ike, dp::SaInstaller* sas = nullptr,
               WallClock::time_point now = WallClock::now());
  static constexpr std::size_t kSweepPerRefresh = 50;
  // Rows examined (read from the daemon) by refresh() so far: for tests of the work per tick.
  std::uint64_t rows_examined() const noexcept { return rows_examined_; }
  // The static rows, then the IKE rows as of the last refresh().
  std::vector<ConnRow> rows() const;

  // Writes into `table` the rows changed since the last publish(): those refresh() found
  // changed (a new connection's first row among them) and the static rows the first time; the
  // rows of the connections removed leave it. O(rows changed) (plus O(rows) for a removal,
  // ConnTable::apply): the rows that did not change are not copied.
  void publish(ConnTable& table);
  // Fills `table` anew with every row as `ike` reports it now (current_rows): at start, before
  // the first refresh(). O(rows).
  void publish_all(ConnTable& table, const ike::Daemon* ike) const;
  static constexpr RowKey kFirstIkeKey = RowKey{1} << 32;

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
    std::uint64_t examined_in = 0;  // the refresh() that last read it (each once per call)
    RowKey key = 0;
    bool unpublished = false;  // `last` changed since the last publish() (named in unpublished_)
  };
  static ConnRow ike_row(const ike::Daemon& ike, const IkeConn& c);
  // Times and traffic carried from the previous row into `r` (computed now).
  static void carry_history(const IkeConn& c, ConnRow& r);
  void note_transitions(IkeConn& c, ConnRow& r, WallClock::time_point now) const;
  static void read_traffic(IkeConn& c, ConnRow& r, dp::SaInstaller& sas);
  // Reads one row from the daemon (traffic too with `sas`); true when it changed.
  bool examine(const ike::Daemon& ike, IkeConn& c, dp::SaInstaller* sas, bool traffic,
               WallClock::time_point now);
  const IkeConn* find(const std::string& name) const;

  std::vector<ConnRow> static_rows_;
  std::list<IkeConn> ike_conns_;  // in the order added
  std::unordered_map<std::string, std::list<IkeConn>::iterator> by_name_;
  std::vector<std::string> added_;  // since the last refresh(): examined by the next one
  bool removed_ = false;  // a connection went since the last refresh()
  // For publish(): the rows changed since the last one (IKE connections by name, each once;
  // the static rows all at once) and the keys of the rows gone.
  std::vector<std::string> unpublished_;
  bool statics_unpublished_ = false;
  std::vector<RowKey> removed_keys_;
  RowKey next_key_ = kFirstIkeKey;
  // The sweep: the next row, the rows left in this round, when the next round may start.
  std::list<IkeConn>::iterator sweep_at_ = ike_conns_.end();
  std::size_t sweep_left_ = 0;
  WallClock::time_point next_sweep_{};
  std::uint64_t rows_examined_ = 0;
  std::uint64_t refreshes_ = 0;
};

}  // namespace ipsecgw::app
