// Daemon::detail: a connection's status with the state of its IKE SA's phases, the
// algorithms, and the peer's endpoint as we reach it now.
#include <algorithm>
#include <iterator>
#include <string>

#include "ike/daemon.hpp"

namespace ipsecgw::ike {
namespace {

const char* phase1_name(IkeSa::State s, bool established) {
  using S = IkeSa::State;
  if (established) return "ESTABLISHED";
  switch (s) {
    case S::kInit: return "NONE";
    case S::kMm1Sent: return "MM1_SENT";
    case S::kMm2Sent: return "MM2_SENT";
    case S::kMm3Sent: return "MM3_SENT";
    case S::kMm4Sent: return "MM4_SENT";
    case S::kMm5Sent: return "MM5_SENT";
    case S::kFailed: return "FAILED";
    default: return "ESTABLISHED";
  }
}

std::string ike_algorithms(const IkePolicy& p) {
  return std::string(crypto::to_string(p.cipher)) + "/" + std::string(crypto::to_string(p.hash)) +
         "/" + std::string(crypto::to_string(p.group));
}

std::string esp_algorithms(const IpsecPolicy& p) {
  return std::string(crypto::to_string(p.cipher)) + "/" + std::string(crypto::to_string(p.integ)) +
         "/" + std::string(crypto::to_string(p.pfs));
}

void describe_sa(const IkeSa& sa, std::uint32_t conn_id, ConnectionDetail& d) {
  d.phase1 = phase1_name(sa.state(), sa.established());
  d.phase2 = sa.failed() ? "NONE" : sa.connection_phase2(conn_id);
  d.peer = sa.remote();
  d.nat_detected = sa.nat_detected();
}

}  // namespace

bool is_tunnel_end_reason(const std::string& reason) {
  return reason == kReasonDeadPeer || reason == kReasonDeletedByPeer ||
         reason == kReasonIsakmpExpired;
}

ConnectionDetail Daemon::detail(const std::string& name) const {
  ConnectionDetail d;
  d.status = status(name);
  const Conn* c = find_conn(name);
  if (c == nullptr) return d;
  const Peer& p = *c->peer;
  const std::uint32_t id = c->cfg.id;
  d.admin_state_up = c->cfg.admin_state_up;
  d.ike_algorithms = ike_algorithms(c->cfg.ike);
  d.esp_algorithms = esp_algorithms(c->cfg.ipsec);
  d.peer = {c->cfg.peer_addr, 500};
  d.tunnel_ended = d.status.state == ConnState::kError && is_tunnel_end_reason(d.status.reason);
  if (!c->cfg.admin_state_up) return d;
  // The ISAKMP SA of the peer with this connection's CHILD SAs installed (newest first), else
  // the newest one still negotiating, else a half-open responder negotiation with the peer.
  const IkeSa* pick = nullptr;
  for (auto it = p.sas.rbegin(); it != p.sas.rend() && pick == nullptr; ++it)
    if ((*it)->state() == IkeSa::State::kActive && (*it)->connection_active(id)) pick = it->get();
  for (auto it = p.sas.rbegin(); it != p.sas.rend() && pick == nullptr; ++it)
    if (!(*it)->failed() && !(*it)->done()) pick = it->get();
  for (auto it = p.half_open.rbegin(); it != p.half_open.rend() && pick == nullptr; ++it)
    if (!(*it)->failed()) pick = it->get();
  if (pick != nullptr) describe_sa(*pick, id, d);
  return d;
}

ConnectionStatus Daemon::status(const std::string& name) const {
  ConnectionStatus st;
  const Conn* c = find_conn(name);
  if (c == nullptr || !c->cfg.admin_state_up) return st;
  const Peer& p = *c->peer;
  const std::uint32_t id = c->cfg.id;
  for (auto it = p.sas.rbegin(); it != p.sas.rend(); ++it) {  // newest first
    const auto& sa = *it;
    if (sa->state() == IkeSa::State::kActive && sa->connection_active(id)) {
      st.state = ConnState::kActive;
      st.child = sa->child_of(trap_id(id, 0));
      return st;
    }
  }
  for (auto it = p.sas.rbegin(); it != p.sas.rend(); ++it) {
    const auto& sa = *it;
    if (sa->failed() || sa->done()) continue;
    if (st.state == ConnState::kDown && sa->has_connection(id)) {
      // The ISAKMP SA is up but a Quick Mode of this connection failed (its pair is tried
      // again later; the peer's other connections carry on).
      if (auto why = sa->connection_failure(id); !why.empty()) {
        st.state = ConnState::kError;
        st.reason = why;
        return st;
      }
    }
    st.state = ConnState::kPending;
  }
  if (!p.half_open.empty()) st.state = ConnState::kPending;
  if (st.state == ConnState::kDown && !p.last_error.empty()) {
    st.state = ConnState::kError;
    st.reason = p.last_error;
  }
  return st;
}

bool Daemon::has_connection(const std::string& name) const { return find_conn(name) != nullptr; }

void Daemon::mark_status(Peer& p) {
  if (p.status_marked) return;
  p.status_marked = true;
  status_marks_.push_back(p.serial);
}

// Half-open negotiations live in their peer: the datagrams and ticks that change them mark the
// peer (ike/daemon_half_open.cpp), so the work here is that of the marks alone.
std::vector<std::string> Daemon::take_status_changes() {
  std::vector<std::string> names;
  for (std::uint64_t serial : status_marks_) {
    auto it = peers_by_serial_.find(serial);
    if (it == peers_by_serial_.end()) continue;  // erased, with its connections
    it->second->status_marked = false;
    for (const Conn* c : it->second->conns) names.push_back(c->cfg.name);
  }
  status_marks_.clear();
  return names;
}

}  // namespace ipsecgw::ike
