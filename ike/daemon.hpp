// The IKE daemon: owns the configured site connections and their IKE SAs, receives IKE
// datagrams from the data plane's punt path (dp::DatagramHandler), sends through a
// dp::DatagramSender and installs CHILD SAs through a dp::SaInstaller. Time comes from an
// injectable Clock; tick() runs retransmissions and (re)initiation.
#pragma once

#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/api/datagram.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "ike/config.hpp"
#include "ike/ike_sa.hpp"

namespace ipsecgw::ike {

// Whether two configurations of a connection negotiate the same SAs: addresses, identities
// (peer_id, local_id), subnet pairs, PSK, ike and ipsec policies (everything but name, id,
// DPD, MTU, initiator mode and admin state).
bool same_negotiation(const ConnectionConfig& a, const ConnectionConfig& b);

enum class ConnState : std::uint8_t { kDown, kPending, kActive, kError };
const char* to_string(ConnState s);

struct ConnectionStatus {
  ConnState state = ConnState::kDown;
  std::string reason;  // for kError: "no proposal chosen", "authentication failed", ...
  std::optional<ChildSaInfo> child;
};

// A connection's state in detail (Daemon::detail), for the status the operator sees.
struct ConnectionDetail {
  ConnectionStatus status;  // as Daemon::status()
  bool admin_state_up = true;
  // The IKE SA the status comes from (the installed one, else the newest in progress):
  // "NONE", "MM1_SENT".."MM5_SENT" (responder: "MM2_SENT", "MM4_SENT"), "ESTABLISHED".
  std::string phase1 = "NONE";
  // Its Quick Mode: "NONE", "QM1_SENT", "QM2_SENT", "INSTALLED", "REKEYING" (installed, a
  // replacing Quick Mode in flight).
  std::string phase2 = "NONE";
  // The proposal offered and accepted (proposals are strict: exactly the configured one).
  std::string ike_algorithms;  // "aes-128-cbc/sha1/modp1536"
  std::string esp_algorithms;  // "aes-128-cbc/hmac-sha1-96/modp1536" (the last: PFS group)
  dp::UdpEndpoint peer{};      // the peer as we reach it now (after NAT: port 4500 or NAT's)
  bool nat_detected = false;
  // status is kError with a reason that ends an established tunnel (dead peer, the peer's
  // Delete, ISAKMP SA expiry) rather than a failed negotiation.
  bool tunnel_ended = false;
};

// Reasons (ConnectionStatus::reason) that end an established tunnel.
inline constexpr const char* kReasonDeadPeer = "dead peer detected (DPD)";
inline constexpr const char* kReasonDeletedByPeer = "deleted by peer";
inline constexpr const char* kReasonIsakmpExpired = "ISAKMP SA expired";
bool is_tunnel_end_reason(const std::string& reason);

// After a failed attempt, a bi-directional connection initiates again after this delay.
constexpr Millis kRetryAfterFailure{30000};
// Half-open responder negotiations (an MM1 from a configured peer's address received, the
// initiator not yet authenticated by MM5) live in their peer (Daemon::Peer::half_open), apart
// from its SAs: they never block or replace our own negotiations. Each configured peer has
// room for one outside any global cap, so that MM1s spoofed from other addresses cannot
// starve it; its further ones ("extra") are capped at kMaxHalfOpenPerPeer in all per peer and
// kMaxHalfOpen extra ones over all peers. A new MM1 over a cap evicts, within its own peer
// only, the oldest negotiation still waiting for MM3 (one that got an MM3 with our responder
// cookie has shown that it receives what we send); with none such the MM1 is refused. Both
// are counted in IkeCounters (half_open_peer_cap, half_open_global_cap).
constexpr std::size_t kMaxHalfOpen = 128;
constexpr std::size_t kMaxHalfOpenPerPeer = 8;

class Daemon final : public dp::DatagramHandler {
 public:
  // `keys` (optional) replaces the DH and nonce source (tests, fuzzing); it must outlive us.
  Daemon(dp::DatagramSender& sender, dp::SaInstaller& installer, const Clock& clock,
         KeySource* keys = nullptr);
  ~Daemon() override;

  // Also installs the connection's trap policies (dp::SaInstaller::install_trap, one per
  // subnet pair, conn_id trap_id(id, pair)) when it is admin up: from then on its traffic
  // waits for an SA instead of being unmatched. Connections to one peer address share its
  // ISAKMP SA (a Quick Mode CHILD SA per connection and subnet pair): refused, with an error
  // naming both connections, when its PSK, ike policy, peer_id or local_id differs from
  // another connection's to the same peer, or it repeats one of their subnet pairs.
  Result<void> add_connection(ConnectionConfig cfg);
  // Administrative removal: deletes its CHILD SAs (telling the peer) and removes its traps;
  // the peer's ISAKMP SA stays while another connection uses it.
  Result<void> remove_connection(const std::string& name);
  // Live changes of a running connection (ike/daemon_update.cpp); `cfg` keeps the name and id
  // the connection was added with.
  // In place, without renegotiation: DPD timers and action, MTU (pushed to the installed
  // outbound SAs, SaInstaller::set_outbound_mtu), initiator mode. Refused, changing nothing,
  // when a field the negotiated SAs depend on differs (see same_negotiation).
  Result<void> update_in_place(ConnectionConfig cfg);
  // Make-before-break: the new settings apply, and a connection that holds SAs negotiates new
  // ones with a new ISAKMP SA at once; the old SAs keep forwarding until the new pair is
  // installed and are then deleted (Delete to the peer) after kRekeyGrace. Traffic selectors
  // that change move the trap policy along. A connection without SAs negotiates as usual.
  // One of several connections of a peer: with phase 1 unchanged only its CHILD SAs are
  // renegotiated under the current ISAKMP SA (a rekey Quick Mode each; new subnet pairs:
  // Delete, then new Quick Modes), the others untouched; a phase-1 change renegotiates the
  // peer's ISAKMP SA as above (the others follow). A new peer address: it leaves the old peer
  // (its CHILD SAs deleted there) unless it was that peer's only connection.
  Result<void> renegotiate(ConnectionConfig cfg);
  // Admin down: every SA is deleted (Delete to the peer) while the trap policy stays, so the
  // tunnel's traffic is dropped from the moment its outbound SA goes, never forwarded in the
  // clear; no negotiation in either direction until admin up. Admin up: the trap is (re)installed
  // and a bi-directional connection initiates on the next tick.
  Result<void> set_admin_state(const std::string& name, bool up);
  // Starts Main Mode now (also for response-only connections: an explicit operator action).
  Result<void> initiate(const std::string& name);
  void on_datagram(const dp::DatagramView& d) override;
  // Retransmissions, DPD (RFC 3706), reaping failed SAs, auto-initiation of bi-directional
  // connections. A dead peer's SAs are deleted; DPD action "restart" initiates again at once
  // (a response-only connection never initiates: it acts as hold), "hold" leaves
  // the connection down (ERROR "dead peer detected (DPD)") until the peer initiates or traffic
  // for it hits the trap. Data-plane acquires (kAcquire: a packet matched the trap while the
  // connection had no SA) start a negotiation for a bi-directional connection that has none
  // in progress and is not waiting out kRetryAfterFailure; a response-only one waits for its
  // peer.
  void tick();
  ConnectionStatus status(const std::string& name) const;
  // status() plus phase states, algorithms and the peer's endpoint (ike/daemon_status.cpp).
  ConnectionDetail detail(const std::string& name) const;
  // Shutdown: every established ISAKMP SA tells its peer that each of its CHILD SAs and then
  // itself is gone (ISAKMP Delete payloads in encrypted informational exchanges). The SAs are
  // done; their data-plane SAs stay until the gateway stops (its exit report shows them), and
  // status() still reports the connections as they were. Returns the number of ISAKMP SAs
  // that sent Deletes. In two steps when the caller can wait between them:
  // delete_all_child_sas() sends the CHILD SAs' Deletes (once), delete_all_sas() then the
  // ISAKMP SAs'. A peer may handle datagrams that arrive together in any order (strongSwan
  // does: one job each on its thread pool) and an ESP Delete handled after its ISAKMP SA went
  // is ignored, so the caller leaves time between the two (app/runtime.cpp).
  std::size_t delete_all_child_sas();
  std::size_t delete_all_sas();
  // The soft packet limit of the CHILD SAs negotiated from now on (kChildSoftPackets by
  // default; tests inject small ones). Set it before adding connections.
  void set_child_soft_packets(std::uint64_t n) { ctx_.child_soft_packets = n; }
  // What was dropped or refused, and why (for telemetry).
  const IkeCounters& counters() const { return counters_; }
  // How many IKE SAs (established or failed) still hold phase-1 secrets beyond SKEYID_d/a/e
  // (DH private key, g^xy, SKEYID): zero (key hygiene; for tests and audits).
  std::size_t sas_holding_spent_secrets() const;
  std::vector<std::string> connection_names() const;
  bool has_connection(const std::string& name) const;  // by the name index
  // IKE SAs examined so far by on_datagram (finding the SA a datagram is for), tick and the
  // data plane's events. Tests check that the work per datagram and per idle tick does not
  // grow with the number of connections: lookups are indexed (cookie, peer address,
  // connection name and id) and tick() visits only the peers whose next deadline came.
  std::uint64_t sa_visits() const { return sa_visits_; }
  // Half-open responder negotiations held now, over all peers (at most the number of
  // configured peers plus kMaxHalfOpen); extra ones beyond the first of each peer.
  std::size_t half_open_count() const { return half_open_total_; }
  std::size_t half_open_extra_count() const { return half_open_extra_; }
  // The names of the connections whose status() or detail() may have changed since the last
  // call (each once; removed connections are not named): those of every peer whose IKE SAs
  // were touched or ticked, and of the peers whose half-open negotiations changed. The work is
  // that of the changes, not of the connections (ike/daemon_status.cpp), so that the caller
  // refreshes only these rows (app/connections.cpp).
  std::vector<std::string> take_status_changes();

 private:
  struct Peer;
  struct Conn {
    ConnectionConfig cfg;
    Peer* peer = nullptr;
    std::size_t traps = 0;  // its trap policies installed: pairs 0..traps-1 (trap_id)
  };
  // The connections to one peer address (from one local address): they share its ISAKMP SAs,
  // each with a CHILD SA per subnet pair in them (IkeSa slots), and its phase-1 settings.
  struct Peer {
    dp::Ipv4 local_addr = 0, addr = 0;
    std::vector<Conn*> conns;  // in the order added
    std::vector<std::unique_ptr<IkeSa>> sas;
    std::string last_error;  // the last failure of an ISAKMP SA (all its connections')
    Millis retry_at{0};
    bool restart_now = false;  // DPD action restart: initiate on the next tick
    std::uint64_t serial = 0;  // its key in timers_ (peers_by_serial_)
    Millis due = Millis::max();  // its live entry in timers_ (Millis::max(): none)
    std::vector<std::uint64_t> indexed;  // the initiator cookies it holds in by_icookie_
    bool contacted = false;    // an ISAKMP SA was established with this peer before
    // Responder negotiations it started, until its MM5 authenticates it (then promoted into
    // sas) or they fail; oldest first, at most kMaxHalfOpenPerPeer.
    std::vector<std::unique_ptr<IkeSa>> half_open;
    std::size_t half_open_counted = 0;  // half_open.size() as in the daemon's totals
    bool status_marked = false;  // in status_marks_ (take_status_changes)
    // The connection whose phase-1 settings a new ISAKMP SA takes (DPD too): the first one
    // admin up, else the first.
    Conn* lead() const;
    bool up() const;         // a connection is admin up
    bool initiates() const;  // an admin-up connection is bi-directional
    bool busy() const;       // an ISAKMP SA is live (not failed, not done)
    // The newest live ISAKMP SA with a CHILD SA that is not retiring: the one that carries
    // the peer's connections. Deletes for CHILD SAs of older ISAKMP SAs also go out under it
    // (the peer may have moved them there).
    IkeSa* carrier() const;
  };
  // Responder cookie for an MM1 (RFC 2408 §2.5.3): from a local secret and the peer's
  // address, port and initiator cookie.
  Cookie responder_cookie(const dp::UdpEndpoint& peer, const Cookie& icookie) const;
  // A message for one of the peer's half-open negotiations (the exact cookie pair, or an MM1
  // retransmission: zero responder cookie from the same endpoint): handled, true.
  bool to_half_open(Peer& p, const dp::DatagramView& d, const Header& h);
  void new_half_open(Peer& p, const dp::DatagramView& d, const Header& h);
  // Room for one more half-open negotiation of `p` (evicting within `p`): false if refused.
  bool make_half_open_room(Peer& p);
  // After a half-open SA was handled or ticked: promoted when established, dropped when failed.
  void settle_half_open(Peer& p, std::size_t i);
  // The peer's half-open negotiations changed in number: the daemon's totals follow.
  void recount_half_open(Peer& p);
  void drop_half_open(Peer& p);  // all of them (settings changed, admin down, peer erased)
  void promote(Peer& p, std::unique_ptr<IkeSa> sa);
  void housekeeping(Peer& p, Millis now);
  void on_event(const dp::SaEvent& e);
  void on_acquire(Conn& c, std::uint32_t trap);
  Conn* find_conn(const std::string& name) const;
  Peer* find_peer(dp::Ipv4 local_addr, dp::Ipv4 addr) const;
  // A new ISAKMP SA with the peer, with a slot for each admin-up connection (`lead`'s
  // phase-1 settings; default Peer::lead()).
  std::unique_ptr<IkeSa> new_sa(Peer& p, Role role, dp::UdpEndpoint local,
                                dp::UdpEndpoint remote, const Conn* lead = nullptr);
  // Takes the connection out of every ISAKMP SA of its peer (Delete to the peer for its
  // CHILD SAs); an ISAKMP SA left without connection is deleted.
  void detach(Conn& c);
  // Whether `cfg` may join peer `p` (phase-1 settings agree unless !phase1, no subnet pair
  // of another connection): "" or the error, naming both connections.
  std::string check_join(const Peer& p, const ConnectionConfig& cfg, const Conn* self,
                         bool phase1 = true) const;
  void join(Conn& c);  // into its peer (created if none), slots in the live ISAKMP SAs
  void install_traps(Conn& c);
  void remove_traps(Conn& c, std::size_t from = 0);
  void reap(Peer& p);
  void start(Peer& p, const Conn* lead = nullptr);
  void push_mtu(Conn& c);
  // ---- indexes (no walk over all connections or peers per datagram or tick) ----
  void link_peer(Peer& p);    // into the peer indexes (a new peer, or after its address changed)
  void unlink_peer(Peer& p);  // out of every index (before it is erased or its address changes)
  // The peer's IKE SAs or their state changed: its cookies are re-indexed and it is ticked on
  // the next tick() (which then reschedules it at its next deadline).
  void touch(Peer& p);
  void index_cookies(Peer& p);
  void schedule(Peer& p, Millis at);
  Millis next_due(const Peer& p, Millis now) const;
  void tick_peer(Peer& p, Millis now);
  void erase_peer(Peer* p);
  // The peer's connections' status may have changed (take_status_changes names them).
  void mark_status(Peer& p);

  IkeCounters counters_;
  KeySource default_keys_;
  IkeContext ctx_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::size_t half_open_total_ = 0;  // sum of the peers' half_open sizes
  std::size_t half_open_extra_ = 0;  // the same less each peer's first (capped: kMaxHalfOpen)
  std::unordered_map<std::string, Conn*> conns_by_name_;
  std::unordered_multimap<std::uint32_t, Conn*> conns_by_id_;
  std::unordered_map<std::uint64_t, Peer*> peers_by_pair_;  // (local << 32 | peer address)
  std::unordered_multimap<dp::Ipv4, Peer*> peers_by_addr_;  // peer address (a new MM1)
  std::unordered_map<std::uint64_t, Peer*> peers_by_serial_;
  std::unordered_multimap<std::uint64_t, Peer*> by_icookie_;  // IKE SAs' initiator cookies
  struct Timer {
    Millis at;
    std::uint64_t serial;
    bool operator>(const Timer& o) const { return at > o.at; }
  };
  // Peers by deadline (a min-heap; an entry whose time is not its peer's `due` is stale).
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t next_serial_ = 1;
  std::uint64_t sa_visits_ = 0;
  crypto::SecureBytes cookie_secret_;
  // take_status_changes: the peers marked since (by serial).
  std::vector<std::uint64_t> status_marks_;
};

}  // namespace ipsecgw::ike
