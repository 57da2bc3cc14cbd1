// The reconciler: the last step of "request -> model -> diff -> per-connection action". On the
// control thread it turns model::diff's ConnectionChanges into operations on the IKE daemon,
// one connection at a time; the other connections are never touched.
//
// plan() (pure, unit-tested) decides the actions:
//   created                   -> add (enabled: IKE connection with its trap policy; disabled:
//                                a drop policy only, a trap no IKE answers)
//   deleted                   -> remove (Delete to the peer, SAs gone, then its policy)
//   updated, SA fields        -> renegotiate (make-before-break: new SAs, then the old ones go)
//   updated, other fields     -> update in place (name, description, dpd, mtu, initiator: no
//                                renegotiation, SPIs kept)
//   disabled                  -> disable (drop policy kept, Delete to the peer, SAs gone),
//                                then the update of its other fields, if any
//   enabled                   -> the update of its other fields, if any, then enable
// A connection is identified by its model id (UUID); its IKE daemon name is its model name when
// that is non-empty and unused, else the id, fixed while the IKE connection exists.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "app/connections.hpp"
#include "app/ike_config.hpp"
#include "app/model/diff.hpp"
#include "app/model/lookup.hpp"
#include "app/model/model.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "ike/daemon.hpp"

namespace ipsecgw::app {

struct Action {
  enum class Kind : std::uint8_t {
    kAdd, kRemove, kUpdateInPlace, kRenegotiate, kDisable, kEnable
  };
  Kind kind = Kind::kAdd;
  std::string id;        // the connection's model id
  bool enabled = false;  // the admin state after the action (kAdd: negotiate or drop only)
  bool operator==(const Action&) const = default;
};
const char* to_string(Action::Kind k) noexcept;

// The actions for a diff, in order; each names one connection of the diff.
std::vector<Action> plan(const std::vector<model::ConnectionChange>& changes);

// Neutron's status of an IKE state: DOWN, PENDING_CREATE, ACTIVE, ERROR.
const char* neutron_status(ike::ConnState s) noexcept;

class Reconciler {
 public:
  // first_conn_id: the data plane's conn_id of the first connection added (those below are
  // the configuration file's static ones).
  Reconciler(ike::Daemon& ike, dp::SaInstaller& installer, ConnectionStatus& conns,
             model::Environment env, IkeGatewayParams gw, std::uint32_t first_conn_id)
      : ike_(ike), installer_(installer), conns_(conns), env_(std::move(env)), gw_(gw),
        next_conn_id_(first_conn_id) {}

  // Applies the changes between two states (the API's on_change hook; at start, diff of the
  // empty state and the loaded one).
  void apply(const std::vector<model::ConnectionChange>& changes, const model::State& next);
  // Neutron status of a connection: ERROR when IKE refused it, else neutron_status_of the IKE
  // daemon's detail (DOWN when disabled).
  std::string status(const std::string& id) const;
  // The connection's status row now (ConnectionStatus::current_row): state, reason and detail.
  ConnRow row(const std::string& id) const;
  // Every connection removed (Delete sent for each SA): the clean shutdown.
  void remove_all();

 private:
  struct Entry {
    std::string ike_name;  // "" when IKE refused the connection
    std::uint32_t conn_id = 0;
    dp::Ipv4 peer = 0;  // the peer address its status row shows
    bool enabled = false;
    // A disabled connection's drop policies (one per subnet pair, ike::trap_id), installed
    // by us: pairs 0..drop_traps-1.
    std::size_t drop_traps = 0;
    std::string error;
  };
  void add(const model::StateLookup& next, const std::string& id, bool enabled);
  void remove(const std::string& id);
  void apply_in_place(const model::StateLookup& next, const std::string& id);
  void renegotiate(const model::StateLookup& next, const std::string& id);
  void set_admin_state(const model::StateLookup& next, const std::string& id, bool up);
  // The IKE configuration of an added connection, under its IKE name and conn_id; empty (and
  // false) when it has none (IKE refused it) or it cannot be built.
  std::optional<ike::ConnectionConfig> config_for(const model::StateLookup& next, const std::string& id);
  // Remove and add again: for a connection IKE refused, which has nothing to update.
  void readd(const model::StateLookup& next, const std::string& id);
  std::string ike_name_for(const model::SiteConnection& c) const;
  // The drop policies of a disabled connection follow its subnet pairs.
  void install_drop_traps(Entry& e, const std::vector<ike::Selector>& sel);
  void remove_drop_traps(Entry& e, std::size_t from = 0);

  ike::Daemon& ike_;
  dp::SaInstaller& installer_;
  ConnectionStatus& conns_;
  model::Environment env_;
  IkeGatewayParams gw_;
  std::uint32_t next_conn_id_;
  std::map<std::string, Entry> entries_;  // by model id
};

}  // namespace ipsecgw::app
