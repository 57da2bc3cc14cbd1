// Connection status from IKE daemon and data-plane events (app/connections.*): the Neutron
// status and reason mapping, the detail (phases, algorithms, peer port, SPIs), the last error
// and rekey times, the traffic totals across rekeys, and the API's status_detail / vpnservice
// status. The daemons are real (two in one process, tests/ike/daemon_harness.hpp).
#include <gtest/gtest.h>

#include "app/api/handler.hpp"
#include "app/connections.hpp"
#include "app/status_json.hpp"
#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::app {
namespace {

using ike::ConnState;
using ike::test::DpdPair;
using ike::test::kAddrB;
using ike::test::Pair;

class ConnStatus : public ike::test::Quiet {};

WallClock::time_point at(long s) { return WallClock::time_point(std::chrono::seconds(s)); }

ConnRow refreshed(ConnectionStatus& cs, const ike::Daemon& d, dp::SaInstaller* sas,
                  WallClock::time_point now) {
  cs.refresh(d, sas, now);
  return cs.rows().at(0);
}

TEST(NeutronStatusOf, MapsEachDaemonStateWithItsReason) {
  ike::ConnectionDetail d;
  EXPECT_EQ(neutron_status_of(d).state, "DOWN");
  EXPECT_EQ(neutron_status_of(d).reason, "");
  d.status.state = ConnState::kPending;
  EXPECT_EQ(neutron_status_of(d).state, "PENDING_CREATE");
  d.status.state = ConnState::kActive;
  EXPECT_EQ(neutron_status_of(d).state, "ACTIVE");
  d.status = {ConnState::kError, "authentication failed", std::nullopt};
  EXPECT_EQ(neutron_status_of(d).state, "ERROR");
  EXPECT_EQ(neutron_status_of(d).reason, "authentication failed");
  // A tunnel that ended (dead peer, the peer's Delete) is DOWN, with the reason.
  d.status.reason = ike::kReasonDeadPeer;
  d.tunnel_ended = true;
  EXPECT_EQ(neutron_status_of(d).state, "DOWN");
  EXPECT_EQ(neutron_status_of(d).reason, ike::kReasonDeadPeer);
  d.admin_state_up = false;
  EXPECT_EQ(neutron_status_of(d).state, "DOWN");
  EXPECT_EQ(neutron_status_of(d).reason, "admin_state_up false");
}

TEST_F(ConnStatus, PendingThenActiveWithDetailFromTheDaemon) {
  ike::IkePolicy ike;
  ike.cipher = crypto::CipherAlg::kAes256Cbc;
  ike.hash = crypto::HashAlg::kSha256;
  ike.group = crypto::DhGroup::kModp2048;
  ike::IpsecPolicy esp;
  esp.integ = crypto::IntegAlg::kHmacSha256_128;
  esp.pfs = crypto::DhGroup::kModp2048;
  Pair p(ike, esp);
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  ConnRow r = refreshed(cs, p.a, &p.ia, at(100));
  EXPECT_EQ(r.state, "DOWN");
  p.a.tick();  // MM1 out, nothing delivered yet
  r = refreshed(cs, p.a, &p.ia, at(101));
  EXPECT_EQ(r.state, "PENDING_CREATE");
  EXPECT_EQ(r.phase1, "MM1_SENT");
  EXPECT_EQ(r.phase2, "NONE");
  p.pump();
  r = refreshed(cs, p.a, &p.ia, at(102));
  ASSERT_EQ(r.state, "ACTIVE");
  const auto child = *p.a.status("site").child;
  EXPECT_EQ(r.spi_in, child.spi_in);
  EXPECT_EQ(r.spi_out, child.spi_out);
  EXPECT_EQ(r.phase1, "ESTABLISHED");
  EXPECT_EQ(r.phase2, "INSTALLED");
  EXPECT_EQ(r.ike_algorithms, "aes-256-cbc/sha256/modp2048");
  EXPECT_EQ(r.esp_algorithms, "aes-128-cbc/hmac-sha256-128/modp2048");
  EXPECT_EQ(r.peer_port, 500);
  EXPECT_EQ(r.last_error, "");
  EXPECT_EQ(r.last_rekey_at, "");
  const auto j = status_detail_json(r);
  char spi[16];
  std::snprintf(spi, sizeof spi, "0x%08x", child.spi_in);
  EXPECT_EQ(j["spi_in"], spi);
  EXPECT_EQ(j["phase2"], "INSTALLED");
}

// A peer's port after NAT is the one we reach it at (NAT-T floats to 4500, the NAPT maps it).
TEST_F(ConnStatus, PeerPortIsTheOneAfterNat) {
  Pair q;
  q.add({}, {}, {}, {});
  q.net.filter = [](ike::test::Packet& pk) {
    ike::test::napt_in_front_of_a(pk);
    return true;
  };
  q.initiate();
  ConnectionStatus cs;
  cs.add_ike_connection("site", ike::test::kAddrA);
  const ConnRow r = refreshed(cs, q.b, &q.ib, at(1));
  ASSERT_EQ(r.state, "ACTIVE");
  EXPECT_TRUE(r.udp_encap);
  EXPECT_EQ(r.peer_port, 5500);  // A's 4500 as the NAPT maps it
}

TEST_F(ConnStatus, WrongPskIsErrorWithReasonAndTime) {
  Pair p(ike::IkePolicy{}, ike::IpsecPolicy{}, ike::IkePolicy{}, ike::IpsecPolicy{}, "other");
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  refreshed(cs, p.a, &p.ia, at(10));
  p.initiate();
  p.run_a_until_error();
  const ConnRow r = refreshed(cs, p.a, &p.ia, at(20));
  EXPECT_EQ(r.state, "ERROR");
  EXPECT_FALSE(r.reason.empty());
  EXPECT_EQ(r.last_error, r.reason);
  EXPECT_EQ(r.last_error_at, iso8601(at(20)));
  EXPECT_EQ(r.spi_in, 0u);
  // Unchanged on later refreshes: the time is the one it was first seen.
  EXPECT_EQ(refreshed(cs, p.a, &p.ia, at(30)).last_error_at, iso8601(at(20)));
}

TEST_F(ConnStatus, DeadPeerIsDownWithReasonAndTheLastErrorStays) {
  DpdPair p(ike::DpdAction::kHold);
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  ASSERT_EQ(refreshed(cs, p.a, &p.ia, at(0)).state, "ACTIVE");
  p.drop_from_b = true;
  p.run_for(26000, 1000);
  const ConnRow r = refreshed(cs, p.a, &p.ia, at(26));
  EXPECT_EQ(r.state, "DOWN");
  EXPECT_EQ(r.reason, "dead peer detected (DPD)");
  EXPECT_EQ(r.last_error, "dead peer detected (DPD)");
  EXPECT_EQ(r.last_error_at, iso8601(at(26)));
  EXPECT_EQ(r.spi_in, 0u);
  EXPECT_EQ(r.phase1, "NONE");
  // Back up (the peer initiates): ACTIVE, and the last error is still shown.
  p.drop_from_b = false;
  ASSERT_TRUE(p.a.initiate("site").ok());
  p.pump();
  const ConnRow up = refreshed(cs, p.a, &p.ia, at(30));
  EXPECT_EQ(up.state, "ACTIVE");
  EXPECT_EQ(up.last_error, "dead peer detected (DPD)");
  EXPECT_EQ(up.last_error_at, iso8601(at(26)));
  EXPECT_EQ(up.last_rekey_at, "");  // a new tunnel, not a rekey
}

TEST_F(ConnStatus, AdminDownConnectionIsDownWithThatReason) {
  Pair p;
  auto c = ike::test::make_conn(true, {}, {});
  c.admin_state_up = false;
  ASSERT_TRUE(p.a.add_connection(std::move(c)).ok());
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  const ConnRow r = refreshed(cs, p.a, &p.ia, at(0));
  EXPECT_EQ(r.state, "DOWN");
  EXPECT_EQ(r.reason, "admin_state_up false");
  EXPECT_EQ(r.last_error, "");
}

TEST_F(ConnStatus, RekeySetsItsTimeAndTrafficTotalsSpanThePairs) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  p.ia.report_counters = true;
  p.ia.in_packets = 40;
  p.ia.out_packets = 30;
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  ConnRow r = refreshed(cs, p.a, &p.ia, at(0));
  EXPECT_EQ(r.in_packets, 40u);
  EXPECT_EQ(r.out_packets, 30u);
  // Counters are read at most once a second: at 0.5 s the row keeps the last read.
  p.ia.in_packets = 45;
  r = refreshed(cs, p.a, &p.ia, at(0) + std::chrono::milliseconds(500));
  EXPECT_EQ(r.in_packets, 40u);
  // The data plane's sequence counter runs out: the daemon rekeys; the new pair starts at 0.
  const auto old = *p.a.status("site").child;
  p.ib.events.push_back({dp::SaEventKind::kSeqExhausted, dp::Direction::kOutbound, old.spi_in, 9});
  p.run_for(500, 500);
  ASSERT_NE(p.a.status("site").child->spi_in, old.spi_in);
  p.ia.in_packets = 0;  // what the fake reports for any SA: the new pair's count ...
  p.ia.out_packets = 0;
  r = refreshed(cs, p.a, &p.ia, at(3));
  EXPECT_EQ(r.state, "ACTIVE");
  EXPECT_EQ(r.last_rekey_at, iso8601(at(3)));
  EXPECT_EQ(r.in_packets, 40u);  // ... plus the replaced pair's last read
  EXPECT_EQ(r.out_packets, 30u);
  p.ia.in_packets = 5;
  r = refreshed(cs, p.a, &p.ia, at(5));
  EXPECT_EQ(r.in_packets, 45u);
}

TEST_F(ConnStatus, OneLogLinePerStatusChangeNotPerCounterChange) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  p.ia.report_counters = true;
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(0)));  // first: changed (and logged)
  EXPECT_FALSE(cs.refresh(p.a, &p.ia, at(2)));  // nothing new
  p.ia.in_packets = 7;
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(4)));  // the counters changed: rows republished
  const ConnRow r = cs.rows().at(0);
  ConnRow same = r;
  same.in_packets = 99;
  same.last_rekey_at = "x";
  EXPECT_TRUE(same_status(r, same));  // ... but no log line
  same.spi_in ^= 1;
  EXPECT_FALSE(same_status(r, same));
  EXPECT_NE(describe_row(r).find("ACTIVE spi_in 0x"), std::string::npos);
}

TEST(VpnserviceStatus, FollowsItsConnections) {
  using api::vpnservice_status;
  EXPECT_EQ(vpnservice_status(true, {}), "DOWN");
  EXPECT_EQ(vpnservice_status(true, {"DOWN", "ERROR"}), "ERROR");
  EXPECT_EQ(vpnservice_status(true, {"ERROR", "PENDING_CREATE"}), "PENDING_CREATE");
  EXPECT_EQ(vpnservice_status(true, {"ERROR", "ACTIVE", "DOWN"}), "ACTIVE");
  EXPECT_EQ(vpnservice_status(false, {"ACTIVE"}), "DOWN");
}

}  // namespace
}  // namespace ipsecgw::app
