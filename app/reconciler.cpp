#include "app/reconciler.hpp"

#include "app/scan_steps.hpp"

#include <algorithm>

#include "app/logging.hpp"

namespace ipsecgw::app {

using Change = model::ConnectionChange;

const char* to_string(Action::Kind k) noexcept {
  switch (k) {
    case Action::Kind::kAdd: return "add";
    case Action::Kind::kRemove: return "remove";
    case Action::Kind::kUpdateInPlace: return "update in place";
    case Action::Kind::kRenegotiate: return "renegotiate";
    case Action::Kind::kDisable: return "disable";
    case Action::Kind::kEnable: return "enable";
  }
  return "?";
}

namespace {

// Whether an update changed more than the admin state.
bool changes_settings(const Change& c) {
  return c.sa_changed ||
         std::any_of(c.changed.begin(), c.changed.end(), [](const std::string& f) {
           return f != "admin_state_up" && f != "vpnservice.admin_state_up";
         });
}

void plan_update(const Change& c, std::vector<Action>& out) {
  using K = Action::Kind;
  const K settings = c.sa_changed ? K::kRenegotiate : K::kUpdateInPlace;
  if (c.was_enabled && !c.now_enabled) {
    // Down first: the new settings of a disabled connection negotiate nothing.
    out.push_back({K::kDisable, c.id, false});
    if (changes_settings(c)) out.push_back({settings, c.id, false});
  } else if (!c.was_enabled && c.now_enabled) {
    // The new settings first, so that the first negotiation uses them.
    if (changes_settings(c)) out.push_back({settings, c.id, false});
    out.push_back({K::kEnable, c.id, true});
  } else {
    out.push_back({settings, c.id, c.now_enabled});
  }
}

}  // namespace

std::vector<Action> plan(const std::vector<Change>& changes) {
  std::vector<Action> out;
  for (const Change& c : changes) {
    switch (c.kind) {
      case Change::Kind::kCreated:
        out.push_back({Action::Kind::kAdd, c.id, c.now_enabled});
        break;
      case Change::Kind::kDeleted:
        out.push_back({Action::Kind::kRemove, c.id, false});
        break;
      case Change::Kind::kUpdated: plan_update(c, out); break;
    }
  }
  return out;
}

const char* neutron_status(ike::ConnState s) noexcept {
  switch (s) {
    case ike::ConnState::kDown: return "DOWN";
    case ike::ConnState::kPending: return "PENDING_CREATE";
    case ike::ConnState::kActive: return "ACTIVE";
    case ike::ConnState::kError: return "ERROR";
  }
  return "ERROR";
}

void Reconciler::apply(const std::vector<Change>& changes, const model::State& state) {
  const model::StateLookup next(state);  // one pass; then a lookup per object, not a walk
  for (const Action& a : plan(changes)) {
    APP_LOG(INFO, "reconciler: connection %s: %s%s", a.id.c_str(), to_string(a.kind),
            a.kind == Action::Kind::kAdd ? (a.enabled ? " (enabled)" : " (disabled)") : "");
    switch (a.kind) {
      case Action::Kind::kAdd: add(next, a.id, a.enabled); break;
      case Action::Kind::kRemove: remove(a.id); break;
      case Action::Kind::kUpdateInPlace: apply_in_place(next, a.id); break;
      case Action::Kind::kRenegotiate: renegotiate(next, a.id); break;
      case Action::Kind::kDisable: set_admin_state(next, a.id, false); break;
      case Action::Kind::kEnable: set_admin_state(next, a.id, true); break;
    }
  }
}

std::string Reconciler::ike_name_for(const model::SiteConnection& c) const {
  if (c.name.empty()) return c.id;
  count_scan_steps();
  return ike_.has_connection(c.name) ? c.id : c.name;
}

void Reconciler::add(const model::StateLookup& next, const std::string& id, bool enabled) {
  const model::SiteConnection* c = next.connection(id);
  if (c == nullptr) return;
  Entry& e = entries_[id];
  if (e.conn_id == 0) e.conn_id = next_conn_id_++;
  e.enabled = enabled;
  e.error.clear();
  e.ike_name.clear();
  auto k = ike_connection_config(next, env_, *c, gw_);
  if (!k.ok()) {
    e.error = k.error();
    APP_LOG(ERR, "connection %s (%s): cannot be set up: %s", c->name.c_str(), id.c_str(),
            e.error.c_str());
    return;
  }
  k->name = ike_name_for(*c);
  k->id = e.conn_id;
  k->admin_state_up = enabled;
  const std::string name = k->name;
  const dp::Ipv4 peer = k->peer_addr;
  const auto sel = ike::selectors(*k);
  if (auto r = ike_.add_connection(std::move(*k)); !r.ok()) {
    e.error = r.error();
    APP_LOG(ERR, "connection %s (%s): IKE rejects it: %s", c->name.c_str(), id.c_str(),
            e.error.c_str());
    return;
  }
  e.ike_name = name;
  e.peer = peer;
  conns_.add_ike_connection(name, peer);
  if (!enabled) {
    // Disabled: no IKE, but its traffic is dropped (a trap the daemon does not answer for an
    // admin-down connection), never forwarded in the clear.
    install_drop_traps(e, sel);
  }
  APP_LOG(INFO, "connection %s (%s): IKEv1 with peer %s, %s", name.c_str(), id.c_str(),
          dp::format_ipv4(peer).c_str(), enabled ? "enabled" : "disabled (traffic dropped)");
}

void Reconciler::remove(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (!e.ike_name.empty()) {
    if (auto r = ike_.remove_connection(e.ike_name); !r.ok())
      APP_LOG(WARNING, "connection %s: %s", e.ike_name.c_str(), r.error().c_str());
    conns_.remove_ike_connection(e.ike_name);
  }
  remove_drop_traps(e);
  entries_.erase(it);
}

void Reconciler::install_drop_traps(Entry& e, const std::vector<ike::Selector>& sel) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < sel.size(); ++i) {
    if (auto r = installer_.install_trap(ike::trap_id(e.conn_id, i), sel[i].local, sel[i].peer);
        r.ok())
      n = i + 1;
    else
      APP_LOG(WARNING, "connection %s: no drop policy: %s", e.ike_name.c_str(),
              r.error().c_str());
  }
  if (n < e.drop_traps) remove_drop_traps(e, n);
  e.drop_traps = std::max(e.drop_traps, n);
}

void Reconciler::remove_drop_traps(Entry& e, std::size_t from) {
  for (std::size_t i = from; i < e.drop_traps; ++i)
    if (auto r = installer_.remove_trap(ike::trap_id(e.conn_id, i)); !r.ok())
      APP_LOG(WARNING, "connection %s: removing the drop policy: %s", e.ike_name.c_str(),
              r.error().c_str());
  e.drop_traps = std::min(e.drop_traps, from);
}

std::optional<ike::ConnectionConfig> Reconciler::config_for(const model::StateLookup& next,
                                                           const std::string& id) {
  const model::SiteConnection* c = next.connection(id);
  auto it = entries_.find(id);
  if (c == nullptr || it == entries_.end() || it->second.ike_name.empty()) return std::nullopt;
  Entry& e = it->second;
  auto k = ike_connection_config(next, env_, *c, gw_);
  if (!k.ok()) {
    e.error = k.error();
    APP_LOG(ERR, "connection %s (%s): cannot be set up: %s", c->name.c_str(), id.c_str(),
            e.error.c_str());
    return std::nullopt;
  }
  k->name = e.ike_name;  // fixed while the IKE connection exists
  k->id = e.conn_id;
  k->admin_state_up = e.enabled;
  return std::move(*k);
}

void Reconciler::readd(const model::StateLookup& next, const std::string& id) {
  auto it = entries_.find(id);
  const bool enabled = it != entries_.end() && it->second.enabled;
  remove(id);
  add(next, id, enabled);
}

// Name, description, dpd, mtu, initiator: the IKE daemon takes them without renegotiating
// (the MTU reaches the installed outbound SAs). The IKE name stays the one it was added with.
void Reconciler::apply_in_place(const model::StateLookup& next, const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (it->second.ike_name.empty()) return readd(next, id);  // refused before: try again
  auto k = config_for(next, id);
  if (!k) return;
  if (auto r = ike_.update_in_place(std::move(*k)); !r.ok()) {
    APP_LOG(WARNING, "connection %s (%s): %s; renegotiating", it->second.ike_name.c_str(),
            id.c_str(), r.error().c_str());
    renegotiate(next, id);
  }
}

// Policies, PSK, peer, identities or CIDRs changed: this connection alone negotiates new SAs
// before its old ones go (make-before-break); a disabled one's drop policy follows its
// selectors.
void Reconciler::renegotiate(const model::StateLookup& next, const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (e.ike_name.empty()) return readd(next, id);
  auto k = config_for(next, id);
  if (!k) return;
  const dp::Ipv4 peer = k->peer_addr;
  const auto sel = ike::selectors(*k);
  if (auto r = ike_.renegotiate(std::move(*k)); !r.ok()) {
    e.error = r.error();
    APP_LOG(ERR, "connection %s (%s): IKE rejects the change: %s", e.ike_name.c_str(),
            id.c_str(), e.error.c_str());
    return;
  }
  e.error.clear();
  if (peer != e.peer) {  // the status row shows the new peer
    conns_.remove_ike_connection(e.ike_name);
    conns_.add_ike_connection(e.ike_name, peer);
    e.peer = peer;
  }
  if (e.drop_traps > 0) install_drop_traps(e, sel);
}

// Disable: the drop policy is in place before the SAs go (Delete to the peer). Enable: the
// IKE daemon takes over the drop policy as its trap and negotiates.
void Reconciler::set_admin_state(const model::StateLookup& next, const std::string& id, bool up) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.enabled = up;
  if (e.ike_name.empty()) return readd(next, id);  // refused before: try again
  if (auto r = ike_.set_admin_state(e.ike_name, up); !r.ok()) {
    APP_LOG(WARNING, "connection %s: %s", e.ike_name.c_str(), r.error().c_str());
    return;
  }
  e.drop_traps = 0;  // same trap ids: the IKE connection's traps are now those policies
}

std::string Reconciler::status(const std::string& id) const { return row(id).state; }

ConnRow Reconciler::row(const std::string& id) const {
  ConnRow r;
  r.state = "DOWN";
  auto it = entries_.find(id);
  if (it == entries_.end()) return r;
  const Entry& e = it->second;
  if (!e.error.empty()) {
    r.state = "ERROR";
    r.reason = r.last_error = e.error;
    return r;
  }
  return conns_.current_row(ike_, e.ike_name);
}

void Reconciler::remove_all() {
  while (!entries_.empty()) remove(entries_.begin()->first);
}

}  // namespace ipsecgw::app
