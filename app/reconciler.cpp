#include "app/reconciler.hpp"

#include "app/logging.hpp"

namespace ipsecgw::app {

using Change = model::ConnectionChange;

const char* to_string(Action::Kind k) noexcept {
  switch (k) {
    case Action::Kind::kAdd: return "add";
    case Action::Kind::kRemove: return "remove";
    case Action::Kind::kUpdateInPlace: return "update in place";
  }
  return "?";
}

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
      case Change::Kind::kUpdated:
        if (c.was_enabled != c.now_enabled || c.sa_changed) {
          // Disable/enable, or the negotiated SAs change (a disabled connection's drop policy
          // may have new selectors): the old one goes, the new one comes.
          out.push_back({Action::Kind::kRemove, c.id, false});
          out.push_back({Action::Kind::kAdd, c.id, c.now_enabled});
        } else {
          out.push_back({Action::Kind::kUpdateInPlace, c.id, c.now_enabled});
        }
        break;
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

void Reconciler::apply(const std::vector<Change>& changes, const model::State& next) {
  const auto actions = plan(changes);
  for (std::size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    APP_LOG(INFO, "reconciler: connection %s: %s%s", a.id.c_str(), to_string(a.kind),
            a.kind == Action::Kind::kAdd ? (a.enabled ? " (enabled)" : " (disabled)") : "");
    switch (a.kind) {
      case Action::Kind::kAdd: add(next, a.id, a.enabled); break;
      case Action::Kind::kRemove: {
        // A remove followed by an add of the same connection keeps its conn_id, so the new
        // trap replaces the old policy instead of leaving a gap.
        const bool readd = i + 1 < actions.size() && actions[i + 1].id == a.id &&
                           actions[i + 1].kind == Action::Kind::kAdd;
        const std::uint32_t conn_id = entries_.count(a.id) ? entries_[a.id].conn_id : 0;
        remove(a.id);
        if (readd && conn_id != 0) entries_[a.id].conn_id = conn_id;  // picked up by add()
        break;
      }
      case Action::Kind::kUpdateInPlace: apply_in_place(next, a.id); break;
    }
  }
}

std::string Reconciler::ike_name_for(const model::SiteConnection& c) const {
  if (c.name.empty()) return c.id;
  for (const auto& n : ike_.connection_names())
    if (n == c.name) return c.id;
  return c.name;
}

void Reconciler::add(const model::State& next, const std::string& id, bool enabled) {
  const model::SiteConnection* c = next.connection(id);
  if (c == nullptr) return;
  Entry& e = entries_[id];  // may hold the conn_id of the connection just removed
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
  const dp::Ipv4Prefix local = k->local_subnet, remote = k->peer_subnet;
  if (auto r = ike_.add_connection(std::move(*k)); !r.ok()) {
    e.error = r.error();
    APP_LOG(ERR, "connection %s (%s): IKE rejects it: %s", c->name.c_str(), id.c_str(),
            e.error.c_str());
    return;
  }
  e.ike_name = name;
  conns_.add_ike_connection(name, peer);
  if (!enabled) {
    // Disabled: no IKE, but its traffic is dropped (a trap the daemon does not answer for an
    // admin-down connection), never forwarded in the clear.
    if (auto r = installer_.install_trap(e.conn_id, local, remote); r.ok())
      e.drop_trap = true;
    else
      APP_LOG(WARNING, "connection %s: no drop policy: %s", name.c_str(), r.error().c_str());
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
  if (e.drop_trap)
    if (auto r = installer_.remove_trap(e.conn_id); !r.ok())
      APP_LOG(WARNING, "connection %s: removing the drop policy: %s", id.c_str(),
              r.error().c_str());
  entries_.erase(it);
}

// Name, description, dpd, mtu, initiator: the IKE daemon has no way yet to change a running
// connection's settings, and renegotiating for them is what must not happen. They are kept in
// the model (the API shows them) and take effect when the connection is next added (restart,
// disable/enable, or an SA-changing update). The IKE name stays the one it was added with.
void Reconciler::apply_in_place(const model::State& next, const std::string& id) {
  const model::SiteConnection* c = next.connection(id);
  auto it = entries_.find(id);
  if (c == nullptr || it == entries_.end()) return;
  APP_LOG(NOTICE,
          "connection %s (%s): changed without renegotiation; dpd/mtu/initiator changes apply "
          "at its next setup",
          it->second.ike_name.c_str(), id.c_str());
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
