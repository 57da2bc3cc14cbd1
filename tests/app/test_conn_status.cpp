// Connection status from IKE daemon and data-plane events (app/connections.*): the Neutron
// status and reason mapping, the detail (phases, algorithms, peer port, SPIs), the last error
// and rekey times, the traffic totals across rekeys, and the API's status_detail / vpnservice
// status; the rows published to telemetry (app/conn_table.*): only those changed, in order. The
// daemons are real (two in one process, tests/ike/daemon_harness.hpp).
#include <gtest/gtest.h>

#include "app/api/handler.hpp"
#include "app/conn_table.hpp"
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

ConnRow refreshed(ConnectionStatus& cs, ike::Daemon& d, dp::SaInstaller* sas,
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

// ---- the refresh at many connections (issue #12): the rows the daemon reports changed, plus
// a bounded sweep; counted (rows_examined), not timed ----

// `n` idle response-only connections on daemon `d`, each to its own peer that never speaks,
// added to `cs` too (before the connection under test, so that the sweep reaches that last).
void add_idle(ike::Daemon& d, ConnectionStatus& cs, int n, bool a_side) {
  for (int i = 0; i < n; ++i) {
    ike::ConnectionConfig c = ike::test::make_conn(a_side, {}, {});
    c.name = "idle" + std::to_string(i);
    c.id = static_cast<std::uint32_t>(100 + i);
    c.peer_addr = 0xcb000000U + 0x10000U + static_cast<dp::Ipv4>(i);
    c.local_subnet = {0x0a800000U + (static_cast<dp::Ipv4>(i) << 8), 24};
    c.peer_subnet = {0xac800000U + (static_cast<dp::Ipv4>(i) << 8), 24};
    c.initiator = ike::InitiatorMode::kResponseOnly;
    ASSERT_TRUE(d.add_connection(std::move(c)).ok());
    cs.add_ike_connection("idle" + std::to_string(i), 0xcb000000U + 0x10000U + i);
  }
}

ConnRow row_of(const std::vector<ConnRow>& rows, const std::string& name) {
  for (const ConnRow& r : rows)
    if (r.name == name) return r;
  return {};
}

// The most rows one refresh examines over 3 s of 20 ms ticks, once every row was seen and
// every peer ticked once (the daemon ticks a peer once after it is added).
std::uint64_t max_rows_per_idle_tick(int n) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  ConnectionStatus cs;
  add_idle(p.a, cs, n, true);
  cs.add_ike_connection("site", kAddrB);
  cs.refresh(p.a, &p.ia, at(0));
  std::uint64_t most = 0;
  for (int t = 1; t <= 150; ++t) {
    p.clock.t += ike::Millis{20};
    p.a.tick();
    const std::uint64_t before = cs.rows_examined();
    cs.refresh(p.a, &p.ia, at(0) + std::chrono::milliseconds(20 * t));
    if (t > 2) most = std::max(most, cs.rows_examined() - before);
  }
  return most;
}

TEST_F(ConnStatus, RowsExaminedPerTickDoNotGrowWithIdleConnections) {
  const std::uint64_t small = max_rows_per_idle_tick(100);
  const std::uint64_t large = max_rows_per_idle_tick(3000);
  // The sweep's share, and the few rows whose peers' timers came (none here): not 100 or 3,000.
  EXPECT_LE(small, ConnectionStatus::kSweepPerRefresh + 2);
  EXPECT_LE(large, ConnectionStatus::kSweepPerRefresh + 2);
}

// ---- the rows published to telemetry (issue #12): only the changed ones, counted
// (ConnTable::rows_written), not timed ----

// Over 3 s of 20 ms ticks, as the control loop does (publish() after a refresh that changed
// rows): `n` idle connections and one, "site", whose traffic counters move every tick (the
// sweep reads them once a second). The most rows one refresh wrote into the table, and the
// refreshes that wrote any.
struct Published {
  std::uint64_t most = 0;
  int refreshes = 0;
};
Published rows_published_per_tick(int n) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  p.ia.report_counters = true;
  ConnectionStatus cs;
  ConnTable table;
  add_idle(p.a, cs, n, true);
  cs.add_ike_connection("site", kAddrB);
  cs.refresh(p.a, &p.ia, at(0));
  cs.publish(table);  // every row, the first time
  EXPECT_EQ(table.size(), static_cast<std::size_t>(n) + 1);
  Published out;
  for (int t = 1; t <= 150; ++t) {
    p.clock.t += ike::Millis{20};
    p.a.tick();
    p.ia.in_packets = 1000 + static_cast<std::uint64_t>(t);
    const std::uint64_t before = table.rows_written();
    if (cs.refresh(p.a, &p.ia, at(0) + std::chrono::milliseconds(20 * t))) cs.publish(table);
    const std::uint64_t written = table.rows_written() - before;
    out.most = std::max(out.most, written);
    if (written != 0) ++out.refreshes;
  }
  // The table holds what a copy of every row would: the site's last counters among them.
  EXPECT_EQ(table.rows(), cs.rows());
  EXPECT_GT(row_of(table.rows(), "site").in_packets, 1000u);
  return out;
}

TEST_F(ConnStatus, RowsPublishedPerTickDoNotGrowWithIdleConnections) {
  const Published small = rows_published_per_tick(100);
  const Published large = rows_published_per_tick(3000);
  // The site's row when the sweep read new counters (about once a second), nothing else: not
  // the 101 or 3,001 rows of the table (what publishing every row, as before, wrote).
  EXPECT_EQ(small.most, 1u);
  EXPECT_EQ(large.most, 1u);
  // ... and the site's changes did reach the table (3 and 2 refreshes wrote its row).
  EXPECT_GE(small.refreshes, 1);
  EXPECT_GE(large.refreshes, 1);
}

std::vector<std::string> names_of(const std::vector<ConnRow>& rows) {
  std::vector<std::string> names;
  for (const ConnRow& r : rows) names.push_back(r.name);
  return names;
}

// A connection removed leaves the table, one added comes last, one added again (as the
// reconciler updates one) moves to the end; a static row and an IKE connection may share a
// name: two rows, /ipsecgw/connection,NAME finds the static one (the first, as before).
TEST_F(ConnStatus, PublishedRowsFollowAddedAndRemovedConnections) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  Config cfg;
  SiteConnection st;
  st.name = "site";
  st.peer_address = 0xc6336401U;
  st.manual_keys = ManualKeys{};
  st.manual_keys->inbound.spi = 0x1001;
  st.manual_keys->outbound.spi = 0x2001;
  cfg.ipsec_site_connections.push_back(std::move(st));
  ConnectionStatus cs;
  ConnTable table;
  cs.add_static_connections(cfg);
  add_idle(p.a, cs, 3, true);
  cs.add_ike_connection("site", kAddrB);
  cs.refresh(p.a, &p.ia, at(0));
  cs.publish(table);
  using Names = std::vector<std::string>;
  EXPECT_EQ(names_of(table.rows()), (Names{"site", "idle0", "idle1", "idle2", "site"}));
  EXPECT_EQ(table.rows(), cs.rows());
  ASSERT_TRUE(table.find("site"));
  EXPECT_EQ(table.find("site")->state, "STATIC");
  EXPECT_EQ(table.rows().back().state, "ACTIVE");
  ASSERT_TRUE(table.find("idle1"));

  cs.remove_ike_connection("idle1");
  std::uint64_t before = table.rows_written();
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(0)));
  cs.publish(table);
  EXPECT_EQ(table.rows_written(), before);  // a removal copies no row
  EXPECT_EQ(names_of(table.rows()), (Names{"site", "idle0", "idle2", "site"}));
  EXPECT_FALSE(table.find("idle1"));
  EXPECT_EQ(table.rows(), cs.rows());

  cs.add_ike_connection("new", 0xcb00ffffU);
  cs.remove_ike_connection("idle0");
  cs.add_ike_connection("idle0", 0xcb000000U + 0x10000U);
  before = table.rows_written();
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(0)));
  cs.publish(table);
  EXPECT_EQ(table.rows_written() - before, 2u);  // the two new rows
  EXPECT_EQ(names_of(table.rows()), (Names{"site", "idle2", "site", "new", "idle0"}));
  ASSERT_TRUE(table.find("new"));
  EXPECT_EQ(table.find("new")->state, "DOWN");
  EXPECT_EQ(table.rows(), cs.rows());

  // The IKE "site" goes: its row only; the static one stays.
  cs.remove_ike_connection("site");
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(0)));
  cs.publish(table);
  EXPECT_EQ(names_of(table.rows()), (Names{"site", "idle2", "new", "idle0"}));
  EXPECT_EQ(table.find("site")->state, "STATIC");
  EXPECT_EQ(table.rows(), cs.rows());
  // Nothing changed since: nothing written.
  before = table.rows_written();
  EXPECT_FALSE(cs.refresh(p.a, &p.ia, at(0)));
  cs.publish(table);
  EXPECT_EQ(table.rows_written(), before);
}

ConnRow named(const std::string& name, const std::string& state = "DOWN") {
  ConnRow r;
  r.name = name;
  r.state = state;
  return r;
}

// The table alone: rows in key order whatever order they come in, the first row so named found
// by name (the next one once it goes), a page copying only its own rows.
TEST(ConnTableRows, KeyOrderFirstOfANameAndOnlyThePageCopied) {
  ConnTable t;
  RowChanges ike;
  for (int i = 0; i < 10; ++i)
    ike.rows.emplace_back(ConnectionStatus::kFirstIkeKey + static_cast<RowKey>(i),
                          named("c" + std::to_string(i)));
  t.apply(ike);
  RowChanges late;  // a static row published after the IKE ones: still first
  late.rows.emplace_back(0, named("c3", "STATIC"));
  t.apply(late);
  using Names = std::vector<std::string>;
  EXPECT_EQ(names_of(t.rows()),
            (Names{"c3", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"}));
  ASSERT_TRUE(t.find("c3"));
  EXPECT_EQ(t.find("c3")->state, "STATIC");
  RowChanges gone;
  gone.removed = {0, ConnectionStatus::kFirstIkeKey + 5, 12345};  // the last one: unknown
  t.apply(gone);
  EXPECT_EQ(t.size(), 9u);
  EXPECT_EQ(t.find("c3")->state, "DOWN");
  EXPECT_FALSE(t.find("c5"));
  EXPECT_EQ(t.find("c9")->name, "c9");
  // A page from START 3 while take() says yes: c3 c4 c6, nothing past the 4th row asked.
  std::size_t asked = 0;
  const ConnPage pg = t.page(3, [&](const ConnRow&, std::size_t taken) {
    ++asked;
    return taken < 3;
  });
  EXPECT_EQ(names_of(pg.rows), (Names{"c3", "c4", "c6"}));
  EXPECT_EQ(pg.total, 9u);
  EXPECT_EQ(asked, 4u);
  EXPECT_TRUE(t.page(9, [](const ConnRow&, std::size_t) { return true; }).rows.empty());
  t.clear();
  EXPECT_EQ(t.size(), 0u);
  EXPECT_FALSE(t.find("c0"));
}

TEST_F(ConnStatus, AChangeReachesItsRowOnTheNextRefreshWhateverTheSweep) {
  Pair p(ike::test::kDefaults);
  ConnectionStatus cs;
  add_idle(p.a, cs, 2000, true);
  cs.add_ike_connection("site", kAddrB);
  // The first refresh examines every new row; the sweep then runs out (40 refreshes of 50
  // rows) and, with the time standing still, does not start again: only changes are read.
  for (int i = 0; i < 50; ++i) cs.refresh(p.a, &p.ia, at(0));
  EXPECT_EQ(row_of(cs.rows(), "site").state, "DOWN");
  std::uint64_t before = cs.rows_examined();
  cs.refresh(p.a, &p.ia, at(0));
  EXPECT_EQ(cs.rows_examined(), before);  // idle: nothing to read
  p.a.tick();  // MM1 out
  cs.refresh(p.a, &p.ia, at(0));
  EXPECT_EQ(row_of(cs.rows(), "site").state, "PENDING_CREATE");
  EXPECT_EQ(row_of(cs.rows(), "site").phase1, "MM1_SENT");
  p.pump();
  before = cs.rows_examined();
  cs.refresh(p.a, &p.ia, at(0));
  const ConnRow r = row_of(cs.rows(), "site");
  EXPECT_EQ(r.state, "ACTIVE");
  EXPECT_EQ(r.spi_in, p.a.status("site").child->spi_in);
  EXPECT_LE(cs.rows_examined() - before, 2u);  // its row (its peer's), not 2,001
  // The responder's side: a half-open negotiation (the peer's MM1) is news too.
  ConnectionStatus bs;
  Pair q(ike::test::kDefaults);
  add_idle(q.b, bs, 2000, false);
  bs.add_ike_connection("site", ike::test::kAddrA);
  for (int i = 0; i < 50; ++i) bs.refresh(q.b, &q.ib, at(0));
  ASSERT_EQ(row_of(bs.rows(), "site").state, "DOWN");
  q.a.tick();
  q.pump(1);  // MM1 to B: a half-open entry, MM2 out
  bs.refresh(q.b, &q.ib, at(0));
  EXPECT_EQ(row_of(bs.rows(), "site").state, "PENDING_CREATE");
  EXPECT_EQ(row_of(bs.rows(), "site").phase1, "MM2_SENT");
  q.pump();
  bs.refresh(q.b, &q.ib, at(0));
  EXPECT_EQ(row_of(bs.rows(), "site").state, "ACTIVE");
}

TEST_F(ConnStatus, TheSweepMovesEveryConnectionsCounters) {
  Pair p(ike::test::kDefaults);
  p.initiate();
  p.ia.report_counters = true;
  ConnectionStatus cs;
  cs.add_ike_connection("site", kAddrB);
  add_idle(p.a, cs, 500, true);
  cs.refresh(p.a, &p.ia, at(0));
  p.ia.in_packets = 7;
  // 501 rows, 50 a refresh: every row's counters within 11 refreshes once the round starts.
  for (int i = 1; i <= 11; ++i) cs.refresh(p.a, &p.ia, at(1));
  EXPECT_EQ(row_of(cs.rows(), "site").in_packets, 7u);
  // Removed rows leave the sweep and the rows.
  cs.remove_ike_connection("idle499");
  cs.remove_ike_connection("site");
  EXPECT_TRUE(cs.refresh(p.a, &p.ia, at(1)));
  EXPECT_EQ(cs.rows().size(), 499u);
  EXPECT_EQ(row_of(cs.rows(), "site").name, "");
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
