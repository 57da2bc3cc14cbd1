// ike_udp_peer: the IKE daemon (ike/ + crypto/, no DPDK) over kernel UDP sockets, for interop
// tests against a real peer (strongSwan, tests/interop/ike_strongswan.sh).
//
// - Binds <local>:500 and <local>:4500. On 4500 the 4-byte non-ESP marker is stripped on
//   receive and added on send (RFC 3948 §2.2); 1-byte 0xFF NAT-keepalives (§2.3) are dropped
//   and ESP-in-UDP packets (non-zero first 4 bytes) are ignored: there is no data plane here.
// - A recording SaInstaller prints one line per installed/deleted SA on stdout (direction,
//   SPI, algorithms, encapsulation, ports). Keys go ONLY to the file named by --keys-out, for
//   the test's comparison with the peer's keys: this is a test tool, never the gateway.
// - Exits after a condition, printing "connection NAME: STATE [reason]" as its last line:
//     --until-active N  exit 0 as soon as the connection is ACTIVE (after --linger S more
//                       seconds of service), 1 on ERROR or after N seconds
//                       (--active-count K: the K-th time it becomes ACTIVE, e.g. after a
//                       DPD restart)
//     --until-error N   exit 0 when the connection is in ERROR, 1 after N s
//     --duration N      run N seconds, exit 0 when ACTIVE at the end
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/ike_crypto.hpp"
#include "ike/daemon.hpp"
#include "ike/isakmp.hpp"
#include "ike/log.hpp"

namespace {

using namespace ipsecgw;

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "ike_udp_peer: " << msg << "\n";
  std::exit(2);
}

std::string hexs(const crypto::SecureBytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < b.size(); ++i) {
    s += d[b.data()[i] >> 4];
    s += d[b.data()[i] & 15];
  }
  return s;
}

std::string spi_hex(std::uint32_t spi) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", spi);
  return buf;
}

// ---- kernel UDP transport ----

class UdpTransport final : public dp::DatagramSender {
 public:
  explicit UdpTransport(dp::Ipv4 local) : local_(local) {
    fd500_ = open_socket(500);
    fd4500_ = open_socket(4500);
  }
  ~UdpTransport() override {
    ::close(fd500_);
    ::close(fd4500_);
  }

  // RFC 3948 §2.2: on port 4500 IKE carries a 4-byte zero non-ESP marker.
  Result<void> send(const dp::DatagramView& d) override {
    // ... except a NAT keepalive (RFC 3948 §2.3: the single octet 0xFF, never an IKE message).
    const bool keepalive = d.payload.size() == 1 && d.payload[0] == 0xff;
    const bool natt = (d.local.port == 4500 || d.remote.port == 4500) && !keepalive;
    std::vector<std::uint8_t> buf;
    if (natt) buf.assign(4, 0);
    buf.insert(buf.end(), d.payload.begin(), d.payload.end());
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(d.remote.addr);
    to.sin_port = htons(d.remote.port);
    const int fd = d.local.port == 4500 ? fd4500_ : fd500_;
    if (::sendto(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
      return make_error(std::string("sendto: ") + std::strerror(errno));
    return {};
  }

  // Waits up to timeout_ms and hands every IKE datagram to h.
  void poll_once(dp::DatagramHandler& h, int timeout_ms) {
    pollfd p[2] = {{fd500_, POLLIN, 0}, {fd4500_, POLLIN, 0}};
    if (::poll(p, 2, timeout_ms) <= 0) return;
    for (int i = 0; i < 2; ++i)
      if (p[i].revents & POLLIN) read_one(h, p[i].fd, i == 0 ? 500 : 4500);
  }

  std::uint64_t esp_ignored = 0, keepalives = 0;

 private:
  int open_socket(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(local_);
    a.sin_port = htons(port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
      die("bind " + dp::format_ipv4(local_) + ":" + std::to_string(port) + ": " +
          std::strerror(errno));
    return fd;
  }

  void read_one(dp::DatagramHandler& h, int fd, std::uint16_t port) {
    std::uint8_t buf[65536];
    sockaddr_in from{};
    socklen_t fl = sizeof from;
    const ssize_t n =
        ::recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n <= 0) return;
    std::span<const std::uint8_t> payload(buf, static_cast<std::size_t>(n));
    if (port == 4500) {
      if (n == 1 && buf[0] == 0xff) {  // NAT-keepalive (RFC 3948 §2.3)
        ++keepalives;
        return;
      }
      if (n < 4 || buf[0] != 0 || buf[1] != 0 || buf[2] != 0 || buf[3] != 0) {
        ++esp_ignored;  // ESP in UDP: no data plane in this tool
        return;
      }
      payload = payload.subspan(4);
    }
    dp::DatagramView d;
    d.local = {local_, port};
    d.remote = {ntohl(from.sin_addr.s_addr), ntohs(from.sin_port)};
    d.payload = payload;
    h.on_datagram(d);
  }

  dp::Ipv4 local_;
  int fd500_ = -1, fd4500_ = -1;
};

// ---- recording SA installer ----

class RecordingInstaller final : public dp::SaInstaller {
 public:
  explicit RecordingInstaller(std::string keys_path) : keys_path_(std::move(keys_path)) {}

  Result<std::uint32_t> allocate_spi() override {
    for (;;) {
      std::uint32_t spi = 0;
      crypto::random_bytes(std::span<std::uint8_t>(reinterpret_cast<std::uint8_t*>(&spi), 4));
      if (spi >= 256 && !used_.count(spi)) {
        used_.insert(spi);
        return spi;
      }
    }
  }
  void release_spi(std::uint32_t spi) override { used_.erase(spi); }

  Result<void> add_sa(dp::SaSpec s) override {
    const char* dir = s.dir == dp::Direction::kInbound ? "inbound" : "outbound";
    std::cout << "SA add " << dir << " spi=" << spi_hex(s.spi) << " conn=" << s.conn_id
              << " cipher=" << crypto::to_string(s.cipher)
              << " integ=" << crypto::to_string(s.integ) << " udp_encap=" << (s.udp_encap ? 1 : 0)
              << " local=" << dp::format_ipv4(s.local_addr) << ":" << s.local_port
              << " peer=" << dp::format_ipv4(s.peer_addr) << ":" << s.peer_port
              << " local_subnet=" << dp::format_prefix(s.local_subnet)
              << " peer_subnet=" << dp::format_prefix(s.peer_subnet)
              << " enc_key_len=" << s.enc_key.size() << " auth_key_len=" << s.auth_key.size()
              << std::endl;
    if (!keys_path_.empty()) {
      std::ofstream f(keys_path_, std::ios::app);
      f << dir << " " << spi_hex(s.spi) << " " << hexs(s.enc_key) << " " << hexs(s.auth_key)
        << "\n";
      if (!f) return make_error("cannot write " + keys_path_);
    }
    ++installed;
    return {};
  }
  Result<void> del_sa(dp::Direction dir, std::uint32_t spi) override {
    std::cout << "SA del " << (dir == dp::Direction::kInbound ? "inbound" : "outbound")
              << " spi=" << spi_hex(spi) << std::endl;
    if (dir == dp::Direction::kInbound) used_.erase(spi);
    return {};
  }
  std::optional<dp::SaCounters> query_sa(dp::Direction, std::uint32_t) override {
    return std::nullopt;
  }
  std::vector<dp::SaEvent> poll_events() override { return {}; }

  int installed = 0;

 private:
  std::string keys_path_;
  std::set<std::uint32_t> used_;
};

// ---- command line ----

crypto::CipherAlg parse_cipher(const std::string& s) {
  if (s == "aes128") return crypto::CipherAlg::kAes128Cbc;
  if (s == "aes192") return crypto::CipherAlg::kAes192Cbc;
  if (s == "aes256") return crypto::CipherAlg::kAes256Cbc;
  die("unknown cipher " + s + " (aes128|aes192|aes256)");
}
crypto::DhGroup parse_group(const std::string& s) {
  if (s == "modp1024") return crypto::DhGroup::kModp1024;
  if (s == "modp1536") return crypto::DhGroup::kModp1536;
  if (s == "modp2048") return crypto::DhGroup::kModp2048;
  die("unknown DH group " + s + " (modp1024|modp1536|modp2048)");
}
std::vector<std::string> split3(const std::string& s, const char* what) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, '-')) v.push_back(t);
  if (v.size() != 3) die(std::string(what) + " must be CIPHER-HASH-GROUP, got " + s);
  return v;
}

void usage() {
  std::cerr <<
      "usage: ike_udp_peer --local IP --peer IP --local-subnet CIDR --peer-subnet CIDR\n"
      "         --psk-file FILE [--name N] [--ike aes128-sha1-modp1024]\n"
      "         [--esp aes128-sha1-modp1024] [--ike-lifetime S] [--esp-lifetime S]\n"
      "         [--dpd-interval S --dpd-timeout S --dpd-action hold|restart]\n"
      "         --initiator|--responder-only  [--keys-out FILE] [--verbose]\n"
      "         (--until-active N [--linger S] | --until-error N | --duration N)\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt;
  std::set<std::string> flags;
  const std::set<std::string> kFlags = {"--initiator", "--responder-only", "--verbose"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage();
    if (kFlags.count(a)) {
      flags.insert(a);
      continue;
    }
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) usage();
    opt[a] = argv[++i];
  }
  auto need = [&](const std::string& k) -> std::string {
    auto it = opt.find(k);
    if (it == opt.end()) die("missing " + k);
    return it->second;
  };
  auto get = [&](const std::string& k, const std::string& d) {
    auto it = opt.find(k);
    return it == opt.end() ? d : it->second;
  };
  const std::set<std::string> kKnown = {
      "--local", "--peer", "--local-subnet", "--peer-subnet", "--psk-file", "--name", "--ike",
      "--esp", "--ike-lifetime", "--esp-lifetime", "--dpd-interval", "--dpd-timeout",
      "--dpd-action", "--keys-out", "--until-active", "--linger", "--until-error",
      "--duration", "--id", "--active-count"};
  for (const auto& [k, v] : opt)
    if (!kKnown.count(k)) die("unknown option " + k);
  if (flags.count("--initiator") == flags.count("--responder-only"))
    die("give exactly one of --initiator / --responder-only");

  ike::ConnectionConfig cfg;
  cfg.name = get("--name", "interop");
  cfg.id = static_cast<std::uint32_t>(std::stoul(get("--id", "1")));
  auto la = dp::parse_ipv4(need("--local"));
  auto pa = dp::parse_ipv4(need("--peer"));
  auto ls = dp::parse_prefix(need("--local-subnet"));
  auto ps = dp::parse_prefix(need("--peer-subnet"));
  if (!la || !pa || !ls || !ps) die("bad address or subnet");
  cfg.local_addr = *la;
  cfg.peer_addr = *pa;
  cfg.local_subnet = *ls;
  cfg.peer_subnet = *ps;
  {
    std::ifstream f(need("--psk-file"));
    if (!f) die("cannot read PSK file");
    std::string psk;
    std::getline(f, psk);
    if (psk.empty()) die("empty PSK");
    cfg.psk = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(psk.data()), psk.size());
    std::fill(psk.begin(), psk.end(), '\0');
  }
  auto ikev = split3(get("--ike", "aes128-sha1-modp1024"), "--ike");
  cfg.ike.cipher = parse_cipher(ikev[0]);
  if (ikev[1] == "sha1") cfg.ike.hash = crypto::HashAlg::kSha1;
  else if (ikev[1] == "sha256") cfg.ike.hash = crypto::HashAlg::kSha256;
  else die("unknown IKE hash " + ikev[1]);
  cfg.ike.group = parse_group(ikev[2]);
  auto espv = split3(get("--esp", "aes128-sha1-modp1024"), "--esp");
  cfg.ipsec.cipher = parse_cipher(espv[0]);
  if (espv[1] == "sha1") cfg.ipsec.integ = crypto::IntegAlg::kHmacSha1_96;
  else if (espv[1] == "sha256") cfg.ipsec.integ = crypto::IntegAlg::kHmacSha256_128;
  else die("unknown ESP integrity " + espv[1]);
  cfg.ipsec.pfs = parse_group(espv[2]);
  cfg.ike.lifetime_s = static_cast<std::uint32_t>(std::stoul(get("--ike-lifetime", "3600")));
  cfg.ipsec.lifetime_s = static_cast<std::uint32_t>(std::stoul(get("--esp-lifetime", "3600")));
  cfg.dpd.interval_s = static_cast<std::uint32_t>(std::stoul(get("--dpd-interval", "30")));
  cfg.dpd.timeout_s = static_cast<std::uint32_t>(std::stoul(get("--dpd-timeout", "120")));
  const std::string dpd_action = get("--dpd-action", "hold");
  if (dpd_action == "hold") cfg.dpd.action = ike::DpdAction::kHold;
  else if (dpd_action == "restart") cfg.dpd.action = ike::DpdAction::kRestart;
  else die("--dpd-action must be hold|restart");
  const bool initiator = flags.count("--initiator") != 0;
  cfg.initiator = initiator ? ike::InitiatorMode::kBidirectional : ike::InitiatorMode::kResponseOnly;

  enum class Until { kActive, kError, kDuration } until;
  double limit_s = 0;
  if (opt.count("--until-active")) until = Until::kActive, limit_s = std::stod(opt["--until-active"]);
  else if (opt.count("--until-error")) until = Until::kError, limit_s = std::stod(opt["--until-error"]);
  else if (opt.count("--duration")) until = Until::kDuration, limit_s = std::stod(opt["--duration"]);
  else die("give one of --until-active / --until-error / --duration");
  const double linger_s = std::stod(get("--linger", "0"));
  const int active_count = std::stoi(get("--active-count", "1"));
  int times_active = 0;

  ike::set_log_level(flags.count("--verbose") ? ike::LogLevel::kDebug : ike::LogLevel::kInfo);
  ike::set_log_sink([](ike::LogLevel, std::string_view line) {
    std::cerr << "ike: " << line << std::endl;
  });

  std::string keys_out = get("--keys-out", "");
  if (!keys_out.empty()) std::ofstream(keys_out, std::ios::trunc);  // start empty

  UdpTransport net(cfg.local_addr);
  RecordingInstaller inst(keys_out);
  ike::SteadyClock clock;
  ike::Daemon daemon(net, inst, clock);
  const std::string name = cfg.name;
  if (auto r = daemon.add_connection(std::move(cfg)); !r) die(r.error());
  // A bi-directional connection initiates from tick(); nothing else to do here.
  std::cout << "ike_udp_peer: " << name << " " << (initiator ? "initiator" : "responder-only")
            << " ready" << std::endl;

  const auto t0 = clock.now();
  std::optional<ike::Millis> active_at;
  auto status_line = [&](const ike::ConnectionStatus& st) {
    std::cout << "connection " << name << ": " << ike::to_string(st.state);
    if (!st.reason.empty()) std::cout << " " << st.reason;
    if (st.child)
      std::cout << " spi_in=" << spi_hex(st.child->spi_in) << " spi_out="
                << spi_hex(st.child->spi_out) << " udp_encap=" << (st.child->udp_encap ? 1 : 0)
                << " peer_port=" << st.child->peer_port;
    std::cout << std::endl;
  };
  ike::ConnState last = ike::ConnState::kDown;
  for (;;) {
    net.poll_once(daemon, 50);
    daemon.tick();
    const auto st = daemon.status(name);
    if (st.state != last) {
      if (st.state == ike::ConnState::kActive) ++times_active;
      std::cout << "state " << ike::to_string(st.state)
                << (st.reason.empty() ? "" : " (" + st.reason + ")") << std::endl;
      last = st.state;
    }
    const double elapsed = static_cast<double>((clock.now() - t0).count()) / 1000.0;
    if (until == Until::kActive) {
      if (st.state == ike::ConnState::kActive && times_active >= active_count && !active_at)
        active_at = clock.now();
      if (active_at && static_cast<double>((clock.now() - *active_at).count()) / 1000.0 >= linger_s) {
        status_line(daemon.status(name));
        return daemon.status(name).state == ike::ConnState::kActive ? 0 : 1;
      }
      if ((st.state == ike::ConnState::kError && active_count <= 1) || elapsed >= limit_s) {
        status_line(st);
        return 1;
      }
    } else if (until == Until::kError) {
      if (st.state == ike::ConnState::kError) {
        status_line(st);
        return 0;
      }
      if (elapsed >= limit_s) {
        status_line(st);
        return 1;
      }
    } else if (elapsed >= limit_s) {
      status_line(st);
      return st.state == ike::ConnState::kActive ? 0 : 1;
    }
  }
}
