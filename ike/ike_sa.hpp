// One IKEv1 SA (ISAKMP SA) and its exchanges, in the strongSwan style: a Main Mode task
// (RFC 2409 §5.4, PSK) followed by a Quick Mode task (RFC 2409 §5.5, with PFS) per CHILD SA,
// plus informational exchanges (notify, delete). One ISAKMP SA serves every connection to its
// peer: each connection has a CHILD SA per (local, peer) subnet pair (a "slot"); the phase-1
// settings (PSK, ike policy, identities, DPD) are the first connection's, which the others
// agree with (Daemon::add_connection checks). Each task
// has an initiator and a responder side and answers kNeedMore / kSuccess / kFailed.
// The IkeSa frames messages (encryption, IV chaining per RFC 2409 Appendix B), keeps the
// last datagram sent for retransmission and answers duplicate requests from it.
// The member functions are defined one exchange per file:
//   ike_sa.cpp       framing, dispatch, retransmission, timers
//   main_mode.cpp    Main Mode (MM1..MM6)        phase1_keys.cpp  SKEYID*, HASH_I/R, NAT-D
//   quick_mode.cpp   Quick Mode (QM1..QM3)       child_sa.cpp     CHILD SAs and lifetimes
//   informational.cpp notify / delete            dpd.cpp          DPD, NAT keepalives
// ike_sa_internal.hpp holds what those files share.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "crypto/ike_crypto.hpp"
#include "dataplane/api/datagram.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "ike/child_sa.hpp"
#include "ike/config.hpp"
#include "ike/isakmp.hpp"

namespace ipsecgw::ike {

// Time source, injectable for tests.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Millis now() const = 0;
};
class SteadyClock final : public Clock {
 public:
  Millis now() const override {
    return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now().time_since_epoch());
  }
};

// What the daemon dropped or refused, and why (Daemon::counters()). Each is a count of events.
struct IkeCounters {
  std::uint64_t bad_cookie_drops = 0;      // responder cookie not the one issued / known
  std::uint64_t half_open = 0;             // not a count: half-open negotiations held now
  std::uint64_t half_open_created = 0;     // responder state created by an MM1
  // A new MM1 over a cap (per peer / extra ones in all): the peer's own oldest half-open
  // negotiation still waiting for MM3 evicted, or the MM1 refused when none waits for MM3.
  std::uint64_t half_open_peer_cap = 0;
  std::uint64_t half_open_global_cap = 0;
  std::uint64_t unknown_peer_drops = 0;    // MM1 from an address no connection has
  std::uint64_t unauthenticated_drops = 0; // undecryptable / unprotected error messages ignored
  std::uint64_t replay_drops = 0;          // authenticated message id seen before
  std::uint64_t mid_cap_rekeys = 0;        // message-id memory full: phase 1 re-established
  std::uint64_t quick_mode_cap_drops = 0;  // QM1 over the per-connection in-flight / SA cap
  std::uint64_t dh_failures = 0;           // DH key generation failed (that SA failed)
  std::uint64_t peer_id_mismatches = 0;    // authenticated peer ID not the configured peer_id
  std::uint64_t on_demand_dpd = 0;         // R-U-THERE sent because ESP flowed out unanswered
};

// Key material sources, injectable (tests: failures; fuzzing: fixed values).
class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual Result<crypto::DhKeyPair> dh(crypto::DhGroup g) { return crypto::DhKeyPair::generate(g); }
  virtual Bytes nonce(std::size_t n) { return crypto::random_bytes(n); }
};

// Soft packet limit of the CHILD SAs we install (each direction): crossing it makes the data
// plane raise kSoftLimit and we rekey make-before-break, well before the 32-bit sequence
// number runs out (2^32 - 1 packets; at 10 Mpps that is 7 minutes, less than most lifetimes).
constexpr std::uint64_t kChildSoftPackets = (std::uint64_t{1} << 32) - (std::uint64_t{1} << 28);

struct IkeContext {
  dp::DatagramSender* sender = nullptr;
  dp::SaInstaller* installer = nullptr;
  const Clock* clock = nullptr;
  IkeCounters* counters = nullptr;
  KeySource* keys = nullptr;
  std::uint64_t child_soft_packets = kChildSoftPackets;  // 0: none
};

enum class Role : std::uint8_t { kInitiator, kResponder };
enum class TaskStatus : std::uint8_t { kNeedMore, kSuccess, kFailed };

// Vendor IDs (RFC 3947 §3.1: MD5("RFC 3947"); draft-ietf-ipsec-nat-t-ike-02 with "\n";
// RFC 3706 §8 DPD).
extern const Bytes kVidNatTRfc3947;
extern const Bytes kVidNatTDraft02;
extern const Bytes kVidDpd;

// Retransmission: first after kRetransmitBase, doubling, kMaxRetransmits times, then the
// exchange fails with "peer unreachable".
constexpr Millis kRetransmitBase{2000};
constexpr int kMaxRetransmits = 4;

// Lifetimes (RFC 2409 §4.5 leaves rekeying policy to the implementation; these follow
// strongSwan): whoever created an SA rekeys it at lifetime - (10% + random 0..5%); the other
// side only if that has not happened by lifetime - kPassiveMarginPct. The replaced CHILD SAs
// keep working for kRekeyGrace (packets in flight under the old SPI), then are deleted with a
// Delete notification. An incomplete negotiation as responder is dropped after kHalfOpenTimeout.
constexpr unsigned kRekeyMarginPct = 10, kRekeyJitterPct = 5, kPassiveMarginPct = 3;
constexpr Millis kRekeyGrace{5000};
constexpr Millis kBadAuthGrace{10000};
constexpr Millis kHalfOpenTimeout{60000};
// A connection's first Quick Mode that failed under an ISAKMP SA other connections keep is
// tried again after this long.
constexpr Millis kChildRetryAfterFailure{30000};
// Our rekey Quick Mode is given up after this long without completing (then retried).
constexpr Millis kRekeyAbandonAfter{30000};
// A rekey we initiate installs its new outbound SA only once the new inbound SA has carried
// a packet (the peer installed the pair on our QM3) or this long after QM3 went out: the
// peer adds its inbound SA only when QM3 arrives, so sending at once would lose packets.
constexpr Millis kOutboundSwitchDelay{1000};
// Per-connection caps (an authenticated peer must not fill the SA table for everyone): at
// most kMaxResponderQuickModes of the peer's Quick Modes wait for QM3 per ISAKMP SA, and a
// slot holds at most kMaxChildSasPerSlot inbound CHILD SAs (current, replaced ones in their
// grace period, Quick Modes in flight). A QM1 over a cap is dropped before any SA is
// allocated (IkeCounters::quick_mode_cap_drops). A peer's Quick Mode without QM3 after
// kResponderQmTimeout has its inbound SA removed.
constexpr std::size_t kMaxResponderQuickModes = 4, kMaxChildSasPerSlot = 4;
constexpr Millis kResponderQmTimeout{30000};
// NAT keepalive (RFC 3948 §2.3): one 0xFF byte to the peer's 4500 from the side behind a NAT.
constexpr Millis kNatKeepaliveInterval{20000};
// On-demand DPD: an R-U-THERE at once when our outbound ESP flows but nothing authenticated
// (IKE or inbound ESP) has come from the peer for this long.
constexpr Millis kOnDemandDpdAfter{2000};
// With DPD on, the data plane's packet counters of the CHILD SAs (inbound: liveness; outbound:
// on-demand DPD) are read at most this often, not on every tick.
constexpr Millis kDpdPoll{2000};

class IkeSa {
 public:
  enum class State : std::uint8_t {
    kInit,                                             // responder, nothing received
    kMm1Sent, kMm2Sent, kMm3Sent, kMm4Sent, kMm5Sent,  // phase 1 in progress
    kPhase1Done,                                       // ISAKMP SA up, no CHILD SA yet
    kQm1Sent, kQm2Sent,                                // quick mode in progress
    kActive,                                           // CHILD SAs installed
    kFailed,
  };

  IkeSa(Role role, const ConnectionConfig& cfg, IkeContext ctx, dp::UdpEndpoint local,
        dp::UdpEndpoint remote);
  ~IkeSa();
  IkeSa(const IkeSa&) = delete;
  IkeSa& operator=(const IkeSa&) = delete;

  // Responder, before the first handle(): the cookie to issue (Daemon derives it).
  void set_responder_cookie(const Cookie& c) { rcookie_ = c; }
  // Initiator: sends MM1.
  void start();
  // Every datagram for this SA's cookies.
  void handle(const dp::DatagramView& d, const Header& h);
  // Retransmission timers.
  void tick(Millis now);
  // The earliest time at which tick() may act on its own (a timer, or a poll of the data
  // plane's counters: DPD every kDpdPoll, a pending outbound switch on every tick); at or
  // before `now` when due, Millis::max() when only a datagram or a call can change anything.
  // Never later than the real next action: tick() at that time may find nothing to do. The
  // daemon ticks a peer's SAs only when this comes (or after it touched them).
  Millis next_deadline(Millis now) const;
  // When the ISAKMP SA reaches its soft lifetime and wants re-establishment (wants_reauth);
  // Millis::max() when it does not (not established, replaced, retiring, failed or done).
  Millis reauth_time() const;

  State state() const { return state_; }
  bool failed() const { return state_ == State::kFailed; }
  const std::string& failure() const { return failure_; }
  Role role() const { return role_; }
  const Cookie& icookie() const { return icookie_; }
  const Cookie& rcookie() const { return rcookie_; }
  const ConnectionConfig& config() const { return *cfg_; }
  // The current CHILD SA of the first slot (the first pair of the first connection).
  const std::optional<ChildSaInfo>& child() const;
  // ---- connections sharing this ISAKMP SA (one slot per subnet pair) ----
  // Adds a slot per pair of `cfg` (which must outlive them); once phase 1 is up, a
  // bi-directional connection's Quick Modes start from the next tick (one at a time).
  void add_connection(const ConnectionConfig& cfg);
  // Deletes the connection's CHILD SAs (a Delete to the peer for each when `notify_peer`),
  // abandons its Quick Modes in flight and removes its slots. The ISAKMP SA stays: the
  // caller deletes it when no connection is left (then config() must not be used).
  void remove_connection(std::uint32_t conn_id, bool notify_peer);
  bool has_connection(std::uint32_t conn_id) const;
  // Some slot has a current CHILD SA.
  bool any_child_installed() const { return any_child(); }
  std::size_t connection_count() const;
  // The current CHILD SA of slot `trap` (trap_id(conn, pair)).
  std::optional<ChildSaInfo> child_of(std::uint32_t trap) const;
  // Every pair of the connection has a current CHILD SA.
  bool connection_active(std::uint32_t conn_id) const;
  // The last Quick Mode failure of one of the connection's pairs that has no CHILD SA and no
  // Quick Mode in flight ("" when none).
  std::string connection_failure(std::uint32_t conn_id) const;
  // The connection's phase 2 as Daemon::detail shows it: "NONE", "QM1_SENT", "QM2_SENT",
  // "INSTALLED", "REKEYING".
  std::string connection_phase2(std::uint32_t conn_id) const;
  // A packet hit the trap of slot `trap`: negotiate its CHILD SA now if it has none.
  void request_child(std::uint32_t trap);
  // Our outbound SPIs of the connection's current CHILD SAs (MTU updates).
  std::vector<std::uint32_t> connection_outbound_spis(std::uint32_t conn_id) const;
  bool nat_detected() const { return nat_local_ || nat_remote_; }
  const dp::UdpEndpoint& remote() const { return remote_; }
  // Dead peer detection (RFC 3706) found the peer dead; the SA has failed and its CHILD SAs
  // are deleted. The daemon applies the connection's DPD action (hold | restart).
  bool dead_peer() const { return dpd_dead_; }
  bool peer_supports_dpd() const { return peer_dpd_; }
  // Deletes installed CHILD SAs (and tells the peer when `notify_peer`).
  void teardown(bool notify_peer);
  // Shutdown, first step: a Delete for each CHILD SA held (the data-plane SAs stay; the
  // gateway goes next); once only. False when there is nothing to tell the peer (phase 1 not
  // established, failed or already done).
  bool shut_down_children();
  bool children_deleted() const { return children_deleted_; }
  // Shutdown: shut_down_children() unless done already, then a Delete for the ISAKMP SA, then
  // done(); false when there was nothing to tell the peer.
  bool shut_down();

  // ---- lifetimes and rekeying ----
  // Starts a Quick Mode that replaces the current CHILD SA of every slot (of slot `trap`)
  // (make-before-break); no-op for a slot while one is already in flight or there is no
  // ISAKMP SA. Used for soft expiry and SaEvents.
  void rekey_child();
  void rekey_child(std::uint32_t trap);
  bool rekeying() const;
  // SPIs of replaced CHILD SAs still inside their grace period.
  std::vector<std::uint32_t> retiring_inbound_spis() const;
  // The ISAKMP SA is due for re-establishment (soft phase-1 expiry) and has not been replaced.
  bool wants_reauth(Millis now) const;
  // Before phase 1 completes: this ISAKMP SA replaces older ones whose CHILD SAs of slots
  // `traps` carry traffic (renegotiation). Our first Quick Mode of such a slot
  // then switches outbound as our rekeys do (defer_outbound_switch): the peer may install
  // its new inbound SA only when our QM3 arrives.
  void defer_first_switch_of(std::vector<std::uint32_t> traps) {
    live_elsewhere_ = std::move(traps);
  }
  // A newer ISAKMP SA (re-established Main Mode) takes over this one's job.
  void mark_replaced() { replaced_ = true; }
  // The replacement failed before taking over: this one carries on (and may try again).
  void unmark_replaced() { replaced_ = false; }
  bool replaced() const { return replaced_; }
  // After `at`: delete the CHILD SAs and the ISAKMP SA, telling the peer; then done().
  void retire_at(Millis at);
  bool retiring() const { return retire_at_ != Millis::max(); }
  Millis retire_time() const { return retire_at_; }
  // Sends a Delete for one of the peer's ESP SAs (our inbound SPI) under this ISAKMP SA.
  void send_esp_delete(std::uint32_t spi_in);
  // The peer deleted its inbound ESP SA `spi_out` (our outbound SPI): removes the CHILD SA
  // pair of this IKE SA it belongs to; false when none does. A retiring ISAKMP SA (a newer one
  // carries the connection) losing its current pair is done, not failed.
  bool peer_deleted_esp(std::uint32_t spi_out);
  // ESP Deletes received under this ISAKMP SA for SPIs it does not hold (the peer may have
  // moved a CHILD SA of an older ISAKMP SA of the connection onto this one): the daemon hands
  // them to the other IKE SAs of the connection.
  std::vector<std::uint32_t> take_foreign_esp_deletes() {
    return std::exchange(foreign_esp_deletes_, {});
  }
  // Our inbound SPIs of every CHILD SA this IKE SA still holds (current and replaced).
  std::vector<std::uint32_t> inbound_spis() const;
  // Retired (or hard-expired) without failure: the daemon drops it.
  bool done() const { return done_; }
  // When the current CHILD SA of the first slot was installed (zero: none).
  Millis child_installed_at() const;
  bool established() const { return p1_established_; }
  // Our phase-1 DH private key, g^xy or SKEYID is still in memory (key hygiene checks: once
  // phase 1 is done or failed only SKEYID_d/a/e and Ka remain).
  bool holds_phase1_secrets() const;
  // INITIAL-CONTACT (RFC 2407 §4.6.3.3): sent in MM5 when set before start(); received: the
  // peer forgot all earlier state (cleared by the daemon after it acted).
  void set_initial_contact(bool v) { send_initial_contact_ = v; }
  bool initial_contact_received() const { return ic_received_; }
  void clear_initial_contact_received() { ic_received_ = false; }
  std::string tag() const;  // "conn i-cookie_r-cookie" for log lines

 private:
  struct Phase1;
  struct Quick;
  // One CHILD SA slot: a connection's (local, peer) subnet pair, its current pair and the
  // replaced ones.
  struct Slot {
    const ConnectionConfig* cfg = nullptr;
    Selector sel;
    std::uint32_t trap = 0;  // trap_id(cfg->id, pair): the data plane's conn_id
    ChildSas sas;
    std::uint32_t rekey_mid = 0;  // our replacing Quick Mode in flight
    std::string failure;          // its last Quick Mode failure (cleared by a new one)
    Millis start_at{0};           // no Quick Mode of ours for it before
  };
  Slot* slot(std::uint32_t trap);
  const Slot* slot(std::uint32_t trap) const;
  bool any_child() const;
  bool qm_busy() const;  // a Quick Mode exchange waits for an answer
  // Starts the next Quick Mode a slot without CHILD SA wants (initiator side), if none is
  // in flight.
  void start_wanted_quick_modes(Millis now);
  void abandon_quicks_of(std::uint32_t trap);

  void count(std::uint64_t IkeCounters::*c) const {
    if (ctx_.counters != nullptr) ++(ctx_.counters->*c);
  }
  // framing, dispatch (ike_sa.cpp)
  Header header(ExchangeType ex, std::uint32_t mid = 0) const;
  void send(Bytes msg, bool expect_reply);
  void resend_last();
  Bytes seal(Header h, const PayloadChain& c, Bytes& iv);
  Result<Message> open(const dp::DatagramView& d, const Header& h, Bytes& iv);
  void fail(const std::string& reason, std::uint16_t notify_type = 0);
  void handle_informational(const dp::DatagramView& d, const Header& h);
  void handle_main_mode(const dp::DatagramView& d, const Header& h, const Bytes& in);
  void handle_quick_mode(const dp::DatagramView& d, const Header& h, const Bytes& in);
  void retransmit_tick(Millis now);
  // Runs `process` for a message from `from`; the peer moves there only if it authenticated.
  template <typename F>
  void with_tentative_peer(const dp::UdpEndpoint& from, F&& process);

  // Main Mode (RFC 2409 §5.4, main_mode.cpp): one process/build pair per message.
  TaskStatus mm_process(const Message& m);
  void mm_build1();
  TaskStatus mm_process1(const Message& m);
  void mm_build2(const Transform& chosen, std::uint8_t proposal_number);
  TaskStatus mm_process2(const Message& m);
  void mm_build3();
  TaskStatus mm_process3(const Message& m);
  void mm_build4();
  TaskStatus mm_process4(const Message& m);
  void mm_build5();
  TaskStatus mm_process5(const Message& m);
  void mm_build6();
  TaskStatus mm_process6(const Message& m);
  void mm_note_vendor_ids(const Message& m);
  void mm_send(const PayloadChain& c, State next, bool expect_reply);
  void mm_send_ke_nonce(const Bytes& ke, const Bytes& nonce, State next, bool expect_reply);
  bool mm_take_ke_nonce_derive(const Message& m, const char* which, std::uint16_t notify_type);
  std::optional<Bytes> mm_fresh_dh_nonce(Bytes& my_nonce);
  TaskStatus phase1_established(const char* role);
  bool peer_id_matches(ByteView id_body);

  // Phase-1 keys and hashes (phase1_keys.cpp)
  Result<void> derive_phase1_keys();
  void wipe_phase1_secrets();
  Bytes nat_d(const dp::UdpEndpoint& ep) const;
  void add_nat_d(PayloadChain& c) const;
  void check_nat_d(const Message& m);
  Bytes hash_i(ByteView id_body) const;
  Bytes hash_r(ByteView id_body) const;
  Bytes qm_iv(std::uint32_t mid) const;
  Bytes cookie_spi() const;
  bool is_our_cookie_spi(ByteView spi) const;

  // Quick Mode (RFC 2409 §5.5, quick_mode.cpp): one process/build pair per message.
  std::uint16_t encap_mode() const;
  void qm_start(Slot& s);
  void qm_build1(Quick& q);
  TaskStatus qm_process(Quick& q, const Message& m);
  TaskStatus qm_process1(Quick& q, const Message& m);
  void qm_build2(Quick& q, const Transform& chosen, std::uint8_t proposal_number,
                 const std::vector<IdPayload>& ids);
  TaskStatus qm_process2(Quick& q, const Message& m);
  void qm_build3(Quick& q);
  TaskStatus qm_process3(Quick& q, const Message& m);
  bool qm_hash_ok(const Message& m, const crypto::SecureBytes& expect);
  TaskStatus qm_fail(Quick& q, const std::string& why, std::uint16_t notify_type);
  Result<void> qm_install(Quick& q, dp::Direction dir);
  void prune_quicks();
  // The peer's QM1 for slot `s` would go over a cap (kMaxResponderQuickModes,
  // kMaxChildSasPerSlot).
  bool quick_mode_over_cap(const Slot& s) const;
  // The peer's Quick Modes that never got QM3: their inbound SAs are removed.
  void expire_responder_quicks(Millis now);
  // Rekeys we initiated: the outbound switch after QM3 (outbound_switch.cpp).
  void defer_outbound_switch(Quick& q);
  void outbound_switch_tick(Millis now);

  // CHILD SAs and lifetimes (child_sa.cpp)
  void child_activate(Quick& q);
  void p1_started_lifetime();
  Millis soft_expiry(Millis start, std::uint32_t lifetime_s, bool creator) const;
  void child_tick(Millis now);
  void abandon_stale_rekey(Slot& s, Millis now);
  void delete_child(std::uint32_t spi_in, std::uint32_t spi_out, bool notify_peer,
                    bool del_outbound);

  // Informational exchanges (RFC 2409 §5.7, informational.cpp)
  void send_plain_notify(std::uint16_t type);
  void send_informational(PayloadType t, const Bytes& body);
  void informational(const Message& m);
  bool informational_authentic(const Message& m);
  void informational_notify(const NotifyPayload& n, bool protected_msg);
  // false when the ISAKMP SA is gone (deleted by the peer, or failed)
  bool informational_delete(const DeletePayload& d);
  void mm5_answered_with_informational(const dp::DatagramView& d, const Header& h);
  // Message ids of the peer's authenticated informational and Quick Mode exchanges, all of
  // them for the life of the ISAKMP SA: a repeated one is a replay (RFC 2409 §5.5: each
  // exchange has a unique id). At kPeerMidRekeyAt the ISAKMP SA wants re-establishment
  // (wants_reauth); from kPeerMidMax on, new exchanges are refused (as replays).
  static constexpr std::size_t kPeerMidRekeyAt = 2048, kPeerMidMax = 4096;
  bool peer_mid_seen(std::uint32_t mid) const;
  void note_peer_mid(std::uint32_t mid);

  // DPD (RFC 3706, dpd.cpp): R-U-THERE after `interval` without proof of liveness, repeated
  // every interval while unanswered; the peer is dead when none is acknowledged within
  // `timeout`. NAT keepalives (RFC 3948 §2.3) are there too.
  void dpd_tick(Millis now);
  void send_dpd(std::uint16_t type, std::uint32_t seq);
  void dpd_notify(const NotifyPayload& n);
  void keepalive_tick(Millis now);

  Role role_;
  const ConnectionConfig* cfg_;
  IkeContext ctx_;
  dp::UdpEndpoint local_, remote_;
  State state_;
  std::string failure_;
  Cookie icookie_{}, rcookie_{};
  std::unique_ptr<Phase1> p1_;
  std::map<std::uint32_t, std::unique_ptr<Quick>> qms_;  // by message id
  std::vector<Slot> slots_;  // per connection and subnet pair: CHILD SAs
  std::vector<std::uint32_t> foreign_esp_deletes_;
  std::vector<std::uint32_t> live_elsewhere_;  // defer_first_switch_of
  Millis created_{0};
  bool p1_established_ = false;
  Millis p1_soft_{0}, p1_hard_{0};
  bool replaced_ = false, done_ = false;
  bool children_deleted_ = false;  // shut_down_children() sent their Deletes
  Millis retire_at_{Millis::max()};
  bool send_initial_contact_ = false, ic_received_ = false;
  Millis keepalive_next_{0};
  bool peer_nat_t_ = false, peer_nat_t_draft_ = false, peer_dpd_ = false;
  bool nat_local_ = false, nat_remote_ = false;
  bool authenticated_in_ = false;  // the message being handled passed its HASH check
  std::unordered_set<std::uint32_t> peer_mids_;
  int mm5_rejections_ = 0;  // undecryptable informationals received in answer to MM5
  // What unauthenticated messages suggest went wrong (an unprotected error notify, an MM5/MM6
  // that does not decrypt or verify: a wrong PSK). Never a reason to fail at once (anyone
  // can send them); it becomes the failure reason when the exchange times out, which for a
  // responder that got a bad MM5 is kBadAuthGrace later (the real MM5 would have come).
  std::string diagnosis_;
  Millis diagnosis_deadline_{Millis::max()};
  void diagnose(const std::string& what, bool responder_deadline);

  // DPD state (RFC 3706 §7: sequence numbers, ACK must echo the R-U-THERE's)
  Millis last_alive_{0};           // last authenticated message or inbound ESP from the peer
  std::uint64_t last_in_packets_ = 0;
  std::uint64_t last_out_packets_ = 0;
  std::uint32_t dpd_seq_ = 0;      // last R-U-THERE sequence number sent
  std::uint32_t dpd_first_seq_ = 0;  // first one of the unanswered run
  bool dpd_outstanding_ = false;
  Millis dpd_first_sent_{0}, dpd_next_{0};
  Millis dpd_polled_{0};  // the data plane's counters last read (kDpdPoll)
  bool dpd_dead_ = false;

  // retransmission / duplicate detection
  Bytes last_in_, last_out_;
  // last_in_ ended its exchange (QM3 to the responder, MM6 to the initiator): a copy of it
  // asks for nothing, and answering it with our last message (QM2, MM5) would make the peer
  // answer that copy in turn, back and forth without end.
  bool last_in_final_ = false;
  bool waiting_ = false;
  int retransmits_ = 0;
  Millis retransmit_at_{0};
};

const char* to_string(IkeSa::State s);

}  // namespace ipsecgw::ike
