// Two IKE daemons in one process over a fake network, fake clock and fake SA installer
// (strongSwan's unit-test style): Main Mode + Quick Mode end to end.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>
#include <utility>

#include "ike/daemon.hpp"
#include "ike/log.hpp"

namespace ipsecgw::ike {
namespace {

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
  std::optional<dp::SaCounters> query_sa(dp::Direction d, std::uint32_t) override {
    if (!report_counters || d != dp::Direction::kInbound) return std::nullopt;
    dp::SaCounters c;
    c.packets = in_packets;
    return c;
  }
  bool report_counters = false;
  std::uint64_t in_packets = 0;  // what query_sa reports for inbound SAs
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

Result<void> FakeSender::send(const dp::DatagramView& d) { return net_.send(d); }

ConnectionConfig make_conn(bool a_side, const IkePolicy& ike, const IpsecPolicy& ipsec,
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

struct Pair {
  FakeClock clock;
  Network net;
  FakeSender sa{net}, sb{net};
  FakeInstaller ia{0x1000}, ib{0x2000};
  Daemon a{sa, ia, clock}, b{sb, ib, clock};

  Pair() = default;  // connections added by the test
  Pair(const IkePolicy& ike, const IpsecPolicy& ipsec) { add(ike, ipsec, ike, ipsec); }
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
void napt_in_front_of_a(Packet& pk) {
  if (pk.from.addr == kAddrA) pk.from.port = static_cast<std::uint16_t>(pk.from.port + 1000);
  if (pk.to.addr == kAddrA) pk.to.port = static_cast<std::uint16_t>(pk.to.port - 1000);
}

// A message with header `h` (next payload HASH, encryption flag set) whose 32-byte body is
// `fill` repeated: it parses but is not ciphertext under anyone's keys.
Bytes undecryptable_message(Header h, std::uint8_t fill) {
  h.flags |= kFlagEncryption;
  h.next_payload = static_cast<std::uint8_t>(PayloadType::kHash);
  h.length = static_cast<std::uint32_t>(kHeaderLen + 32);
  Bytes out;
  write_header(h, out);
  out.insert(out.end(), 32, fill);
  return out;
}

// Quick Mode messages seen on the wire (exchange type at byte 18 of the ISAKMP header).
bool is_quick_mode_on_wire(const Packet& pk) {
  return pk.data.size() >= 28 && pk.data[18] == static_cast<std::uint8_t>(ExchangeType::kQuickMode);
}

Bytes bytes(const crypto::SecureBytes& s) { return Bytes(s.data(), s.data() + s.size()); }

// Each side's outbound SA is the other's inbound one: same SPI and keys.
void expect_twin_sas(const dp::SaSpec* a_in, const dp::SaSpec* a_out, const dp::SaSpec* b_in,
                     const dp::SaSpec* b_out) {
  ASSERT_TRUE(a_in && a_out && b_in && b_out);
  EXPECT_EQ(a_out->spi, b_in->spi);
  EXPECT_EQ(b_out->spi, a_in->spi);
  EXPECT_EQ(bytes(a_out->enc_key), bytes(b_in->enc_key));
  EXPECT_EQ(bytes(a_out->auth_key), bytes(b_in->auth_key));
  EXPECT_EQ(bytes(b_out->enc_key), bytes(a_in->enc_key));
  EXPECT_EQ(bytes(b_out->auth_key), bytes(a_in->auth_key));
}

void expect_matching_sas(const Pair& p, const IpsecPolicy& ip) {
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
void expect_matching_sas_at(const Pair& p, std::size_t from) {
  ASSERT_GE(p.ia.sas.size(), from + 2);
  ASSERT_GE(p.ib.sas.size(), from + 2);
  const dp::SaSpec *a_in = nullptr, *a_out = nullptr, *b_in = nullptr, *b_out = nullptr;
  for (std::size_t i = from; i < from + 2; ++i) {
    (p.ia.sas[i].dir == dp::Direction::kInbound ? a_in : a_out) = &p.ia.sas[i];
    (p.ib.sas[i].dir == dp::Direction::kInbound ? b_in : b_out) = &p.ib.sas[i];
  }
  expect_twin_sas(a_in, a_out, b_in, b_out);
}

class Quiet : public ::testing::Test {
 protected:
  void SetUp() override { set_log_sink([](LogLevel, std::string_view) {}); }
  void TearDown() override { set_log_sink(nullptr); }
};

struct Combo {
  CipherAlg cipher;
  HashAlg hash;
  DhGroup group;
  IntegAlg integ;
};

class PolicyMatrix : public Quiet, public ::testing::WithParamInterface<Combo> {};

TEST_P(PolicyMatrix, MainAndQuickModeCompleteWithMatchingSas) {
  const Combo c = GetParam();
  IkePolicy ike{c.cipher, c.hash, c.group, 28800};
  IpsecPolicy ip{c.cipher, c.integ, c.group, 3600};
  Pair p(ike, ip);
  p.initiate();  // bi-directional: initiates on the first tick
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_matching_sas(p, ip);
  EXPECT_FALSE(p.ia.find(dp::Direction::kOutbound)->udp_encap);
  EXPECT_EQ(p.a.status("site").child->lifetime_s, 3600u);
}

std::vector<Combo> all_combos() {
  std::vector<Combo> v;
  const CipherAlg ciphers[] = {CipherAlg::kAes128Cbc, CipherAlg::kAes192Cbc, CipherAlg::kAes256Cbc};
  const HashAlg hashes[] = {HashAlg::kSha1, HashAlg::kSha256};
  const DhGroup groups[] = {DhGroup::kModp1024, DhGroup::kModp1536, DhGroup::kModp2048};
  for (auto ci : ciphers)
    for (auto h : hashes)
      for (auto g : groups)
        v.push_back({ci, h, g, h == HashAlg::kSha1 ? IntegAlg::kHmacSha1_96 : IntegAlg::kHmacSha256_128});
  return v;
}
INSTANTIATE_TEST_SUITE_P(All18, PolicyMatrix, ::testing::ValuesIn(all_combos()));

TEST_F(Quiet, MixedIkeAndEspAlgorithmsComplete) {
  IkePolicy ike{CipherAlg::kAes256Cbc, HashAlg::kSha1, DhGroup::kModp2048, 3600};
  IpsecPolicy ip{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha256_128, DhGroup::kModp1024, 1200};
  Pair p(ike, ip);
  p.initiate();
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_matching_sas(p, ip);
}

TEST_F(Quiet, WrongPskFailsAuthenticationOnBothSidesAndInstallsNothing) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip, ike, ip, "another-psk");
  p.initiate();
  auto sa = p.a.status("site"), sb = p.b.status("site");
  EXPECT_EQ(sa.state, ConnState::kError);
  EXPECT_EQ(sa.reason, "authentication failed");
  EXPECT_EQ(sb.state, ConnState::kError);
  EXPECT_EQ(sb.reason, "authentication failed");
  EXPECT_TRUE(p.ia.sas.empty());
  EXPECT_TRUE(p.ib.sas.empty());
}

// Wrong PSK, the responder is not us (strongSwan): it cannot read our MM5 and either stays
// silent or answers with an informational encrypted under its own keys (strongSwan: HASH,
// N(PAYLOAD-MALFORMED)). Modelled by B's answers to MM5 being dropped, or replaced by a
// message with the encryption flag and 32 bytes that are not ciphertext under A's keys (one
// for each copy of MM5: A resends MM5 once to confirm before concluding).
// Either way A reports what it saw -- never "peer unreachable": the peer answered MM1/MM3.
TEST_F(Quiet, WrongPskAgainstASilentResponderSaysNoResponseToMm5NotUnreachable) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip, ike, ip, "another-psk");
  int from_b = 0;
  p.net.filter = [&](Packet& pk) { return pk.from.addr != kAddrB || ++from_b <= 2; };  // MM2, MM4
  p.initiate();
  p.run_a_until_error();
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.a.status("site").reason,
            "no response to MM5 (peer rejected our authentication? check the PSK)");
  EXPECT_TRUE(p.ia.sas.empty());
}

TEST_F(Quiet, WrongPskAgainstAResponderSendingAnUndecryptableNotifyIsAuthenticationFailed) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip, ike, ip, "another-psk");
  int from_a = 0, rejections = 0;
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr != kAddrA || ++from_a <= 2) return true;  // MM1, MM3
    // Each MM5 copy is "rejected" by the responder with an encrypted notify A cannot read.
    ++rejections;
    auto h = parse_header(pk.data);
    if (!h) return false;
    std::swap(pk.from, pk.to);
    Header e = *h;
    e.exchange = static_cast<std::uint8_t>(ExchangeType::kInformational);
    e.message_id = 0x0badf00d;
    pk.data = undecryptable_message(e, 0xa5);
    return true;
  };
  p.initiate();
  auto st = p.a.status("site");
  EXPECT_EQ(st.state, ConnState::kError);
  EXPECT_EQ(st.reason.rfind("authentication failed", 0), 0u) << st.reason;
  EXPECT_EQ(rejections, 2);  // the original MM5 and one immediate copy, no timer involved
  EXPECT_TRUE(p.ia.sas.empty());
}

TEST_F(Quiet, MismatchedIkePolicyGivesNoProposalChosen) {
  IkePolicy ia{CipherAlg::kAes128Cbc, HashAlg::kSha1, DhGroup::kModp1536, 3600};
  IkePolicy ib{CipherAlg::kAes256Cbc, HashAlg::kSha1, DhGroup::kModp1536, 3600};
  IpsecPolicy ip;
  Pair p(ia, ip, ib, ip);
  p.initiate();
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.a.status("site").reason, "no proposal chosen");
  EXPECT_EQ(p.b.status("site").reason, "no proposal chosen");
  EXPECT_TRUE(p.ia.sas.empty());
}

TEST_F(Quiet, MismatchedEspPolicyGivesNoProposalChosen) {
  IkePolicy ike;
  IpsecPolicy ia{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha1_96, DhGroup::kModp1536, 3600};
  IpsecPolicy ib{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha256_128, DhGroup::kModp1536, 3600};
  Pair p(ike, ia, ike, ib);
  p.initiate();
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.a.status("site").reason, "no proposal chosen");
  EXPECT_EQ(p.b.status("site").reason, "no proposal chosen");
  EXPECT_TRUE(p.ia.sas.empty());
  EXPECT_TRUE(p.ib.sas.empty());
  EXPECT_EQ(p.ib.released.size(), 0u);  // responder never reserved an SPI
  EXPECT_EQ(p.ia.released.size(), 1u);  // initiator's reserved SPI is given back
}

TEST_F(Quiet, LostMessagesAreRetransmittedAndTheExchangeCompletes) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  // Drop the first copy of every message index 2 (MM3) and 5 (MM6) and the QM3.
  int n = 0;
  p.net.filter = [&](Packet&) {
    ++n;
    return n != 3 && n != 6 && n != 9;
  };
  p.initiate();
  EXPECT_EQ(p.a.status("site").state, ConnState::kPending);
  p.run_for(20000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_matching_sas(p, ip);
}

TEST_F(Quiet, DuplicatedRequestsAreAnsweredFromCacheNotReprocessed) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  std::deque<Packet> dup;
  p.net.filter = [&](Packet& pk) {
    dup.push_back(pk);  // deliver everything twice
    return true;
  };
  p.initiate();
  int extra = 0;
  p.net.filter = nullptr;
  while (!dup.empty() && extra < 50) {
    Packet pk = dup.front();
    dup.pop_front();
    (pk.to.addr == kAddrA ? p.a : p.b).on_datagram({pk.to, pk.from, pk.data});
    ++extra;
  }
  p.pump();
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  // Still exactly one pair of SAs each: duplicates were not processed again.
  expect_matching_sas(p, ip);
}

TEST_F(Quiet, ResponseOnlyNeverInitiates) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.tick_only_b_for(100);  // response-only; A never ticks
  EXPECT_EQ(p.net.sent, 0);
  EXPECT_EQ(p.b.status("site").state, ConnState::kDown);
}

TEST_F(Quiet, UnansweredInitiatorReportsPeerUnreachableAfterBoundedRetries) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.net.filter = [](Packet&) { return false; };
  p.initiate();
  p.run_for(2 * 60 * 1000, 1000);
  auto st = p.a.status("site");
  // After the failure a bi-directional connection retries later: either ERROR or a new try.
  EXPECT_TRUE(st.state == ConnState::kError || st.state == ConnState::kPending);
  EXPECT_LE(p.net.sent, 2 * (1 + kMaxRetransmits) + 2);
  // Drive exactly to the first failure to check the reason.
  Pair q(ike, ip);
  q.net.filter = [](Packet&) { return false; };
  q.a.tick();
  q.run_a_until_error();
  EXPECT_EQ(q.a.status("site").reason, "peer unreachable");
  EXPECT_EQ(q.net.sent, 1 + kMaxRetransmits);
}

TEST_F(Quiet, NatBetweenPeersFloatsTo4500AndInstallsUdpEncapsulatedSas) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  // A is behind a NAPT; the NAT-D hashes then disagree.
  p.net.filter = [](Packet& pk) {
    napt_in_front_of_a(pk);
    return true;
  };
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_matching_sas(p, ip);
  const auto* a_out = p.ia.find(dp::Direction::kOutbound);
  const auto* b_out = p.ib.find(dp::Direction::kOutbound);
  EXPECT_TRUE(a_out->udp_encap);
  EXPECT_TRUE(b_out->udp_encap);
  EXPECT_EQ(a_out->local_port, 4500);
  EXPECT_EQ(a_out->peer_port, 4500);
  EXPECT_EQ(b_out->local_port, 4500);
  EXPECT_EQ(b_out->peer_port, 5500);  // the NAT's mapped port
}

// RFC 3947 §4: the peer's port is updated only from authenticated messages. A is behind a
// NAPT (4500 -> 5500). Datagrams from A's address but another source port that do not
// authenticate -- a replayed MM1, a forged Main Mode message with the SA's cookies, garbage
// "encrypted" Quick Mode and informational messages -- must not move B's idea of A's port:
// B sends nothing there, installs nothing for it, and its next rekey still goes to 5500.
// After a NAT rebinding (5500 -> 6500) a Quick Mode with a tampered HASH from a third port is
// dropped without an answer and without spoiling the exchange; the authentic retransmission
// from 6500 moves B: it answers there and the CHILD SAs installed from then on carry 6500. A
// replayed authentic informational from a third port is a replay, not a move.
TEST_F(Quiet, OnlyAuthenticatedMessagesFromANewPortMoveThePeerAndItsSas) {
  IkePolicy ike;
  ike.hash = HashAlg::kSha256;  // HASH(1) then fills plaintext block 1 alone (see below)
  IpsecPolicy ip;
  Pair p(ike, ip);
  std::uint16_t nat_4500 = 5500;
  std::optional<Packet> mm1;
  Cookie ic{}, rc{};  // the SA's cookies, as an on-path attacker sees them
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA) {
      if (!mm1) mm1 = pk;
      if (auto h = parse_header(pk.data); h && h->rcookie != Cookie{}) ic = h->icookie, rc = h->rcookie;
      pk.from.port = pk.from.port == 4500 ? nat_4500 : static_cast<std::uint16_t>(pk.from.port + 1000);
    }
    if (pk.to.addr == kAddrA) {
      if (pk.to.port != 5500 && pk.to.port != 1500 && pk.to.port != nat_4500) return false;
      pk.to.port = pk.to.port == 1500 ? 500 : 4500;
    }
    return true;
  };
  p.initiate();
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.ib.find(dp::Direction::kOutbound)->peer_port, 5500);
  ASSERT_TRUE(mm1.has_value());
  const std::size_t b_sas = p.ib.sas.size();
  const auto b_child = *p.b.status("site").child;
  std::vector<Packet> b_sent;
  const dp::UdpEndpoint b_ep{kAddrB, 4500}, spoof{kAddrA, 6500};
  auto inject = [&](const Bytes& data) {
    p.b.on_datagram({b_ep, spoof, data});
    for (auto& pk : p.net.q) b_sent.push_back(pk);
    p.net.q.clear();
  };
  // 1. a replay of A's MM1 (answered, if at all, to the old port)
  inject(mm1->data);
  // 2..4: messages carrying the live SA's cookies: unencrypted ID_PROT, garbage QM and
  // garbage informational (fresh message ids, 32 random bytes of "ciphertext")
  ASSERT_NE(rc, Cookie{});
  auto forged = [&](ExchangeType ex, std::uint32_t mid) {
    Header h;
    h.icookie = ic;
    h.rcookie = rc;
    h.exchange = static_cast<std::uint8_t>(ex);
    h.message_id = mid;
    return undecryptable_message(h, 0x5a);
  };
  {
    PayloadChain c;
    c.add(PayloadType::kKe, Bytes(128, 1));
    c.add(PayloadType::kNonce, Bytes(16, 2));
    Header h;
    h.icookie = ic;
    h.rcookie = rc;
    h.exchange = static_cast<std::uint8_t>(ExchangeType::kIdentityProtection);
    inject(build_message(h, c));
  }
  inject(forged(ExchangeType::kQuickMode, 0x11223344));
  inject(forged(ExchangeType::kInformational, 0x55667788));
  for (const auto& pk : b_sent) EXPECT_NE(pk.to.port, 6500) << "B answered the unauthenticated port";
  EXPECT_EQ(p.ib.sas.size(), b_sas);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").child->spi_in, b_child.spi_in);
  // B still talks to 5500: its own rekey reaches A through the NAT and the new pair carries
  // the old, authenticated port.
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         b_child.spi_out, 9});
  p.run_for(1000, 500);
  for (const auto& pk : b_sent) EXPECT_NE(pk.to.port, 6500);
  ASSERT_EQ(p.ib.sas.size(), b_sas + 2);
  EXPECT_EQ(p.ib.sas[b_sas].peer_port, 5500);
  EXPECT_EQ(p.ib.sas[b_sas + 1].peer_port, 5500);
  EXPECT_NE(p.b.status("site").child->spi_in, b_child.spi_in);
  const std::size_t b_sas2 = p.ib.sas.size();

  // NAT rebinding: A's 4500 now maps to 6500. A's rekey QM (authenticated) moves B.
  // Its first QM1 is lost on the way; a tampered copy arrives from yet another port: a CBC
  // bit flip in ciphertext block 1 garbles plaintext block 1 (HASH bytes 12..27) and flips
  // one HASH byte in block 2, so it decrypts and parses but its HASH does not verify.
  nat_4500 = 6500;
  std::optional<Packet> a_qm1;
  std::optional<Packet> a_info;  // A's last protected informational (a Delete after grace)
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA) {
      pk.from.port = pk.from.port == 4500 ? nat_4500 : pk.from.port;
      auto h = parse_header(pk.data);
      if (h && h->exchange == static_cast<std::uint8_t>(ExchangeType::kInformational))
        a_info = pk;
      if (h && h->exchange == static_cast<std::uint8_t>(ExchangeType::kQuickMode) && !a_qm1) {
        a_qm1 = pk;
        return false;
      }
    }
    if (pk.to.addr == kAddrA) {
      if (pk.to.port != nat_4500) return false;  // the old mapping is gone
      pk.to.port = 4500;
    }
    return true;
  };
  p.ia.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         p.a.status("site").child->spi_out, 7});
  p.initiate();
  ASSERT_TRUE(a_qm1.has_value());
  Bytes tampered = a_qm1->data;
  ASSERT_GE(tampered.size(), kHeaderLen + 48);
  tampered[kHeaderLen + 16] ^= 0x01;
  const dp::UdpEndpoint spoof2{kAddrA, 7500};
  p.b.on_datagram({b_ep, spoof2, tampered});
  for (auto& pk : p.net.q) EXPECT_NE(pk.to.port, 7500) << "B answered a message that failed its HASH";
  p.net.q.clear();
  EXPECT_EQ(p.ib.sas.size(), b_sas2);
  p.run_for(kRetransmitBase.count() + 1000, 500);  // A retransmits QM1 from 6500
  ASSERT_EQ(p.ib.sas.size(), b_sas2 + 2);
  EXPECT_EQ(p.ib.sas[b_sas2].peer_port, 6500);
  EXPECT_EQ(p.ib.sas[b_sas2 + 1].peer_port, 6500);
  EXPECT_EQ(p.b.status("site").child->peer_port, 6500);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);

  // A replayed authentic informational (A's Delete of the replaced pair, HASH valid) from
  // another port is a replay, not a rebinding: B's next rekey still goes to 6500.
  p.run_for(kRekeyGrace.count() + 1000, 500);
  ASSERT_TRUE(a_info.has_value());
  p.net.q.clear();
  p.b.on_datagram({b_ep, spoof2, a_info->data});
  for (auto& pk : p.net.q) EXPECT_NE(pk.to.port, 7500);
  p.net.q.clear();
  const std::size_t b_sas3 = p.ib.sas.size();
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound,
                         p.b.status("site").child->spi_out, 9});
  p.run_for(1000, 500);
  ASSERT_EQ(p.ib.sas.size(), b_sas3 + 2);
  EXPECT_EQ(p.ib.sas[b_sas3].peer_port, 6500);
  EXPECT_EQ(p.ib.sas[b_sas3 + 1].peer_port, 6500);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, ResponderLifetimeShorterThanProposedIsHonoured) {
  IkePolicy ike;
  IpsecPolicy ia{CipherAlg::kAes128Cbc, IntegAlg::kHmacSha1_96, DhGroup::kModp1536, 7200};
  IpsecPolicy ib = ia;
  ib.lifetime_s = 900;
  Pair p(ike, ia, ike, ib);
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.a.status("site").child->lifetime_s, 900u);
  EXPECT_EQ(p.b.status("site").child->lifetime_s, 900u);
}

TEST_F(Quiet, LogsNeverContainThePsk) {
  std::string all;
  set_log_sink([&](LogLevel, std::string_view l) { all.append(l).append("\n"); });
  set_log_level(LogLevel::kDebug);
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.initiate();
  set_log_level(LogLevel::kInfo);
  EXPECT_NE(all.find("CHILD SA installed"), std::string::npos);
  EXPECT_EQ(all.find("s3cret-psk"), std::string::npos);
}

// ---- Dead peer detection (RFC 3706) ----

bool is_exchange(const Packet& pk, ExchangeType t) {
  auto h = parse_header(pk.data);
  return h && h->exchange == static_cast<std::uint8_t>(t);
}
bool is_new_main_mode(const Packet& pk) {
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

TEST_F(Quiet, DpdProbesAnIdlePeerAndStaysActiveWhileItAnswers) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.run_for(4000, 1000);
  EXPECT_EQ(p.probes, 0);  // not idle for an interval yet
  p.run_for(120000, 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  // One R-U-THERE per idle interval, each acknowledged.
  EXPECT_GE(p.probes, 120 / 5 - 2);
  EXPECT_LE(p.probes, 120 / 5 + 1);
  EXPECT_EQ(p.acks, p.probes);
  EXPECT_TRUE(p.ia.deleted.empty());
  EXPECT_EQ(p.mm1_from_a, 1);
}

TEST_F(Quiet, DpdHoldDeletesSasOfADeadPeerAndDoesNotReinitiate) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto spi_in = p.a.status("site").child->spi_in;
  const auto spi_out = p.a.status("site").child->spi_out;
  p.drop_from_b = true;
  // Idle after 5 s, first R-U-THERE then; dead 20 s later without an ACK.
  p.run_for(24000, 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_TRUE(p.ia.deleted.empty());
  p.run_for(2000, 1000);
  auto st = p.a.status("site");
  EXPECT_EQ(st.state, ConnState::kError);
  EXPECT_EQ(st.reason, "dead peer detected (DPD)");
  // R-U-THERE repeated every interval while unanswered: at 5, 10, 15, 20 s.
  EXPECT_EQ(p.probes, 4);
  ASSERT_EQ(p.ia.deleted.size(), 2u);
  EXPECT_EQ(p.ia.deleted[0], std::make_pair(dp::Direction::kOutbound, spi_out));
  EXPECT_EQ(p.ia.deleted[1], std::make_pair(dp::Direction::kInbound, spi_in));
  // hold: even with the network back, A does not initiate on its own.
  p.drop_from_b = false;
  p.run_for(10 * 60 * 1000, 5000);
  EXPECT_EQ(p.mm1_from_a, 1);
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
}

TEST_F(Quiet, DpdRestartReinitiatesAtOnceAndComesBackActive) {
  DpdPair p(DpdAction::kRestart);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_in = p.a.status("site").child->spi_in;
  p.drop_from_b = true;
  for (int i = 0; i < 60 && p.a.status("site").state == ConnState::kActive; ++i)
    p.run_for(1000, 1000);
  EXPECT_EQ(p.ia.deleted.size(), 2u);
  EXPECT_EQ(p.mm1_from_a, 2);  // the restart's MM1 went out on the detecting tick
  p.drop_from_b = false;
  p.run_for(30000, 1000);  // the lost MM1 is retransmitted
  auto st = p.a.status("site");
  ASSERT_EQ(st.state, ConnState::kActive);
  EXPECT_NE(st.child->spi_in, old_in);
  EXPECT_EQ(p.ia.sas.size(), 4u);
}

TEST_F(Quiet, DpdCountsInboundEspAsLivenessAndDoesNotProbe) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.ia.report_counters = true;
  p.drop_from_b = true;  // no IKE from B at all, but ESP keeps arriving
  for (int i = 0; i < 120; ++i) {
    ++p.ia.in_packets;
    p.run_for(1000, 1000);
  }
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.probes, 0);
  // Traffic stops: probing starts after an interval, death after the timeout.
  p.run_for(30000, 1000);
  EXPECT_GT(p.probes, 0);
  EXPECT_EQ(p.a.status("site").reason, "dead peer detected (DPD)");
}

// ---- lifetimes, rekeying, Delete, INITIAL-CONTACT, NAT keepalive, simultaneous start ----

// The live SA pairs of the two sides form exactly one matching pair in each direction.
void expect_one_live_pair(const Pair& p) {
  ASSERT_EQ(p.ia.live_in.size(), 1u);
  ASSERT_EQ(p.ib.live_in.size(), 1u);
  EXPECT_EQ(p.ia.out_current, *p.ib.live_in.begin());
  EXPECT_EQ(p.ib.out_current, *p.ia.live_in.begin());
}

std::size_t outbound_adds(const FakeInstaller& in) {
  return static_cast<std::size_t>(
      std::count(in.order.begin(), in.order.end(), dp::Direction::kOutbound));
}

IpsecPolicy short_child() {
  IpsecPolicy ip;
  ip.lifetime_s = 60;
  return ip;
}

TEST_F(Quiet, ChildSaIsRekeyedBeforeExpiryMakeBeforeBreakAndOldPairDeletedAfterGrace) {
  IkePolicy ike;
  Pair p(ike, short_child());
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_a = *p.a.status("site").child;
  // Soft expiry of the creator (A): 60 s - (10..15)% = 51..54 s; nothing before 51 s.
  p.run_for(50000, 500);
  EXPECT_EQ(p.ia.sas.size(), 2u);
  p.run_for(4500, 500);
  ASSERT_EQ(p.ia.sas.size(), 4u);  // one rekey: a new inbound and outbound SA on each side
  ASSERT_EQ(p.ib.sas.size(), 4u);
  const auto now_a = *p.a.status("site").child;
  EXPECT_NE(now_a.spi_in, old_a.spi_in);
  EXPECT_NE(now_a.spi_out, old_a.spi_out);
  EXPECT_EQ(p.b.status("site").child->spi_in, now_a.spi_out);
  // B added its new inbound SA (when sending QM2) before A's outbound switched to it, and A
  // its new inbound before its outbound.
  EXPECT_EQ(p.ib.order[2], dp::Direction::kInbound);
  EXPECT_EQ(p.ia.order[2], dp::Direction::kInbound);
  EXPECT_EQ(p.ia.order[3], dp::Direction::kOutbound);
  // Within the grace period the old inbound SAs still work.
  EXPECT_EQ(p.ia.live_in.count(old_a.spi_in), 1u);
  EXPECT_EQ(p.ib.live_in.count(old_a.spi_out), 1u);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.ia.out_current, now_a.spi_out);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  // Keys of the new pair match across the sides.
  expect_matching_sas_at(p, 2);
  // And it keeps going: several more lifetimes, always one live pair after the grace period.
  for (int i = 0; i < 3; ++i) {
    p.run_for(60000, 500);
  }
  EXPECT_GE(outbound_adds(p.ia), 4u);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
}

TEST_F(Quiet, ResponderRekeysWhenTheInitiatorDoesNotByItsLaterMargin) {
  IkePolicy ike;
  Pair p(ike, short_child());
  p.initiate();
  const auto old_b = *p.b.status("site").child;
  // A's rekey Quick Mode is lost until B has started its own.
  bool b_started = false;
  p.net.filter = [&](Packet& pk) {
    if (!is_quick_mode_on_wire(pk)) return true;
    if (pk.from.addr == kAddrB) b_started = true;
    return pk.from.addr == kAddrB || b_started;
  };
  p.run_for(57000, 500);
  EXPECT_FALSE(b_started);  // B waits past A's window (85..90% of 60 s)
  p.run_for(2000, 500);     // B's margin: 97% = 58.2 s
  ASSERT_TRUE(b_started);
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  const auto now_b = *p.b.status("site").child;
  EXPECT_NE(now_b.spi_in, old_b.spi_in);
  // B initiated this one: it installed inbound then outbound on QM2.
  EXPECT_EQ(p.ib.sas[2].dir, dp::Direction::kInbound);
  EXPECT_EQ(p.ib.sas[2].spi, now_b.spi_in);
  EXPECT_EQ(p.ib.sas[3].spi, now_b.spi_out);
  EXPECT_EQ(p.a.status("site").child->spi_in, now_b.spi_out);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  // Whatever A's late copies of its own rekey did, after the grace period and A's abandon
  // timeout exactly one pair is live and in use.
  p.run_for(static_cast<int>(kRekeyAbandonAfter.count()) + kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, HardExpiryWithoutSuccessfulRekeyDeletesThePairAndPeerHonoursTheDelete) {
  IkePolicy ike;
  Pair p(ike, short_child());
  p.initiate();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto c = *p.a.status("site").child;
  // From now on every Quick Mode message is lost: no rekey can succeed; informational
  // exchanges still pass.
  p.net.filter = [](Packet& pk) { return !is_quick_mode_on_wire(pk); };
  // A ticks and its messages are delivered before B ticks: B learns of A's hard expiry from
  // A's Delete, not from its own timer.
  p.run_a_then_b_for(61000);
  EXPECT_EQ(p.ia.live_in.count(c.spi_in), 0u);
  EXPECT_EQ(p.ia.out_current, 0u);
  EXPECT_EQ(p.ib.live_in.count(c.spi_out), 0u);
  EXPECT_EQ(p.ib.out_current, 0u);
  auto sb = p.b.status("site");
  EXPECT_EQ(sb.state, ConnState::kError);
  EXPECT_EQ(sb.reason, "deleted by peer");
}

TEST_F(Quiet, SequenceExhaustionEventFromTheDataPlaneRekeysAtOnce) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.initiate();
  const auto c = *p.a.status("site").child;
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound, c.spi_in, 9});
  p.run_for(500, 500);
  ASSERT_EQ(p.ia.sas.size(), 4u);
  EXPECT_NE(p.a.status("site").child->spi_in, c.spi_in);
  p.run_for(kRekeyGrace.count() + 1000, 500);
  expect_one_live_pair(p);
  // A soft volume limit on A's side does the same.
  const auto c2 = *p.a.status("site").child;
  p.ia.events.push_back({dp::SaEventKind::kSoftLimit, dp::Direction::kOutbound, c2.spi_out, 7});
  p.run_for(kRekeyGrace.count() + 1500, 500);
  EXPECT_EQ(p.ia.sas.size(), 6u);
  EXPECT_NE(p.a.status("site").child->spi_out, c2.spi_out);
  expect_one_live_pair(p);
}

TEST_F(Quiet, PhaseOneIsReestablishedBeforeExpiryAndTheOldIkeSaRetired) {
  IkePolicy ike;
  ike.lifetime_s = 120;
  IpsecPolicy ip;
  Pair p(ike, ip);
  int mm1 = 0;
  p.net.filter = [&](Packet& pk) {
    static const Cookie kZero{};
    if (pk.data.size() >= 28 && pk.data[18] == 2 &&
        std::equal(kZero.begin(), kZero.end(), pk.data.begin() + 8))
      ++mm1;
    return true;
  };
  p.initiate();
  const auto c = *p.a.status("site").child;
  for (int t = 0; t < 125000; t += 500) {
    p.run_for(500, 500);
    ASSERT_EQ(p.a.status("site").state, ConnState::kActive) << t;
    ASSERT_EQ(p.b.status("site").state, ConnState::kActive) << t;
  }
  EXPECT_EQ(mm1, 2);  // the first Main Mode and one re-establishment
  EXPECT_NE(p.a.status("site").child->spi_in, c.spi_in);
  expect_one_live_pair(p);
}

// The interop sequence against strongSwan: the CHILD SA is rekeyed under ISAKMP SA #1, then
// phase 1 is re-established (#2) with a new CHILD SA. strongSwan moves the CHILD SAs of #1 onto
// #2 (IKEv1 reauthentication) and ignores Deletes for them under #1, so the still-installed
// CHILD SA of #1 must be deleted with a Delete under #2. B plays strongSwan here: everything A
// sends under #1 after #2 started is lost, and A ticks (and is heard) before B's own retirement.
TEST_F(Quiet, ChildOfAReplacedIsakmpSaIsDeletedUnderTheNewestOne) {
  std::vector<std::string> lines;
  set_log_sink([&](LogLevel, std::string_view l) { lines.emplace_back(l); });
  IkePolicy ike;
  ike.lifetime_s = 100;  // soft expiry of the creator at 85..90 s
  Pair p(ike, short_child());  // CHILD SA rekey at 51..54 s
  std::optional<Cookie> first, second;
  p.net.filter = [&](Packet& pk) {
    auto h = parse_header(pk.data);
    if (!h) return true;
    if (is_new_main_mode(pk) && pk.from.addr == kAddrA) (first ? second : first) = h->icookie;
    return !(second && pk.from.addr == kAddrA && h->icookie == *first);
  };
  p.initiate();
  ASSERT_TRUE(first.has_value());
  const auto c1 = *p.a.status("site").child;
  // Rekeyed under #1, old pair deleted after the grace period, before #2 starts.
  p.run_a_then_b_for(60000);
  ASSERT_FALSE(second.has_value());
  const auto c2 = *p.a.status("site").child;
  ASSERT_NE(c2.spi_in, c1.spi_in);
  expect_one_live_pair(p);
  // #2 with its own CHILD SA; #1 and its CHILD SA (c2) retired after the grace period.
  for (int t = 0; t < 40000; t += 500) {
    p.step_a_then_b();
    ASSERT_EQ(p.a.status("site").state, ConnState::kActive) << t;
    ASSERT_EQ(p.b.status("site").state, ConnState::kActive) << t;
  }
  ASSERT_TRUE(second.has_value());
  const auto c3 = *p.a.status("site").child;
  EXPECT_NE(c3.spi_in, c2.spi_in);
  // B removed c2 because of A's Delete under #2 (A's copies under #1 never arrived).
  const std::string want = "site " + hex(*first);
  const std::string del = ": peer deleted the CHILD SA, SPI out ";
  const bool honoured = std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.rfind(want, 0) == 0 && l.find(del) != std::string::npos &&
           l.find(hex(Bytes{static_cast<std::uint8_t>(c2.spi_in >> 24),
                            static_cast<std::uint8_t>(c2.spi_in >> 16),
                            static_cast<std::uint8_t>(c2.spi_in >> 8),
                            static_cast<std::uint8_t>(c2.spi_in)})) != std::string::npos;
  });
  EXPECT_TRUE(honoured) << "B never received a Delete for the CHILD SA of #1 under #2";
  // Exactly one pair on each side, the one negotiated under #2.
  expect_one_live_pair(p);
  EXPECT_EQ(*p.ia.live_in.begin(), c3.spi_in);
  EXPECT_EQ(p.ia.out_current, c3.spi_out);
  EXPECT_EQ(p.ib.live_in.count(c2.spi_out), 0u);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, InitialContactFromARestartedPeerRemovesItsStaleSas) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.initiate();
  const auto old_b = *p.b.status("site").child;
  // A restarts without telling B: a fresh daemon and data plane, the same addresses.
  FakeInstaller ia2{0x5000};
  auto a2 = std::make_unique<Daemon>(p.sa, ia2, p.clock);
  ASSERT_TRUE(a2->add_connection(make_conn(true, ike, ip)).ok());
  a2->tick();
  for (int i = 0; i < 200 && !p.net.q.empty(); ++i) {
    Packet pk = p.net.q.front();
    p.net.q.pop_front();
    if (pk.to.addr == kAddrA) a2->on_datagram({pk.to, pk.from, pk.data});
    else p.b.on_datagram({pk.to, pk.from, pk.data});
  }
  ASSERT_EQ(a2->status("site").state, ConnState::kActive);
  EXPECT_EQ(p.ib.live_in.count(old_b.spi_in), 0u);  // removed on INITIAL-CONTACT
  ASSERT_EQ(p.ib.live_in.size(), 1u);
  EXPECT_EQ(*p.ib.live_in.begin(), a2->status("site").child->spi_out);
  EXPECT_EQ(p.ib.out_current, a2->status("site").child->spi_in);
}

TEST_F(Quiet, SimultaneousInitiationEndsWithOnePairInEachDirection) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p;
  auto cb = make_conn(false, ike, ip);
  cb.initiator = InitiatorMode::kBidirectional;
  ASSERT_TRUE(p.a.add_connection(make_conn(true, ike, ip)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
  p.a.tick();
  p.b.tick();  // both MM1s are on the wire before either is delivered
  p.pump();
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_one_live_pair(p);
  EXPECT_EQ(outbound_adds(p.ia), 1u);
  EXPECT_EQ(outbound_adds(p.ib), 1u);
  // The abandoned half-open negotiation times out without disturbing the connection.
  p.run_for(static_cast<int>(kHalfOpenTimeout.count()) + 5000, 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  expect_one_live_pair(p);
  EXPECT_EQ(p.ia.sas.size(), 2u);
  EXPECT_EQ(p.ib.sas.size(), 2u);
}

TEST_F(Quiet, NatKeepalivesGoFromTheSideBehindTheNatEvery20s) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  int ka_from_a = 0, ka_from_b = 0;
  p.net.filter = [&](Packet& pk) {
    const bool ka = pk.data == Bytes{0xff};
    if (ka) {
      EXPECT_EQ(pk.to.port, 4500);
      EXPECT_EQ(pk.from.port, 4500);  // as sent, before the NAT maps it
      (pk.from.addr == kAddrA ? ka_from_a : ka_from_b)++;
    }
    napt_in_front_of_a(pk);
    return !ka;  // B's data plane would not pass them to IKE
  };
  p.initiate();
  ASSERT_TRUE(p.a.status("site").child->udp_encap);
  p.run_for(61000, 500);
  EXPECT_GE(ka_from_a, 3);
  EXPECT_LE(ka_from_a, 4);
  EXPECT_EQ(ka_from_b, 0);
}

// ---- trap policies and acquires ----

dp::SaEvent acquire(std::uint32_t conn) {
  return {dp::SaEventKind::kAcquire, dp::Direction::kOutbound, 0, conn};
}

TEST_F(Quiet, EachConnectionGetsATrapThatOutlivesItsSasUntilTheConnectionIsRemoved) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  ASSERT_EQ(p.ia.traps.count(7), 1u);
  EXPECT_EQ(p.ia.traps[7].first, *dp::parse_prefix("10.1.0.0/16"));
  EXPECT_EQ(p.ia.traps[7].second, *dp::parse_prefix("10.2.0.0/24"));
  EXPECT_EQ(p.ib.traps.count(9), 1u);  // response-only too: its traffic waits, never leaks
  p.drop_from_b = true;
  p.run_for(30000, 1000);  // DPD hold: SAs deleted
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  EXPECT_EQ(p.ia.out_current, 0u);
  EXPECT_EQ(p.ia.traps.count(7), 1u);
  // Administrative removal takes the trap away and tells the peer.
  ASSERT_TRUE(p.b.remove_connection("site"));
  EXPECT_EQ(p.ib.traps.count(9), 0u);
  EXPECT_TRUE(p.ib.live_in.empty());
  EXPECT_FALSE(p.b.remove_connection("site"));
  EXPECT_TRUE(p.b.connection_names().empty());
}

TEST_F(Quiet, AdminDownConnectionGetsNoTrap) {
  Pair p;
  ConnectionConfig c = make_conn(true, {}, {});
  c.admin_state_up = false;
  ASSERT_TRUE(p.a.add_connection(std::move(c)));
  EXPECT_TRUE(p.ia.traps.empty());
}

TEST_F(Quiet, AcquireAfterDpdHoldRenegotiatesAndComesBackActive) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  const auto old_in = p.a.status("site").child->spi_in;
  p.drop_from_b = true;
  p.run_for(30000, 1000);
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  p.drop_from_b = false;
  p.run_for(60000, 5000);
  EXPECT_EQ(p.mm1_from_a, 1);  // hold: nothing without traffic
  // Traffic hits the trap: the data plane reports an acquire.
  p.ia.events.push_back(acquire(7));
  p.run_for(5000, 500);
  EXPECT_EQ(p.mm1_from_a, 2);
  auto st = p.a.status("site");
  ASSERT_EQ(st.state, ConnState::kActive);
  EXPECT_NE(st.child->spi_in, old_in);
  EXPECT_EQ(p.ia.out_current, st.child->spi_out);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, AcquireWhileActiveOrNegotiatingStartsNothingNew) {
  DpdPair p(DpdAction::kHold);
  ASSERT_EQ(p.a.status("site").state, ConnState::kActive);
  p.ia.events = {acquire(7), acquire(7)};
  p.run_for(5000, 500);
  EXPECT_EQ(p.mm1_from_a, 1);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
}

TEST_F(Quiet, AcquireForAResponseOnlyConnectionWaitsForThePeer) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  p.ib.events.push_back(acquire(9));  // B is response-only
  p.tick_only_b_for(10);
  EXPECT_EQ(p.net.sent, 0);
  EXPECT_EQ(p.b.status("site").state, ConnState::kDown);
}

TEST_F(Quiet, AcquireDuringTheRetryDelayAfterAFailureWaitsForTheTimer) {
  IkePolicy ike;
  IpsecPolicy ip;
  Pair p(ike, ip);
  int mm1 = 0;  // MM1s sent by A, retransmissions included
  p.net.filter = [&](Packet& pk) {
    if (pk.from.addr == kAddrA && is_new_main_mode(pk)) ++mm1;
    return false;  // B never hears anything: A's attempt fails as unreachable
  };
  for (int i = 0; i < 600 && p.a.status("site").state != ConnState::kError; ++i)
    p.run_for(1000, 1000);
  ASSERT_EQ(p.a.status("site").state, ConnState::kError);
  const int after_failure = mm1;
  p.ia.events.push_back(acquire(7));
  p.run_for(1000, 1000);
  EXPECT_EQ(mm1, after_failure);  // kRetryAfterFailure rate-limits acquires too
  EXPECT_EQ(p.a.status("site").state, ConnState::kError);
  p.run_for(static_cast<int>(kRetryAfterFailure.count()), 1000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kPending);  // the retry timer initiates
  EXPECT_GT(mm1, after_failure);
}

TEST(ConnectionConfig, ValidationNamesTheField) {
  ConnectionConfig c = make_conn(true, {}, {});
  EXPECT_TRUE(validate(c).ok());
  c.dpd.timeout_s = c.dpd.interval_s;
  auto r = validate(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("dpd timeout"), std::string::npos);
  c = make_conn(true, {}, {});
  c.ike.lifetime_s = 59;
  EXPECT_FALSE(validate(c).ok());
}

}  // namespace
}  // namespace ipsecgw::ike
