// One IKEv1 SA (ISAKMP SA) and its exchanges, in the strongSwan style: a Main Mode task
// (RFC 2409 §5.4, PSK) followed by a Quick Mode task (RFC 2409 §5.5, with PFS) for the
// connection's one CHILD SA pair, plus informational exchanges (notify, delete). Each task
// has an initiator and a responder side and answers kNeedMore / kSuccess / kFailed.
// The IkeSa frames messages (encryption, IV chaining per RFC 2409 Appendix B), keeps the
// last datagram sent for retransmission and answers duplicate requests from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "crypto/ike_crypto.hpp"
#include "dataplane/api/datagram.hpp"
#include "dataplane/api/sa_installer.hpp"
#include "ike/config.hpp"
#include "ike/isakmp.hpp"

namespace ipsecgw::ike {

using Millis = std::chrono::milliseconds;

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

struct IkeContext {
  dp::DatagramSender* sender = nullptr;
  dp::SaInstaller* installer = nullptr;
  const Clock* clock = nullptr;
};

enum class Role : std::uint8_t { kInitiator, kResponder };
enum class TaskStatus : std::uint8_t { kNeedMore, kSuccess, kFailed };

// What was installed for the connection.
struct ChildSaInfo {
  std::uint32_t spi_in = 0;
  std::uint32_t spi_out = 0;
  bool udp_encap = false;
  std::uint16_t peer_port = 0;
  std::uint32_t lifetime_s = 0;
};

// Vendor IDs (RFC 3947 §3.1: MD5("RFC 3947"); draft-ietf-ipsec-nat-t-ike-02 with "\n";
// RFC 3706 §8 DPD).
extern const Bytes kVidNatTRfc3947;
extern const Bytes kVidNatTDraft02;
extern const Bytes kVidDpd;

// Retransmission: first after kRetransmitBase, doubling, kMaxRetransmits times, then the
// exchange fails with "peer unreachable".
constexpr Millis kRetransmitBase{2000};
constexpr int kMaxRetransmits = 4;

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

  // Initiator: sends MM1.
  void start();
  // Every datagram for this SA's cookies.
  void handle(const dp::DatagramView& d, const Header& h);
  // Retransmission timers.
  void tick(Millis now);

  State state() const { return state_; }
  bool failed() const { return state_ == State::kFailed; }
  const std::string& failure() const { return failure_; }
  Role role() const { return role_; }
  const Cookie& icookie() const { return icookie_; }
  const Cookie& rcookie() const { return rcookie_; }
  const ConnectionConfig& config() const { return *cfg_; }
  const std::optional<ChildSaInfo>& child() const { return child_; }
  bool nat_detected() const { return nat_local_ || nat_remote_; }
  const dp::UdpEndpoint& remote() const { return remote_; }
  // Deletes installed CHILD SAs (and tells the peer when `notify_peer`).
  void teardown(bool notify_peer);
  std::string tag() const;  // "conn i-cookie_r-cookie" for log lines

 private:
  struct Phase1;
  struct Quick;

  // framing
  void send(Bytes msg, bool expect_reply);
  Bytes seal(Header h, const PayloadChain& c, Bytes& iv);
  Result<Message> open(const dp::DatagramView& d, const Header& h, Bytes& iv);
  void fail(const std::string& reason, std::uint16_t notify_type = 0);
  void send_plain_notify(std::uint16_t type);
  void send_informational(PayloadType t, const Bytes& body);

  // Main Mode (RFC 2409 §5.4)
  TaskStatus mm_process(const Message& m);
  void mm_build1();
  Result<void> derive_phase1_keys();
  Bytes nat_d(const dp::UdpEndpoint& ep) const;
  void add_nat_d(PayloadChain& c) const;
  void check_nat_d(const Message& m);
  Bytes hash_i(ByteView id_body) const;
  Bytes hash_r(ByteView id_body) const;
  std::uint16_t encap_mode() const;

  // Quick Mode (RFC 2409 §5.5)
  void qm_start();
  TaskStatus qm_process(const Message& m);
  Bytes qm_iv(std::uint32_t mid) const;
  Result<void> qm_install();

  void informational(const Message& m);

  Role role_;
  const ConnectionConfig* cfg_;
  IkeContext ctx_;
  dp::UdpEndpoint local_, remote_;
  State state_;
  std::string failure_;
  Cookie icookie_{}, rcookie_{};
  std::unique_ptr<Phase1> p1_;
  std::unique_ptr<Quick> qm_;
  std::optional<ChildSaInfo> child_;
  bool peer_nat_t_ = false, peer_nat_t_draft_ = false, peer_dpd_ = false;
  bool nat_local_ = false, nat_remote_ = false;

  // retransmission / duplicate detection
  Bytes last_in_, last_out_;
  bool waiting_ = false;
  int retransmits_ = 0;
  Millis retransmit_at_{0};
};

const char* to_string(IkeSa::State s);

}  // namespace ipsecgw::ike
