// app/ike_config: the YAML model (Neutron names) -> ike::ConnectionConfig, as the ipsecgw binary
// hands it to the IKE daemon. Each field is checked against the value written in the YAML.
#include <gtest/gtest.h>

#include <string>

#include "app/ike_config.hpp"

namespace ipsecgw::app {
namespace {

using dp::parse_ipv4;
using dp::parse_prefix;

const std::string kYaml = R"(
vpnservice:
  name: site-a
  subnet: 10.1.0.0/24
  ports:
    unprotected: {port: 0, address: 192.0.2.1/24, mtu: 1400}
    protected: {port: 1, address: 10.1.0.1/24}
ikepolicies:
  - {name: ike-a, auth_algorithm: sha1, encryption_algorithm: aes-128, pfs: group2,
     lifetime: {units: seconds, value: 600}}
  - {name: ike-b, auth_algorithm: sha256, encryption_algorithm: aes-256, pfs: group14}
ipsecpolicies:
  - {name: esp-a, auth_algorithm: sha1, encryption_algorithm: aes-192, pfs: group5,
     lifetime: {units: seconds, value: 300}}
  - {name: esp-b, auth_algorithm: sha256, encryption_algorithm: aes-256, pfs: group14}
ipsec_site_connections:
  - name: static-one
    peer_address: 192.0.2.9
    peer_cidrs: [10.9.0.0/24]
    ipsecpolicy: esp-a
    manual_keys:
      inbound:  {spi: 0x1001, encryption_key: 000102030405060708090a0b0c0d0e0f1011121314151617, auth_key: 0001020304050607080910111213141516171819}
      outbound: {spi: 0x2002, encryption_key: 000102030405060708090a0b0c0d0e0f1011121314151617, auth_key: 0001020304050607080910111213141516171819}
  - name: ike-responder
    peer_address: 192.0.2.2
    peer_cidrs: [10.2.0.0/24]
    psk: secret-one
    mtu: 1450
    initiator: response-only
    dpd: {action: restart, interval: 5, timeout: 20}
    ikepolicy: ike-a
    ipsecpolicy: esp-a
  - name: ike-disabled
    admin_state_up: false
    peer_address: 192.0.2.3
    peer_cidrs: [10.3.0.0/24]
    psk: secret-two
    ikepolicy: ike-a
    ipsecpolicy: esp-a
  - name: ike-initiator
    peer_address: 192.0.2.4
    peer_cidrs: [10.4.0.0/24]
    psk: secret-three
    mtu: 1300
    dpd: {action: disabled}
    ikepolicy: ike-b
    ipsecpolicy: esp-b
)";

Config parsed() {
  auto c = parse_config(kYaml);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error());
  return std::move(c.value());
}

TEST(IkeConnectionConfigs, OnlyEnabledConnectionsWithoutManualKeysInConfigOrder) {
  const auto v = ike_connection_configs(parsed());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].name, "ike-responder");
  EXPECT_EQ(v[0].id, 2u);  // index in ipsec_site_connections + 1, as for static SAs
  EXPECT_EQ(v[1].name, "ike-initiator");
  EXPECT_EQ(v[1].id, 4u);
  for (const auto& c : v) EXPECT_TRUE(ike::validate(c).ok()) << c.name;
}

TEST(IkeConnectionConfigs, AddressesSubnetsPskAndMtuFollowTheYaml) {
  const auto v = ike_connection_configs(parsed());
  ASSERT_EQ(v.size(), 2u);
  const auto& r = v[0];
  EXPECT_EQ(r.local_addr, *parse_ipv4("192.0.2.1"));
  EXPECT_EQ(r.peer_addr, *parse_ipv4("192.0.2.2"));
  EXPECT_EQ(r.local_subnet, *parse_prefix("10.1.0.0/24"));
  EXPECT_EQ(r.peer_subnet, *parse_prefix("10.2.0.0/24"));
  const std::string psk = "secret-one";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.psk.data()), r.psk.size()), psk);
  EXPECT_EQ(r.mtu, 1400);      // min(connection 1450, unprotected port 1400)
  EXPECT_EQ(v[1].mtu, 1300);   // min(connection 1300, port 1400)
}

// Two connections to one peer (they share its ISAKMP SA) and several CIDRs: a CHILD SA per
// (local, peer) pair, the first CIDR of each side first.
TEST(IkeConnectionConfigs, SharedPeerAndSeveralCidrs) {
  std::string yaml = kYaml;
  yaml += R"(  - name: ike-second
    peer_address: 192.0.2.4
    peer_cidrs: [10.5.0.0/24, 10.6.0.0/24]
    psk: secret-three
    ikepolicy: ike-b
    ipsecpolicy: esp-a
)";
  auto cfg = parse_config(yaml);
  ASSERT_TRUE(cfg.ok()) << cfg.error();
  const auto v = ike_connection_configs(*cfg);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[2].name, "ike-second");
  EXPECT_EQ(v[2].peer_addr, v[1].peer_addr);
  EXPECT_EQ(v[2].peer_subnet, *parse_prefix("10.5.0.0/24"));
  EXPECT_EQ(v[2].extra_peer_subnets, std::vector<dp::Ipv4Prefix>{*parse_prefix("10.6.0.0/24")});
  EXPECT_TRUE(v[2].extra_local_subnets.empty());
  EXPECT_EQ(ike::selectors(v[2]).size(), 2u);
  EXPECT_TRUE(ike::phase1_difference(v[1], v[2]).empty());
}

TEST(IkeConnectionConfigs, PoliciesMapToCiphersHashesAndModpGroups) {
  const auto v = ike_connection_configs(parsed());
  ASSERT_EQ(v.size(), 2u);
  const auto& a = v[0];  // ike-a / esp-a
  EXPECT_EQ(a.ike.cipher, crypto::CipherAlg::kAes128Cbc);
  EXPECT_EQ(a.ike.hash, crypto::HashAlg::kSha1);
  EXPECT_EQ(a.ike.group, crypto::DhGroup::kModp1024);  // group2
  EXPECT_EQ(a.ike.lifetime_s, 600u);
  EXPECT_EQ(a.ipsec.cipher, crypto::CipherAlg::kAes192Cbc);
  EXPECT_EQ(a.ipsec.integ, crypto::IntegAlg::kHmacSha1_96);
  EXPECT_EQ(a.ipsec.pfs, crypto::DhGroup::kModp1536);  // group5
  EXPECT_EQ(a.ipsec.lifetime_s, 300u);
  const auto& b = v[1];  // ike-b / esp-b, default lifetimes
  EXPECT_EQ(b.ike.cipher, crypto::CipherAlg::kAes256Cbc);
  EXPECT_EQ(b.ike.hash, crypto::HashAlg::kSha256);
  EXPECT_EQ(b.ike.group, crypto::DhGroup::kModp2048);  // group14
  EXPECT_EQ(b.ike.lifetime_s, 3600u);
  EXPECT_EQ(b.ipsec.cipher, crypto::CipherAlg::kAes256Cbc);
  EXPECT_EQ(b.ipsec.integ, crypto::IntegAlg::kHmacSha256_128);
  EXPECT_EQ(b.ipsec.pfs, crypto::DhGroup::kModp2048);
}

TEST(IkeConnectionConfigs, InitiatorModeAndDpdFollowTheYaml) {
  const auto v = ike_connection_configs(parsed());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].initiator, ike::InitiatorMode::kResponseOnly);
  EXPECT_EQ(v[0].dpd.action, ike::DpdAction::kRestart);
  EXPECT_EQ(v[0].dpd.interval_s, 5u);
  EXPECT_EQ(v[0].dpd.timeout_s, 20u);
  EXPECT_EQ(v[1].initiator, ike::InitiatorMode::kBidirectional);
  EXPECT_EQ(v[1].dpd.action, ike::DpdAction::kHold);
  EXPECT_EQ(v[1].dpd.interval_s, kDpdDisabledIntervalS);  // disabled: never probes in practice
  EXPECT_GT(v[1].dpd.timeout_s, v[1].dpd.interval_s);
}

}  // namespace
}  // namespace ipsecgw::app
