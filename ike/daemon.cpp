#include "ike/daemon.hpp"

#include "ike/log.hpp"

namespace ipsecgw::ike {

const char* to_string(ConnState s) {
  switch (s) {
    case ConnState::kDown: return "DOWN";
    case ConnState::kPending: return "PENDING";
    case ConnState::kActive: return "ACTIVE";
    case ConnState::kError: return "ERROR";
  }
  return "?";
}

Daemon::Daemon(dp::DatagramSender& sender, dp::SaInstaller& installer, const Clock& clock)
    : ctx_{&sender, &installer, &clock} {}

Daemon::~Daemon() = default;

Result<void> Daemon::add_connection(ConnectionConfig cfg) {
  if (auto r = validate(cfg); !r) return r;
  if (find_conn(cfg.name) != nullptr) return make_error(cfg.name + ": duplicate connection name");
  for (const auto& c : conns_)
    if (c->cfg.peer_addr == cfg.peer_addr)
      return make_error(cfg.name + ": peer_addr already used by " + c->cfg.name +
                        " (the PSK is chosen by peer address)");
  auto c = std::make_unique<Conn>();
  c->cfg = std::move(cfg);
  conns_.push_back(std::move(c));
  return {};
}

Daemon::Conn* Daemon::find_conn(const std::string& name) const {
  for (const auto& c : conns_)
    if (c->cfg.name == name) return c.get();
  return nullptr;
}

std::vector<std::string> Daemon::connection_names() const {
  std::vector<std::string> v;
  for (const auto& c : conns_) v.push_back(c->cfg.name);
  return v;
}

void Daemon::start(Conn& c) {
  auto sa = std::make_unique<IkeSa>(Role::kInitiator, c.cfg, ctx_,
                                    dp::UdpEndpoint{c.cfg.local_addr, 500},
                                    dp::UdpEndpoint{c.cfg.peer_addr, 500});
  IkeSa* p = sa.get();
  c.sas.push_back(std::move(sa));
  p->start();
}

Result<void> Daemon::initiate(const std::string& name) {
  Conn* c = find_conn(name);
  if (c == nullptr) return make_error("no connection named " + name);
  if (!c->cfg.admin_state_up) return make_error(name + ": admin state down");
  start(*c);
  return {};
}

void Daemon::reap(Conn& c) {
  for (auto it = c.sas.begin(); it != c.sas.end();) {
    if ((*it)->failed()) {
      c.last_error = (*it)->failure();
      c.retry_at = ctx_.clock->now() + kRetryAfterFailure;
      if ((*it)->dead_peer()) {
        if (c.cfg.dpd.action == DpdAction::kRestart) {
          log(LogLevel::kInfo, c.cfg.name + ": DPD action restart: initiating again");
          c.restart_now = true;
        } else {
          c.retry_at = Millis::max();  // hold: no automatic re-initiation
        }
      }
      (*it)->teardown(false);
      it = c.sas.erase(it);
    } else {
      ++it;
    }
  }
}

void Daemon::on_datagram(const dp::DatagramView& d) {
  auto h = parse_header(d.payload);
  if (!h) {
    log(LogLevel::kDebug, "dropping datagram from " + dp::format_ipv4(d.remote.addr) + ": " +
                              h.error());
    return;
  }
  static const Cookie kZero{};
  for (auto& c : conns_) {
    for (auto& sa : c->sas) {
      if (sa->icookie() != h->icookie) continue;
      if (sa->rcookie() != kZero && h->rcookie != kZero && sa->rcookie() != h->rcookie) continue;
      if (sa->role() == Role::kInitiator && sa->rcookie() == kZero && h->rcookie == kZero &&
          h->exchange == static_cast<std::uint8_t>(ExchangeType::kIdentityProtection))
        continue;  // our own MM1 reflected back: not for us
      sa->handle(d, *h);
      reap(*c);
      return;
    }
  }
  // A new Main Mode from a configured peer (RFC 2409 §5: MM1 has a zero responder cookie).
  if (h->exchange != static_cast<std::uint8_t>(ExchangeType::kIdentityProtection) ||
      h->rcookie != kZero || (h->flags & kFlagEncryption) || h->message_id != 0) {
    log(LogLevel::kDebug, "no IKE SA for " + hex(h->icookie) + "_" + hex(h->rcookie));
    return;
  }
  for (auto& c : conns_) {
    if (c->cfg.peer_addr != d.remote.addr || !c->cfg.admin_state_up) continue;
    auto sa = std::make_unique<IkeSa>(Role::kResponder, c->cfg, ctx_, d.local, d.remote);
    IkeSa* p = sa.get();
    c->sas.push_back(std::move(sa));
    p->handle(d, *h);
    reap(*c);
    return;
  }
  log(LogLevel::kInfo, "main mode from unknown peer " + dp::format_ipv4(d.remote.addr) +
                           " ignored");
}

void Daemon::tick() {
  const Millis now = ctx_.clock->now();
  for (auto& c : conns_) {
    for (auto& sa : c->sas) sa->tick(now);
    reap(*c);
    if (c->restart_now) {
      c->restart_now = false;
      if (c->cfg.admin_state_up && c->sas.empty()) start(*c);
      continue;
    }
    if (c->cfg.admin_state_up && c->cfg.initiator == InitiatorMode::kBidirectional &&
        c->sas.empty() && now >= c->retry_at)
      start(*c);
  }
}

ConnectionStatus Daemon::status(const std::string& name) const {
  ConnectionStatus st;
  const Conn* c = find_conn(name);
  if (c == nullptr) return st;
  for (const auto& sa : c->sas) {
    if (sa->state() == IkeSa::State::kActive) {
      st.state = ConnState::kActive;
      st.child = sa->child();
      return st;
    }
    if (!sa->failed()) st.state = ConnState::kPending;
  }
  if (st.state == ConnState::kDown && !c->last_error.empty()) {
    st.state = ConnState::kError;
    st.reason = c->last_error;
  }
  return st;
}

}  // namespace ipsecgw::ike
