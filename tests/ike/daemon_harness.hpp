// The two-daemon harness of the IKE tests (strongSwan's unit-test style): two Daemons in one
// process over a fake network, with a fake clock and fake SA installers, plus the checks the
// test files share. Main Mode + Quick Mode run end to end through it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike::test {

using crypto::CipherAlg;
using crypto::DhGroup;
using crypto::HashAlg;
using crypto::IntegAlg;

constexpr dp::Ipv4 kAddrA = 0xc0000201;  // 192.0.2.1
constexpr dp::Ipv4 kAddrB = 0xc6336402;  // 198.51.100.2

class FakeClock final : public Clock {
 public:
  Millis now() const override { return t; }
  Millis t{1000000};
};

struct Packet {
  dp::UdpEndpoint from, to;
  Bytes data;
};

class Network;
class FakeSender final : public dp::DatagramSender {
 public:
  explicit FakeSender(Network& n) : net_(n) {}
  Result<void> send(const dp::DatagramView& d) override;
  Network& net_;
};

class FakeInstaller final : public dp::SaInstaller {
 public:
  Result<std::uint32_t> allocate_spi() override { return next_spi_++; }
  void release_spi(std::uint32_t spi) override { released.insert(spi); }
  // Models DpSaInstaller: inbound SAs by SPI; one outbound SA per selector pair, replaced by
  // a later add (make-before-break) and deleted only while it is the current one.
  Result<void> add_sa(dp::SaSpec s) override {
    order.push_back(s.dir);
    if (s.dir == dp::Direction::kInbound) live_in.insert(s.spi);
    else out_current = s.spi;
    sas.push_back(std::move(s));
    return {};
  }
  Result<void> del_sa(dp::Direction dir, std::uint32_t spi) override {
    deleted.emplace_back(dir, spi);
    if (dir == dp::Direction::kInbound) {
      if (live_in.erase(spi) == 0) return make_error("no inbound SA");
    } else {
      if (out_current != spi) return make_error("no outbound SA");
      out_current = 0;
    }
    return {};
  }
  std::set<std::uint32_t> live_in;
  std::uint32_t out_current = 0;
  std::vector<dp::SaEvent> events;  // handed out by the next poll_events()
  // Trap policies by conn_id, as DpSaInstaller keeps them (they outlive the SAs).
  Result<void> install_trap(std::uint32_t conn, dp::Ipv4Prefix l, dp::Ipv4Prefix r) override {
    traps[conn] = {l, r};
    return {};
  }
  Result<void> remove_trap(std::uint32_t conn) override {
    if (traps.erase(conn) == 0) return make_error("no trap");
    return {};
  }
  std::map<std::uint32_t, std::pair<dp::Ipv4Prefix, dp::Ipv4Prefix>> traps;
  std::optional<dp::SaCounters> query_sa(dp::Direction d, std::uint32_t spi) override {
    dp::SaCounters c;
    if (auto it = in_packets_by_spi.find(spi);
        d == dp::Direction::kInbound && it != in_packets_by_spi.end() && live_in.count(spi)) {
      c.packets = it->second;
      return c;
    }
    if (!report_counters) return std::nullopt;
    c.packets = d == dp::Direction::kInbound ? in_packets : out_packets;
    return c;
  }
  bool report_counters = false;
  std::uint64_t in_packets = 0;   // what query_sa reports for inbound SAs
  std::uint64_t out_packets = 0;  // and for outbound ones
  // Per-SPI inbound packet counts; an SPI listed here reports its own count.
  std::map<std::uint32_t, std::uint64_t> in_packets_by_spi;
  std::vector<dp::SaEvent> poll_events() override { return std::exchange(events, {}); }
  const dp::SaSpec* find(dp::Direction d) const {
    for (const auto& s : sas)
      if (s.dir == d) return &s;
    return nullptr;
  }
  explicit FakeInstaller(std::uint32_t base) : next_spi_(base) {}
  std::vector<dp::SaSpec> sas;
  std::vector<dp::Direction> order;
  std::vector<std::pair<dp::Direction, std::uint32_t>> deleted;
  std::set<std::uint32_t> released;

 private:
  std::uint32_t next_spi_;
};

// The real key source, or failing DH key generation while `fail_dh` is set.
class FlakyKeys final : public KeySource {
 public:
  Result<crypto::DhKeyPair> dh(crypto::DhGroup g) override {
    ++dh_calls;
    if (fail_dh) return make_error("injected failure");
    return KeySource::dh(g);
  }
  bool fail_dh = false;
  int dh_calls = 0;
};

class Network {
 public:
  std::deque<Packet> q;
  std::function<bool(Packet&)> filter;  // return false to drop; may rewrite
  Result<void> send(const dp::DatagramView& d) {
    q.push_back({d.local, d.remote, Bytes(d.payload.begin(), d.payload.end())});
    ++sent;
    return {};
  }
  int sent = 0;
};

inline Result<void> FakeSender::send(const dp::DatagramView& d) { return net_.send(d); }

inline ConnectionConfig make_conn(bool a_side, const IkePolicy& ike, const IpsecPolicy& ipsec,
                           std::string psk = "s3cret-psk") {
  ConnectionConfig c;
  c.name = "site";
  c.id = a_side ? 7 : 9;
  c.local_addr = a_side ? kAddrA : kAddrB;
  c.peer_addr = a_side ? kAddrB : kAddrA;
  c.local_subnet = a_side ? *dp::parse_prefix("10.1.0.0/16") : *dp::parse_prefix("10.2.0.0/24");
  c.peer_subnet = a_side ? *dp::parse_prefix("10.2.0.0/24") : *dp::parse_prefix("10.1.0.0/16");
  c.psk = crypto::SecureBytes(reinterpret_cast<const std::uint8_t*>(psk.data()), psk.size());
  c.ike = ike;
  c.ipsec = ipsec;
  c.initiator = a_side ? InitiatorMode::kBidirectional : InitiatorMode::kResponseOnly;
  return c;
}

// Pair(kDefaults): one connection with the default IKE and IPsec policies on both sides.
struct DefaultPolicies {};
inline constexpr DefaultPolicies kDefaults{};

struct Pair {
  FakeClock clock;
  Network net;
  FakeSender sa{net}, sb{net};
  FakeInstaller ia{0x1000}, ib{0x2000};
  FlakyKeys ka, kb;
  Daemon a{sa, ia, clock, &ka}, b{sb, ib, clock, &kb};

  Pair() = default;  // connections added by the test
  Pair(const IkePolicy& ike, const IpsecPolicy& ipsec) { add(ike, ipsec, ike, ipsec); }
  explicit Pair(DefaultPolicies) : Pair(IkePolicy{}, IpsecPolicy{}) {}
  Pair(const IkePolicy& ike_a, const IpsecPolicy& ipsec_a, const IkePolicy& ike_b,
       const IpsecPolicy& ipsec_b, std::string psk_b = "s3cret-psk") {
    add(ike_a, ipsec_a, ike_b, ipsec_b, std::move(psk_b));
  }
  void add(const IkePolicy& ike_a, const IpsecPolicy& ipsec_a, const IkePolicy& ike_b,
           const IpsecPolicy& ipsec_b, std::string psk_b = "s3cret-psk") {
    EXPECT_TRUE(a.add_connection(make_conn(true, ike_a, ipsec_a)).ok());
    EXPECT_TRUE(b.add_connection(make_conn(false, ike_b, ipsec_b, psk_b)).ok());
  }
  // Delivers queued datagrams until the network is quiet (bounded).
  void pump(int max = 200) {
    while (!net.q.empty() && max-- > 0) {
      Packet p = net.q.front();
      net.q.pop_front();
      if (net.filter && !net.filter(p)) continue;
      Daemon& dst = p.to.addr == kAddrA ? a : b;
      dst.on_datagram({p.to, p.from, p.data});
    }
  }
  // A (bi-directional) initiates on its first tick; the exchange runs until the network is quiet.
  void initiate() {
    a.tick();
    pump();
  }
  // Advances time in steps, ticking both daemons and pumping, for at most `ms`.
  void run_for(int ms, int step = 500) {
    for (int t = 0; t < ms; t += step) {
      clock.t += Millis{step};
      a.tick();
      b.tick();
      pump();
    }
  }
  // As run_for, but A ticks and its messages are delivered before B ticks, in 500 ms steps.
  void run_a_then_b_for(int ms) {
    for (int t = 0; t < ms; t += 500) step_a_then_b();
  }
  void step_a_then_b() {
    clock.t += Millis{500};
    a.tick();
    pump();
    b.tick();
    pump();
  }
  // Only A ticks, once a second, until its connection is in error (at most `max_s` seconds).
  void run_a_until_error(int max_s = 100) {
    for (int i = 0; i < max_s && a.status("site").state != ConnState::kError; ++i) {
      clock.t += Millis{1000};
      a.tick();
      pump();
    }
  }
  // Only B ticks, once a second, for `s` seconds; nothing is delivered.
  void tick_only_b_for(int s) {
    for (int i = 0; i < s; ++i) {
      clock.t += Millis{1000};
      b.tick();
    }
  }
};

// A network filter: A sits behind a NAPT that keeps its address but maps its source ports
// (500 -> 1500, 4500 -> 5500).
inline void napt_in_front_of_a(Packet& pk) {
  if (pk.from.addr == kAddrA) pk.from.port = static_cast<std::uint16_t>(pk.from.port + 1000);
  if (pk.to.addr == kAddrA) pk.to.port = static_cast<std::uint16_t>(pk.to.port - 1000);
}

// A message with header `h` (next payload HASH, encryption flag set) whose 32-byte body is
// `fill` repeated: it parses but is not ciphertext under anyone's keys.
inline Bytes undecryptable_message(Header h, std::uint8_t fill) {
  h.flags |= kFlagEncryption;
  h.next_payload = static_cast<std::uint8_t>(PayloadType::kHash);
  h.length = static_cast<std::uint32_t>(kHeaderLen + 32);
  Bytes out;
  write_header(h, out);
  out.insert(out.end(), 32, fill);
  return out;
}

// Quick Mode messages seen on the wire (exchange type at byte 18 of the ISAKMP header).
inline bool is_quick_mode_on_wire(const Packet& pk) {
  return pk.data.size() >= 28 && pk.data[18] == static_cast<std::uint8_t>(ExchangeType::kQuickMode);
}

inline Bytes bytes(const crypto::SecureBytes& s) { return Bytes(s.data(), s.data() + s.size()); }

// Each side's outbound SA is the other's inbound one: same SPI and keys.
inline void expect_twin_sas(const dp::SaSpec* a_in, const dp::SaSpec* a_out, const dp::SaSpec* b_in,
                     const dp::SaSpec* b_out) {
  ASSERT_TRUE(a_in && a_out && b_in && b_out);
  EXPECT_EQ(a_out->spi, b_in->spi);
  EXPECT_EQ(b_out->spi, a_in->spi);
  EXPECT_EQ(bytes(a_out->enc_key), bytes(b_in->enc_key));
  EXPECT_EQ(bytes(a_out->auth_key), bytes(b_in->auth_key));
  EXPECT_EQ(bytes(b_out->enc_key), bytes(a_in->enc_key));
  EXPECT_EQ(bytes(b_out->auth_key), bytes(a_in->auth_key));
}

inline void expect_matching_sas(const Pair& p, const IpsecPolicy& ip) {
  ASSERT_EQ(p.ia.sas.size(), 2u);
  ASSERT_EQ(p.ib.sas.size(), 2u);
  // Inbound installed before outbound on both sides.
  EXPECT_EQ(p.ia.order[0], dp::Direction::kInbound);
  EXPECT_EQ(p.ib.order[0], dp::Direction::kInbound);
  const auto* a_out = p.ia.find(dp::Direction::kOutbound);
  const auto* a_in = p.ia.find(dp::Direction::kInbound);
  const auto* b_out = p.ib.find(dp::Direction::kOutbound);
  const auto* b_in = p.ib.find(dp::Direction::kInbound);
  ASSERT_NO_FATAL_FAILURE(expect_twin_sas(a_in, a_out, b_in, b_out));
  EXPECT_NE(bytes(a_out->enc_key), bytes(a_in->enc_key));
  EXPECT_EQ(a_out->enc_key.size(), crypto::cipher_key_len(ip.cipher));
  EXPECT_EQ(a_out->auth_key.size(), crypto::integ_key_len(ip.integ));
  EXPECT_EQ(a_out->cipher, ip.cipher);
  EXPECT_EQ(b_in->integ, ip.integ);
  EXPECT_EQ(a_out->local_subnet, *dp::parse_prefix("10.1.0.0/16"));
  EXPECT_EQ(a_out->peer_subnet, *dp::parse_prefix("10.2.0.0/24"));
  EXPECT_EQ(b_out->local_subnet, *dp::parse_prefix("10.2.0.0/24"));
  EXPECT_EQ(a_out->peer_addr, kAddrB);
  EXPECT_EQ(b_out->peer_addr, kAddrA);
  EXPECT_EQ(a_out->conn_id, 7u);
  EXPECT_EQ(b_out->conn_id, 9u);
}

// The SAs added at positions [from, from+2) on both sides (inbound, outbound) match.
inline void expect_matching_sas_at(const Pair& p, std::size_t from) {
  ASSERT_GE(p.ia.sas.size(), from + 2);
  ASSERT_GE(p.ib.sas.size(), from + 2);
  const dp::SaSpec *a_in = nullptr, *a_out = nullptr, *b_in = nullptr, *b_out = nullptr;
  for (std::size_t i = from; i < from + 2; ++i) {
    (p.ia.sas[i].dir == dp::Direction::kInbound ? a_in : a_out) = &p.ia.sas[i];
    (p.ib.sas[i].dir == dp::Direction::kInbound ? b_in : b_out) = &p.ib.sas[i];
  }
  expect_twin_sas(a_in, a_out, b_in, b_out);
}

// Both sides report the connection active.
inline void expect_both_active(const Pair& p) {
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

// The negotiation failed with NO-PROPOSAL-CHOSEN on both sides; A installed nothing.
inline void expect_no_proposal_chosen(const Pair& p) {
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.a.status("site").reason, "no proposal chosen");
  EXPECT_EQ(p.b.status("site").reason, "no proposal chosen");
  EXPECT_TRUE(p.ia.sas.empty());
}

class Quiet : public ::testing::Test {
 protected:
  void SetUp() override { set_log_sink([](LogLevel, std::string_view) {}); }
  void TearDown() override { set_log_sink(nullptr); }
};

// ---- packet classifiers; a pair whose A probes with DPD (RFC 3706) ----

inline bool is_exchange(const Packet& pk, ExchangeType t) {
  auto h = parse_header(pk.data);
  return h && h->exchange == static_cast<std::uint8_t>(t);
}
inline bool is_new_main_mode(const Packet& pk) {
  auto h = parse_header(pk.data);
  static const Cookie kZero{};
  return h && h->exchange == static_cast<std::uint8_t>(ExchangeType::kIdentityProtection) &&
         h->rcookie == kZero;
}

// A probes (interval 5 s, timeout 20 s, `action`); B answers but never probes itself within
// the test, so A's informational messages are R-U-THEREs and B's are ACKs.
struct DpdPair : Pair {
  explicit DpdPair(DpdAction action) {
    ConnectionConfig ca = make_conn(true, {}, {});
    ca.dpd = {action, 5, 20};
    ConnectionConfig cb = make_conn(false, {}, {});
    cb.dpd = {DpdAction::kHold, 100000, 200000};
    EXPECT_TRUE(a.add_connection(std::move(ca)).ok());
    EXPECT_TRUE(b.add_connection(std::move(cb)).ok());
    net.filter = [this](Packet& pk) {
      if (pk.from.addr == kAddrA && is_exchange(pk, ExchangeType::kInformational)) ++probes;
      if (pk.from.addr == kAddrB && is_exchange(pk, ExchangeType::kInformational)) ++acks;
      if (pk.from.addr == kAddrA && is_new_main_mode(pk)) ++mm1_from_a;
      return !(drop_from_b && pk.from.addr == kAddrB);
    };
    a.tick();
    pump();
  }
  bool drop_from_b = false;
  int probes = 0, acks = 0, mm1_from_a = 0;
};

// ---- the live SA pairs; a short CHILD SA lifetime ----

// The live SA pairs of the two sides form exactly one matching pair in each direction.
inline void expect_one_live_pair(const Pair& p) {
  ASSERT_EQ(p.ia.live_in.size(), 1u);
  ASSERT_EQ(p.ib.live_in.size(), 1u);
  EXPECT_EQ(p.ia.out_current, *p.ib.live_in.begin());
  EXPECT_EQ(p.ib.out_current, *p.ia.live_in.begin());
}

inline std::size_t outbound_adds(const FakeInstaller& in) {
  return static_cast<std::size_t>(
      std::count(in.order.begin(), in.order.end(), dp::Direction::kOutbound));
}

inline IpsecPolicy short_child() {
  IpsecPolicy ip;
  ip.lifetime_s = 60;
  return ip;
}

}  // namespace ipsecgw::ike::test
