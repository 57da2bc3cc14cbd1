// Several site connections per peer (issue #9): connections to one peer address share one
// ISAKMP SA, each with its own Quick Mode CHILD SA per (local, peer) subnet pair; the
// responder picks the connection and pair by the Quick Mode IDs. Deleting one connection
// deletes only its CHILD SAs. Phase-1 settings of connections sharing a peer must agree.
// local_id goes into our ID payload.
#include "tests/ike/daemon_harness.hpp"

namespace ipsecgw::ike::test {
namespace {

dp::Ipv4Prefix pfx(const char* s) { return *dp::parse_prefix(s); }

// A second connection "two" to the same peer with other subnets (A: 10.11/16 <-> 10.12/24).
ConnectionConfig second(bool a_side, std::string psk = "s3cret-psk") {
  ConnectionConfig c = make_conn(a_side, {}, {}, std::move(psk));
  c.name = "two";
  c.id = a_side ? 17 : 19;
  c.local_subnet = a_side ? pfx("10.11.0.0/16") : pfx("10.12.0.0/24");
  c.peer_subnet = a_side ? pfx("10.12.0.0/24") : pfx("10.11.0.0/16");
  return c;
}

// The SAs an installer added for data-plane conn_id `id`, by direction.
const dp::SaSpec* sa_of(const FakeInstaller& in, std::uint32_t id, dp::Direction d) {
  for (const auto& s : in.sas)
    if (s.conn_id == id && s.dir == d) return &s;
  return nullptr;
}

bool deleted(const FakeInstaller& in, std::uint32_t spi) {
  return std::any_of(in.deleted.begin(), in.deleted.end(),
                     [&](const auto& d) { return d.second == spi; });
}

struct TwoConns : Pair {
  TwoConns() {
    add({}, {}, {}, {});  // "site": ids 7 (A) and 9 (B)
    EXPECT_TRUE(a.add_connection(second(true)).ok());
    EXPECT_TRUE(b.add_connection(second(false)).ok());
    net.filter = [this](Packet& pk) {
      mm1 += is_new_main_mode(pk);
      informational += is_exchange(pk, ExchangeType::kInformational);
      return true;
    };
    initiate();
    run_for(1000);
  }
  int mm1 = 0, informational = 0;
};

class MultiPeer : public Quiet {};

TEST_F(MultiPeer, TwoConnectionsShareOneIsakmpSaWithAChildEach) {
  TwoConns p;
  EXPECT_EQ(p.mm1, 1);  // one Main Mode: one ISAKMP SA for both connections
  for (const char* n : {"site", "two"}) {
    EXPECT_EQ(p.a.status(n).state, ConnState::kActive) << n;
    EXPECT_EQ(p.b.status(n).state, ConnState::kActive) << n;
  }
  ASSERT_EQ(p.ia.sas.size(), 4u);
  ASSERT_EQ(p.ib.sas.size(), 4u);
  // Each connection's pair carries its own selectors and conn_id and matches the peer's.
  expect_twin_sas(sa_of(p.ia, 7, dp::Direction::kInbound), sa_of(p.ia, 7, dp::Direction::kOutbound),
                  sa_of(p.ib, 9, dp::Direction::kInbound), sa_of(p.ib, 9, dp::Direction::kOutbound));
  expect_twin_sas(sa_of(p.ia, 17, dp::Direction::kInbound),
                  sa_of(p.ia, 17, dp::Direction::kOutbound),
                  sa_of(p.ib, 19, dp::Direction::kInbound),
                  sa_of(p.ib, 19, dp::Direction::kOutbound));
  EXPECT_EQ(sa_of(p.ia, 17, dp::Direction::kOutbound)->local_subnet, pfx("10.11.0.0/16"));
  EXPECT_EQ(sa_of(p.ib, 19, dp::Direction::kOutbound)->peer_subnet, pfx("10.11.0.0/16"));
  EXPECT_EQ(sa_of(p.ia, 7, dp::Direction::kOutbound)->local_subnet, pfx("10.1.0.0/16"));
  // Status and detail per connection, from its own CHILD SA.
  EXPECT_EQ(p.a.status("two").child->spi_out, sa_of(p.ia, 17, dp::Direction::kOutbound)->spi);
  EXPECT_EQ(p.a.status("site").child->spi_out, sa_of(p.ia, 7, dp::Direction::kOutbound)->spi);
  EXPECT_EQ(p.a.detail("two").phase2, "INSTALLED");
  EXPECT_EQ(p.b.detail("site").phase1, "ESTABLISHED");
  EXPECT_EQ(p.ia.traps.size(), 2u);
}

TEST_F(MultiPeer, DeletingOneConnectionKeepsTheOthersSas) {
  TwoConns p;
  const auto two_a = *p.a.status("two").child, two_b = *p.b.status("two").child;
  const auto one_a = *p.a.status("site").child;
  p.informational = 0;
  ASSERT_TRUE(p.a.remove_connection("site").ok());
  p.pump();
  EXPECT_EQ(p.informational, 1);  // one Delete, for the removed CHILD SA only
  // B deleted exactly the removed connection's pair; the other one is untouched.
  EXPECT_TRUE(deleted(p.ib, one_a.spi_in));   // B's outbound = A's inbound
  EXPECT_TRUE(deleted(p.ib, one_a.spi_out));  // B's inbound
  EXPECT_FALSE(deleted(p.ib, two_a.spi_in));
  EXPECT_FALSE(deleted(p.ib, two_a.spi_out));
  EXPECT_FALSE(deleted(p.ia, two_a.spi_in));
  EXPECT_EQ(p.b.status("site").state, ConnState::kError);
  EXPECT_EQ(p.b.status("site").reason, "deleted by peer");
  p.run_for(20000);  // no renegotiation: same ISAKMP SA, same CHILD SA
  EXPECT_EQ(p.mm1, 1);
  ASSERT_EQ(p.a.status("two").state, ConnState::kActive);
  ASSERT_EQ(p.b.status("two").state, ConnState::kActive);
  EXPECT_EQ(p.a.status("two").child->spi_in, two_a.spi_in);
  EXPECT_EQ(p.a.status("two").child->spi_out, two_a.spi_out);
  EXPECT_EQ(p.b.status("two").child->spi_in, two_b.spi_in);
  EXPECT_TRUE(p.ia.live_in.count(two_a.spi_in));
  EXPECT_EQ(p.ia.traps.count(7), 0u);
  EXPECT_EQ(p.ia.traps.count(17), 1u);
  // The last connection takes the ISAKMP SA along (CHILD SA Delete, then the ISAKMP one).
  p.informational = 0;
  ASSERT_TRUE(p.a.remove_connection("two").ok());
  p.pump();
  EXPECT_EQ(p.informational, 2);
  EXPECT_TRUE(deleted(p.ib, two_a.spi_in));
  EXPECT_EQ(p.b.status("two").state, ConnState::kError);
  EXPECT_EQ(p.b.status("two").reason, "deleted by peer");
}

TEST_F(MultiPeer, AdminDownOfOneConnectionKeepsTheOther) {
  TwoConns p;
  const auto two_a = *p.a.status("two").child;
  ASSERT_TRUE(p.a.set_admin_state("site", false).ok());
  p.run_for(3000);
  EXPECT_EQ(p.a.status("site").state, ConnState::kDown);
  EXPECT_EQ(p.a.status("two").child->spi_in, two_a.spi_in);
  EXPECT_EQ(p.b.status("two").state, ConnState::kActive);
  // Up again: a Quick Mode under the same ISAKMP SA, no new Main Mode.
  ASSERT_TRUE(p.a.set_admin_state("site", true).ok());
  p.run_for(3000);
  EXPECT_EQ(p.mm1, 1);
  EXPECT_EQ(p.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("site").state, ConnState::kActive);
  EXPECT_EQ(p.a.status("two").child->spi_in, two_a.spi_in);
}

// DPD runs once per ISAKMP SA: a dead peer takes all its connections down.
TEST_F(MultiPeer, ADeadPeerTakesAllItsConnectionsDown) {
  Pair p;
  ConnectionConfig ca = make_conn(true, {}, {}), ca2 = second(true);
  ca.dpd = ca2.dpd = {DpdAction::kHold, 5, 20};
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.a.add_connection(std::move(ca2)).ok());
  ConnectionConfig cb = make_conn(false, {}, {}), cb2 = second(false);
  cb.dpd = cb2.dpd = {DpdAction::kHold, 100000, 200000};
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb2)).ok());
  p.initiate();
  p.run_for(1000);
  ASSERT_EQ(p.a.status("two").state, ConnState::kActive);
  p.net.filter = [](Packet& pk) { return pk.from.addr != kAddrB; };  // B goes silent
  p.run_for(40000);
  for (const char* n : {"site", "two"}) {
    EXPECT_EQ(p.a.status(n).state, ConnState::kError) << n;
    EXPECT_EQ(p.a.status(n).reason, kReasonDeadPeer) << n;
  }
  EXPECT_TRUE(p.ia.live_in.empty());
}

TEST_F(MultiPeer, AConnectionAddedLaterJoinsTheIsakmpSa) {
  Pair p(kDefaults);
  int mm1 = 0;
  p.net.filter = [&](Packet& pk) {
    mm1 += is_new_main_mode(pk);
    return true;
  };
  p.initiate();
  expect_both_active(p);
  const auto site_a = *p.a.status("site").child;
  ASSERT_TRUE(p.b.add_connection(second(false)).ok());
  ASSERT_TRUE(p.a.add_connection(second(true)).ok());
  p.run_for(2000);
  EXPECT_EQ(mm1, 1);
  EXPECT_EQ(p.a.status("two").state, ConnState::kActive);
  EXPECT_EQ(p.b.status("two").state, ConnState::kActive);
  EXPECT_EQ(p.a.status("site").child->spi_in, site_a.spi_in);
}

TEST_F(MultiPeer, SeveralSubnetPairsGetOneChildEach) {
  Pair p;
  ConnectionConfig ca = make_conn(true, {}, {}), cb = make_conn(false, {}, {});
  ca.extra_local_subnets = {pfx("10.3.0.0/16")};
  ca.extra_peer_subnets = {pfx("10.4.0.0/24")};
  cb.extra_local_subnets = {pfx("10.4.0.0/24")};
  cb.extra_peer_subnets = {pfx("10.3.0.0/16")};
  const auto sel = selectors(ca);
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
  p.initiate();
  p.run_for(3000);
  expect_both_active(p);
  ASSERT_EQ(p.ia.sas.size(), 8u);  // 2 x 2 pairs, a pair of SAs each
  ASSERT_EQ(p.ia.traps.size(), 4u);
  ASSERT_EQ(sel.size(), 4u);
  for (std::size_t i = 0; i < sel.size(); ++i) {
    const auto* out = sa_of(p.ia, trap_id(7, i), dp::Direction::kOutbound);
    ASSERT_NE(out, nullptr) << i;
    EXPECT_EQ(out->local_subnet, sel[i].local);
    EXPECT_EQ(out->peer_subnet, sel[i].peer);
    EXPECT_EQ(p.ia.traps[trap_id(7, i)].first, sel[i].local);
    // B's matching pair carries the mirrored selectors.
    auto b_in = std::find_if(p.ib.sas.begin(), p.ib.sas.end(), [&](const dp::SaSpec& s) {
      return s.dir == dp::Direction::kInbound && s.spi == out->spi;
    });
    ASSERT_NE(b_in, p.ib.sas.end());
    EXPECT_EQ(b_in->local_subnet, sel[i].peer);
    EXPECT_EQ(b_in->peer_subnet, sel[i].local);
  }
}

TEST_F(MultiPeer, PhaseOneSettingsOfAPeerMustAgree) {
  Pair p(kDefaults);
  auto r = p.a.add_connection(second(true, "another-psk"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("two"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("site"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("psk"), std::string::npos) << r.error();
  ConnectionConfig c = second(true);
  c.ike.group = DhGroup::kModp2048;
  r = p.a.add_connection(std::move(c));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("ike policy differs from connection site"), std::string::npos)
      << r.error();
  c = second(true);
  c.peer_id = "peer.example.com";
  EXPECT_FALSE(p.a.add_connection(std::move(c)).ok());
  // The same subnet pair twice on one peer: the responder could not tell them apart.
  c = second(true);
  c.local_subnet = pfx("10.1.0.0/16");
  c.peer_subnet = pfx("10.2.0.0/24");
  r = p.a.add_connection(std::move(c));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("site"), std::string::npos) << r.error();
  EXPECT_EQ(p.a.connection_names().size(), 1u);
}

// A with local_id "gw-a.example.com"; B expects peer_id `b_expects`.
void add_with_ids(Pair& p, const std::string& b_expects) {
  ConnectionConfig ca = make_conn(true, {}, {}), cb = make_conn(false, {}, {});
  ca.local_id = "gw-a.example.com";
  cb.peer_id = b_expects;
  ASSERT_TRUE(p.a.add_connection(std::move(ca)).ok());
  ASSERT_TRUE(p.b.add_connection(std::move(cb)).ok());
}

TEST_F(MultiPeer, LocalIdIsSentInOurIdPayload) {
  Pair p;
  add_with_ids(p, "gw-a.example.com");  // B checks it as an FQDN ID (ID_FQDN)
  p.initiate();
  expect_both_active(p);
  EXPECT_EQ(p.b.counters().peer_id_mismatches, 0u);

  Pair q;
  add_with_ids(q, "someone-else.example.com");
  q.initiate();
  EXPECT_NE(q.a.status("site").state, ConnState::kActive);
  EXPECT_EQ(q.b.counters().peer_id_mismatches, 1u);
}

}  // namespace
}  // namespace ipsecgw::ike::test
