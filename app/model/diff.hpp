// diff(old, new): what a change of the desired state means for each site connection. This is
// what the reconciler consumes: it turns each ConnectionChange into IKE/SA operations on that
// connection only. Pure function, no I/O.
//
// A connection is compared through everything it resolves to: its ike and ipsec policies'
// contents, its endpoint groups' CIDRs, its vpnservice's admin state. So editing a policy that
// two connections use yields an update of exactly those two, with sa_changed set.
#pragma once

#include <string>
#include <vector>

#include "app/model/model.hpp"

namespace ipsecgw::model {

struct ConnectionChange {
  enum class Kind : std::uint8_t { kCreated, kDeleted, kUpdated };
  Kind kind = Kind::kUpdated;
  std::string id;
  std::string name;
  // Effective admin state before/after: the connection's and its vpnservice's admin_state_up.
  // kCreated: was_enabled is false; kDeleted: now_enabled is false.
  bool was_enabled = false;
  bool now_enabled = false;
  // kUpdated: a field the negotiated SAs depend on changed (ike/ipsec policy contents, psk,
  // peer_address, peer_id, local_id, local or peer CIDRs): the tunnel must be renegotiated.
  // False: only fields applied in place changed (name, description, dpd, mtu, initiator, ...).
  bool sa_changed = false;
  // kUpdated: the changed fields, e.g. "psk", "ikepolicy.lifetime", "dpd", "admin_state_up",
  // "vpnservice.admin_state_up", "peer_cidrs", "local_cidrs".
  std::vector<std::string> changed;

  bool operator==(const ConnectionChange&) const = default;
};

// Connections in the order of `next` (updated and created), then the deleted ones in the order
// of `prev`. A connection that did not change at all does not appear.
std::vector<ConnectionChange> diff(const State& prev, const State& next, const Environment& env);

const char* to_string(ConnectionChange::Kind k) noexcept;

}  // namespace ipsecgw::model
