// app/config: YAML with Neutron VPNaaS names -> plain structs, GatewayConfig and SaSpecs.
// Errors must name the field path, the value and what is allowed, and never show secrets.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app/config.hpp"

namespace ipsecgw::app {
namespace {

using dp::parse_ipv4;
using dp::parse_prefix;

// A complete, valid configuration. Test cases derive broken ones by replacing one line.
const std::string kValid = R"(
vpnservice:
  name: site-a
  admin_state_up: true
  external_v4_ip: 192.0.2.1
  subnet: 10.1.0.0/24
  ports:
    unprotected: {port: 0, address: 192.0.2.1/24, gateway: 192.0.2.254}
    protected: {port: 1, address: 10.1.0.1/24}
  neighbors:
    - {ip: 192.0.2.2, mac: "02:00:00:00:00:02"}
  routes:
    - {destination: 10.9.0.0/16, nexthop: 10.1.0.254}
  unmatched_traffic: drop
ikepolicies:
  - name: ike1
    auth_algorithm: sha256
    encryption_algorithm: aes-256
    ike_version: v1
    phase1_negotiation_mode: main
    pfs: group14
    lifetime: {units: seconds, value: 28800}
ipsecpolicies:
  - name: esp1
    transform_protocol: esp
    encapsulation_mode: tunnel
    auth_algorithm: sha1
    encryption_algorithm: aes-128
    pfs: group5
    lifetime: {units: seconds, value: 3600}
endpoint_groups:
  - {name: remote-b, type: cidr, endpoints: [10.3.0.0/24]}
ipsec_site_connections:
  - name: to-b
    peer_address: 192.0.2.2
    peer_id: 192.0.2.2
    peer_cidrs: [10.2.0.0/24]
    psk: "s3cret-psk-value"
    mtu: 1400
    initiator: bi-directional
    dpd: {action: restart, interval: 10, timeout: 40}
    ikepolicy: ike1
    ipsecpolicy: esp1
  - name: static-b
    peer_address: 192.0.2.3
    peer_ep_group: remote-b
    ipsecpolicy: esp1
    manual_keys:
      inbound: {spi: 0x1001, encryption_key: 00112233445566778899aabbccddeeff, auth_key: "0x0102030405060708090a0b0c0d0e0f1011121314"}
      outbound: {spi: 4098, encryption_key: ffeeddccbbaa99887766554433221100, auth_key: 1112131415161718191a1b1c1d1e1f2021222324}
      udp_encap: true
)";

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << from << "' not in the base config";
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

TEST(AppConfig, ParsesCompleteNeutronStyleConfig) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = *r;
  EXPECT_EQ(c.vpnservice.name, "site-a");
  EXPECT_EQ(c.vpnservice.external_v4_ip, *parse_ipv4("192.0.2.1"));
  EXPECT_EQ(c.vpnservice.unprotected.subnet, *parse_prefix("192.0.2.0/24"));
  EXPECT_EQ(c.vpnservice.unprotected.gateway, *parse_ipv4("192.0.2.254"));
  EXPECT_EQ(c.vpnservice.protected_port.port, 1);
  ASSERT_EQ(c.vpnservice.neighbors.size(), 1u);
  EXPECT_EQ(c.vpnservice.neighbors[0].mac[5], 0x02);
  ASSERT_EQ(c.vpnservice.routes.size(), 1u);
  EXPECT_EQ(c.vpnservice.routes[0].nexthop, *parse_ipv4("10.1.0.254"));

  ASSERT_EQ(c.ikepolicies.size(), 1u);
  EXPECT_EQ(c.ikepolicies[0].auth_algorithm, AuthAlgorithm::kSha256);
  EXPECT_EQ(c.ikepolicies[0].encryption_algorithm, EncryptionAlgorithm::kAes256);
  EXPECT_EQ(c.ikepolicies[0].pfs, PfsGroup::kGroup14);
  EXPECT_EQ(c.ikepolicies[0].lifetime.value, 28800u);

  ASSERT_EQ(c.ipsec_site_connections.size(), 2u);
  const auto& ike = c.ipsec_site_connections[0];
  EXPECT_EQ(ike.peer_cidrs, std::vector{*parse_prefix("10.2.0.0/24")});
  EXPECT_EQ(ike.local_cidrs, std::vector{*parse_prefix("10.1.0.0/24")});
  EXPECT_EQ(ike.mtu, 1400);
  EXPECT_EQ(ike.dpd.action, DpdAction::kRestart);
  EXPECT_EQ(ike.dpd.interval, 10u);
  EXPECT_EQ(ike.dpd.timeout, 40u);
  EXPECT_EQ(std::string(ike.psk.data(), ike.psk.data() + ike.psk.size()), "s3cret-psk-value");
  EXPECT_EQ(c.ikepolicy_of(ike).name, "ike1");
  EXPECT_FALSE(ike.manual_keys);

  const auto& st = c.ipsec_site_connections[1];
  EXPECT_EQ(st.peer_cidrs, std::vector{*parse_prefix("10.3.0.0/24")});
  ASSERT_TRUE(st.manual_keys);
  EXPECT_EQ(st.manual_keys->inbound.spi, 0x1001u);
  EXPECT_EQ(st.manual_keys->outbound.spi, 4098u);
  EXPECT_TRUE(st.manual_keys->udp_encap);
  ASSERT_EQ(st.manual_keys->inbound.auth_key.size(), 20u);
  EXPECT_EQ(st.manual_keys->inbound.auth_key[0], 0x01);
  EXPECT_EQ(st.manual_keys->inbound.auth_key[19], 0x14);
}

TEST(AppConfig, AppliesDefaults) {
  const std::string minimal = R"(
vpnservice:
  ports:
    unprotected: {port: 0, address: 198.51.100.10/24}
    protected: {port: 1, address: 10.1.0.1/24}
ikepolicies: [{name: ike}]
ipsecpolicies: [{name: esp}]
ipsec_site_connections:
  - {name: c, peer_address: 198.51.100.20, peer_cidrs: [10.2.0.0/16], psk: x, ikepolicy: ike,
     ipsecpolicy: esp}
)";
  auto r = parse_config(minimal);
  ASSERT_TRUE(r.ok()) << r.error();
  const Config& c = *r;
  EXPECT_TRUE(c.vpnservice.admin_state_up);
  EXPECT_EQ(c.vpnservice.external_v4_ip, *parse_ipv4("198.51.100.10"));  // unprotected addr
  EXPECT_EQ(c.vpnservice.subnet, *parse_prefix("10.1.0.0/24"));  // protected port's subnet
  EXPECT_EQ(c.vpnservice.unprotected.gateway, 0u);
  EXPECT_EQ(c.vpnservice.unprotected.mtu, 1500);
  EXPECT_EQ(c.vpnservice.unmatched_traffic, UnmatchedTraffic::kDrop);
  EXPECT_EQ(c.ikepolicies[0].auth_algorithm, AuthAlgorithm::kSha1);
  EXPECT_EQ(c.ikepolicies[0].encryption_algorithm, EncryptionAlgorithm::kAes128);
  EXPECT_EQ(c.ikepolicies[0].pfs, PfsGroup::kGroup5);
  EXPECT_EQ(c.ikepolicies[0].lifetime.value, 3600u);
  EXPECT_EQ(c.ipsecpolicies[0].lifetime.value, 3600u);
  const auto& conn = c.ipsec_site_connections[0];
  EXPECT_TRUE(conn.admin_state_up);
  EXPECT_EQ(conn.peer_id, "198.51.100.20");
  EXPECT_EQ(conn.local_cidrs, std::vector{*parse_prefix("10.1.0.0/24")});
  EXPECT_EQ(conn.mtu, 1500);
  EXPECT_EQ(conn.initiator, Initiator::kBiDirectional);
  EXPECT_EQ(conn.dpd.action, DpdAction::kHold);
  EXPECT_EQ(conn.dpd.interval, 30u);
  EXPECT_EQ(conn.dpd.timeout, 120u);
}

struct BadCase {
  const char* what;
  std::string from, to;
  std::string expect;  // substring of the error
};

class AppConfigRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(AppConfigRejects, NamesTheFieldValueAndAllowedValues) {
  const auto& c = GetParam();
  auto r = parse_config(replace_once(kValid, c.from, c.to));
  ASSERT_FALSE(r.ok()) << c.what << ": accepted";
  EXPECT_NE(r.error().find(c.expect), std::string::npos)
      << c.what << "\nexpected: " << c.expect << "\ngot: " << r.error();
  // Secrets never appear in errors.
  EXPECT_EQ(r.error().find("s3cret-psk-value"), std::string::npos);
  EXPECT_EQ(r.error().find("00112233445566778899aabbccddeeff"), std::string::npos);
  EXPECT_EQ(r.error().find("0102030405060708090a"), std::string::npos);
}

const BadCase kBadCases[] = {
    {"dpd timeout not above interval", "timeout: 40}", "timeout: 5}",
     "ipsec_site_connections[0].dpd.timeout: 5 must be greater than dpd.interval (10)"},
    {"default dpd timeout below interval", "interval: 10, timeout: 40}", "interval: 200}",
     "ipsec_site_connections[0].dpd.timeout: 120 (default) must be greater than dpd.interval "
     "(200)"},
    {"dpd interval zero", "interval: 10,", "interval: 0,",
     "ipsec_site_connections[0].dpd.interval: 0 out of range 1..86400"},
    {"dpd action unknown", "action: restart", "action: reboot",
     "ipsec_site_connections[0].dpd.action: 'reboot' is not allowed (allowed: "
     "hold|clear|restart|restart-by-peer|disabled)"},
    {"ike lifetime too short", "value: 28800}", "value: 30}",
     "ikepolicies[0].lifetime.value: 30 out of range 60..86400"},
    {"ipsec lifetime too long", "value: 3600}", "value: 90000}",
     "ipsecpolicies[0].lifetime.value: 90000 out of range 60..86400"},
    {"lifetime in kilobytes", "{units: seconds, value: 3600}", "{units: kilobytes, value: 3600}",
     "ipsecpolicies[0].lifetime.units: 'kilobytes' is not supported (allowed: seconds"},
    {"lifetime not a number", "value: 28800}", "value: long}",
     "ikepolicies[0].lifetime.value: 'long' is not a non-negative integer"},
    {"ike auth md5", "auth_algorithm: sha256", "auth_algorithm: md5",
     "ikepolicies[0].auth_algorithm: 'md5' is not allowed (allowed: sha1|sha256)"},
    {"ike encryption 3des", "encryption_algorithm: aes-256", "encryption_algorithm: 3des",
     "ikepolicies[0].encryption_algorithm: '3des' is not allowed (allowed: "
     "aes-128|aes-192|aes-256)"},
    {"ike version 2", "ike_version: v1", "ike_version: v2",
     "ikepolicies[0].ike_version: 'v2' is not supported (allowed: v1"},
    {"aggressive mode", "phase1_negotiation_mode: main", "phase1_negotiation_mode: aggressive",
     "ikepolicies[0].phase1_negotiation_mode: 'aggressive' is not supported (allowed: main"},
    {"pfs group1", "pfs: group14", "pfs: group1",
     "ikepolicies[0].pfs: 'group1' is not allowed (allowed: group2|group5|group14)"},
    {"ah transform", "transform_protocol: esp", "transform_protocol: ah",
     "ipsecpolicies[0].transform_protocol: 'ah' is not supported (allowed: esp"},
    {"transport mode", "encapsulation_mode: tunnel", "encapsulation_mode: transport",
     "ipsecpolicies[0].encapsulation_mode: 'transport' is not supported (allowed: tunnel"},
    {"esp auth sha512", "auth_algorithm: sha1", "auth_algorithm: sha512",
     "ipsecpolicies[0].auth_algorithm: 'sha512' is not allowed (allowed: sha1|sha256)"},
    {"unknown key with suggestion", "    peer_id: 192.0.2.2", "    peer_idd: 192.0.2.2",
     "ipsec_site_connections[0].peer_idd: unknown key (did you mean 'peer_id'?"},
    {"unknown top-level key", "endpoint_groups:", "endpoint_group:",
     "endpoint_group: unknown key (did you mean 'endpoint_groups'?"},
    {"unknown port key", "protected: {port: 1,", "protected: {prot: 1,",
     "vpnservice.ports.protected.prot: unknown key (did you mean 'port'?"},
    {"mtu too small", "mtu: 1400", "mtu: 60",
     "ipsec_site_connections[0].mtu: 60 out of range 576..9000"},
    // Issue #11.8: 68..575 passed validation, then every SA creation failed.
    {"mtu below what an SA takes", "mtu: 1400", "mtu: 575",
     "ipsec_site_connections[0].mtu: 575 out of range 576..9000"},
    {"mtu too big", "mtu: 1400", "mtu: 9001",
     "ipsec_site_connections[0].mtu: 9001 out of range 576..9000"},
    {"initiator unknown", "initiator: bi-directional", "initiator: both",
     "ipsec_site_connections[0].initiator: 'both' is not allowed (allowed: "
     "bi-directional|response-only)"},
    {"peer address malformed", "peer_address: 192.0.2.2", "peer_address: 192.0.2.300",
     "ipsec_site_connections[0].peer_address: '192.0.2.300' is not an IPv4 address"},
    {"peer address is ours", "peer_address: 192.0.2.2", "peer_address: 192.0.2.1",
     "ipsec_site_connections[0].peer_address: 192.0.2.1 is our own address"},
    {"peer cidr with host bits", "peer_cidrs: [10.2.0.0/24]", "peer_cidrs: [10.2.0.1/24]",
     "ipsec_site_connections[0].peer_cidrs[0]: '10.2.0.1/24' is not a valid CIDR"},
    {"two peer cidrs with manual keys", "peer_ep_group: remote-b",
     "peer_cidrs: [10.3.0.0/24, 10.4.0.0/24]",
     "ipsec_site_connections[1].manual_keys: 1 local and 2 peer CIDRs: manual_keys take one of "
     "each"},
    {"same peer, another psk", "  - name: static-b",
     "  - {name: to-b2, peer_address: 192.0.2.2, peer_cidrs: [10.5.0.0/24], psk: other-psk-value,"
     " ikepolicy: ike1, ipsecpolicy: esp1}\n  - name: static-b",
     "ipsec_site_connections[1].psk: the psk differs from that of ipsec_site_connections[0] "
     "(to-b), which has the same peer 192.0.2.2"},
    {"same peer, another peer_id", "  - name: static-b",
     "  - {name: to-b2, peer_address: 192.0.2.2, peer_id: b.example.com, peer_cidrs: [10.5.0.0/24],"
     " psk: s3cret-psk-value, ikepolicy: ike1, ipsecpolicy: esp1}\n  - name: static-b",
     "ipsec_site_connections[1].peer_id: the peer_id differs from that of"},
    {"peer cidr overlaps local", "peer_cidrs: [10.2.0.0/24]", "peer_cidrs: [10.0.0.0/8]",
     "ipsec_site_connections[0].peer_cidrs: 10.0.0.0/8 overlaps the local subnet 10.1.0.0/24"},
    {"both peer_cidrs and group", "peer_cidrs: [10.2.0.0/24]",
     "peer_cidrs: [10.2.0.0/24]\n    peer_ep_group: remote-b",
     "ipsec_site_connections[0].peer_ep_group: give either peer_cidrs or peer_ep_group"},
    {"unknown endpoint group", "peer_ep_group: remote-b", "peer_ep_group: remote-c",
     "ipsec_site_connections[1].peer_ep_group: 'remote-c' is not an endpoint group (defined: "
     "remote-b)"},
    {"unknown ikepolicy", "ikepolicy: ike1", "ikepolicy: ike9",
     "ipsec_site_connections[0].ikepolicy: 'ike9' is not an ikepolicy (defined: ike1)"},
    {"unknown ipsecpolicy", "    ipsecpolicy: esp1\n  - name", "    ipsecpolicy: esp2\n  - name",
     "ipsec_site_connections[0].ipsecpolicy: 'esp2' is not an ipsecpolicy (defined: esp1)"},
    {"missing psk without manual keys", "    psk: \"s3cret-psk-value\"\n", "",
     "ipsec_site_connections[0].psk: required"},
    {"psk not a string", "psk: \"s3cret-psk-value\"", "psk: [s3cret-psk-value]",
     "ipsec_site_connections[0].psk: must be a string (value not shown)"},
    {"duplicate connection name", "name: static-b", "name: to-b",
     "ipsec_site_connections[1].name: 'to-b' already used by ipsec_site_connections[0]"},
    {"encryption key too short", "encryption_key: 00112233445566778899aabbccddeeff",
     "encryption_key: 00112233445566778899aabbccddee",
     "ipsec_site_connections[1].manual_keys.inbound.encryption_key: 15 bytes, aes-128 needs 16 "
     "(value not shown)"},
    {"auth key wrong length", "auth_key: \"0x0102030405060708090a0b0c0d0e0f1011121314\"",
     "auth_key: \"0x0102030405060708090a0b0c0d0e0f10\"",
     "ipsec_site_connections[1].manual_keys.inbound.auth_key: 16 bytes, sha1 needs 20 (value not "
     "shown)"},
    {"key not hex", "encryption_key: 00112233445566778899aabbccddeeff",
     "encryption_key: 00112233445566778899aabbccddeegg",
     "ipsec_site_connections[1].manual_keys.inbound.encryption_key: not an even-length hex "
     "string (value not shown)"},
    {"reserved spi", "spi: 0x1001", "spi: 255",
     "ipsec_site_connections[1].manual_keys.inbound.spi: 255 out of range 256..4294967295"},
    {"missing outbound sa", "      outbound: {spi: 4098,", "      outbund: {spi: 4098,",
     "ipsec_site_connections[1].manual_keys.outbound: required"},
    {"udp_encap not boolean", "udp_encap: true", "udp_encap: maybe",
     "ipsec_site_connections[1].manual_keys.udp_encap: 'maybe' is not a boolean"},
    {"unmatched traffic unknown", "unmatched_traffic: drop", "unmatched_traffic: reject",
     "vpnservice.unmatched_traffic: 'reject' is not allowed (allowed: drop|forward)"},
    {"port address without prefix", "address: 192.0.2.1/24", "address: 192.0.2.1",
     "vpnservice.ports.unprotected.address: '192.0.2.1' is not an address with prefix length"},
    {"gateway off subnet", "gateway: 192.0.2.254", "gateway: 198.51.100.1",
     "vpnservice.ports.unprotected.gateway: 198.51.100.1 is not inside the port's subnet "
     "192.0.2.0/24"},
    {"same port twice", "protected: {port: 1,", "protected: {port: 0,",
     "vpnservice.ports.protected.port: 0 is also the unprotected port"},
    {"external ip differs", "external_v4_ip: 192.0.2.1", "external_v4_ip: 192.0.2.9",
     "vpnservice.external_v4_ip: 192.0.2.9 must be the unprotected port's address (192.0.2.1)"},
    {"bad neighbor mac", "mac: \"02:00:00:00:00:02\"", "mac: \"02:00:00:00:02\"",
     "vpnservice.neighbors[0].mac: '02:00:00:00:02' is not a MAC address"},
    {"route nexthop off protected subnet", "nexthop: 10.1.0.254", "nexthop: 10.5.0.1",
     "vpnservice.routes[0].nexthop: 10.5.0.1 is not on the protected subnet 10.1.0.0/24"},
    {"missing vpnservice ports", "  ports:\n", "  portz:\n",
     "vpnservice.ports: required"},
    {"dataplane idle sleep out of range", "endpoint_groups:",
     "dataplane: {idle_sleep_us: 200000}\nendpoint_groups:",
     "dataplane.idle_sleep_us: 200000 out of range 0..100000"},
    {"yaml syntax error", "ikepolicies:", "ikepolicies: [",
     "YAML syntax error at line"},
};

INSTANTIATE_TEST_SUITE_P(Table, AppConfigRejects, ::testing::ValuesIn(kBadCases));

TEST(AppConfig, ReportsEveryErrorNotJustTheFirst) {
  auto s = replace_once(kValid, "mtu: 1400", "mtu: 1");
  s = replace_once(s, "pfs: group14", "pfs: group99");
  auto r = parse_config(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("ipsec_site_connections[0].mtu"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("ikepolicies[0].pfs"), std::string::npos) << r.error();
}

TEST(AppConfig, RejectsDuplicateInboundSpiAcrossConnections) {
  auto s = replace_once(kValid, "    psk: \"s3cret-psk-value\"\n", "");
  s = replace_once(s, "    ikepolicy: ike1\n", "");
  s = replace_once(s, "    ipsecpolicy: esp1\n  - name",
                   "    ipsecpolicy: esp1\n    manual_keys:\n"
                   "      inbound: {spi: 4097, encryption_key: 000102030405060708090a0b0c0d0e0f, "
                   "auth_key: 000102030405060708090a0b0c0d0e0f10111213}\n"
                   "      outbound: {spi: 9999, encryption_key: 000102030405060708090a0b0c0d0e0f, "
                   "auth_key: 000102030405060708090a0b0c0d0e0f10111213}\n  - name");
  auto r = parse_config(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("ipsec_site_connections[1].manual_keys.inbound.spi: 4097 already used "
                           "by ipsec_site_connections[0]"),
            std::string::npos)
      << r.error();
}

TEST(AppConfig, RejectsEmptyDocumentAndNonMapRoot) {
  EXPECT_FALSE(parse_config("").ok());
  auto r = parse_config("- a\n- b\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("(top level): must be a mapping"), std::string::npos) << r.error();
}

TEST(AppConfig, UnknownKeyWithControlCharactersIsShownEscapedOnOneLine) {
  // A quoted key may contain a newline; the error names it without breaking the line.
  auto r = parse_config(replace_once(kValid, "ikepolicies:", "\"bad\\nkey\": 1\nikepolicies:"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("bad\\x0akey: unknown key"), std::string::npos) << r.error();
  EXPECT_EQ(r.error().find("bad\nkey"), std::string::npos) << "raw newline in: " << r.error();
}

TEST(AppConfig, LoadConfigNamesMissingFile) {
  auto r = load_config("/nonexistent/ipsecgw.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("/nonexistent/ipsecgw.yaml"), std::string::npos);
}

TEST(AppConfig, MapsPortsNeighborsRoutesToGatewayConfig) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.ok()) << r.error();
  dp::GatewayConfig g = to_gateway_config(*r);
  EXPECT_EQ(g.unprotected.port_id, 0);
  EXPECT_EQ(g.unprotected.addr, *parse_ipv4("192.0.2.1"));
  EXPECT_EQ(g.unprotected.subnet, *parse_prefix("192.0.2.0/24"));
  EXPECT_EQ(g.unprotected.gateway, *parse_ipv4("192.0.2.254"));
  EXPECT_EQ(g.protected_port.port_id, 1);
  EXPECT_EQ(g.protected_port.addr, *parse_ipv4("10.1.0.1"));
  ASSERT_EQ(g.neighbors.size(), 1u);
  EXPECT_EQ(g.neighbors[0].ip, *parse_ipv4("192.0.2.2"));
  ASSERT_EQ(g.protected_routes.size(), 1u);
  EXPECT_EQ(g.protected_routes[0].dst, *parse_prefix("10.9.0.0/16"));
  EXPECT_EQ(g.unmatched, dp::UnmatchedPolicy::kDrop);
}

TEST(AppConfig, MapsDataplaneSettingsToGatewayConfig) {
  auto r = parse_config(replace_once(kValid, "endpoint_groups:",
                                     "dataplane: {idle_sleep_us: 50, sa_capacity: 128, "
                                     "telemetry: false}\nendpoint_groups:"));
  ASSERT_TRUE(r.ok()) << r.error();
  dp::GatewayConfig g = to_gateway_config(*r);
  EXPECT_EQ(g.idle_sleep_us, 50u);
  EXPECT_EQ(g.sa_capacity, 128u);
  EXPECT_FALSE(g.telemetry);
  EXPECT_EQ(g.rx_desc, 1024u);
}

TEST(AppConfig, BuildsInboundThenOutboundSaSpecsForManualKeys) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.ok()) << r.error();
  auto specs = manual_sa_specs(*r);
  ASSERT_EQ(specs.size(), 2u);  // only the manual_keys connection
  const auto& in = specs[0];
  const auto& out = specs[1];
  EXPECT_EQ(in.dir, dp::Direction::kInbound);
  EXPECT_EQ(out.dir, dp::Direction::kOutbound);
  EXPECT_EQ(in.spi, 0x1001u);
  EXPECT_EQ(out.spi, 4098u);
  EXPECT_EQ(in.conn_id, 2u);
  EXPECT_EQ(in.cipher, crypto::CipherAlg::kAes128Cbc);
  EXPECT_EQ(in.integ, crypto::IntegAlg::kHmacSha1_96);
  ASSERT_EQ(in.enc_key.size(), 16u);
  EXPECT_EQ(in.enc_key[0], 0x00);
  EXPECT_EQ(in.enc_key[15], 0xff);
  EXPECT_EQ(out.enc_key[0], 0xff);
  EXPECT_EQ(out.auth_key.size(), 20u);
  EXPECT_EQ(in.local_addr, *parse_ipv4("192.0.2.1"));
  EXPECT_EQ(in.peer_addr, *parse_ipv4("192.0.2.3"));
  EXPECT_TRUE(in.udp_encap);
  EXPECT_EQ(in.local_port, 4500);
  EXPECT_EQ(in.local_subnet, *parse_prefix("10.1.0.0/24"));
  EXPECT_EQ(in.peer_subnet, *parse_prefix("10.3.0.0/24"));
  EXPECT_EQ(in.replay_window, 64u);
  EXPECT_EQ(out.mtu, 1500);
}

TEST(AppConfig, ManualSaSpecsUseSha256AndAes256KeyLengths) {
  auto s = replace_once(kValid, "auth_algorithm: sha1", "auth_algorithm: sha256");
  s = replace_once(s, "encryption_algorithm: aes-128", "encryption_algorithm: aes-256");
  // The 16-byte keys no longer fit aes-256 / sha256.
  auto bad = parse_config(s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("16 bytes, aes-256 needs 32"), std::string::npos) << bad.error();
  EXPECT_NE(bad.error().find("20 bytes, sha256 needs 32"), std::string::npos) << bad.error();

  const std::string k32(64, 'a');
  s = replace_once(s, "encryption_key: 00112233445566778899aabbccddeeff", "encryption_key: " + k32);
  s = replace_once(s, "encryption_key: ffeeddccbbaa99887766554433221100", "encryption_key: " + k32);
  s = replace_once(s, "auth_key: \"0x0102030405060708090a0b0c0d0e0f1011121314\"", "auth_key: " + k32);
  s = replace_once(s, "auth_key: 1112131415161718191a1b1c1d1e1f2021222324", "auth_key: " + k32);
  auto r = parse_config(s);
  ASSERT_TRUE(r.ok()) << r.error();
  auto specs = manual_sa_specs(*r);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].cipher, crypto::CipherAlg::kAes256Cbc);
  EXPECT_EQ(specs[0].integ, crypto::IntegAlg::kHmacSha256_128);
  EXPECT_EQ(specs[0].enc_key.size(), 32u);
  EXPECT_EQ(specs[0].auth_key.size(), 32u);
}

TEST(AppConfig, ConnectionMtuIsCappedByThePublicPortMtu) {
  auto s = replace_once(kValid, "gateway: 192.0.2.254}", "gateway: 192.0.2.254, mtu: 1400}");
  s = replace_once(s, "      udp_encap: true", "      udp_encap: true\n    mtu: 2000");
  auto r = parse_config(s);
  ASSERT_TRUE(r.ok()) << r.error();
  auto specs = manual_sa_specs(*r);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[1].mtu, 1400);
}

TEST(AppConfig, AdminDownConnectionGetsNoSas) {
  auto s = replace_once(kValid, "  - name: static-b\n", "  - name: static-b\n    admin_state_up: false\n");
  auto r = parse_config(s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(manual_sa_specs(*r).empty());
}

TEST(AppConfig, DescribeShowsTheTunnelButNoSecrets) {
  auto r = parse_config(kValid);
  ASSERT_TRUE(r.ok()) << r.error();
  std::string d = describe(*r);
  EXPECT_NE(d.find("10.1.0.0/24 <=> 10.2.0.0/24"), std::string::npos) << d;
  EXPECT_NE(d.find("ESP in UDP 4500"), std::string::npos) << d;
  EXPECT_EQ(d.find("s3cret"), std::string::npos) << d;
  EXPECT_EQ(d.find("00112233"), std::string::npos) << d;
  EXPECT_EQ(d.find("0102030405"), std::string::npos) << d;
}

}  // namespace
}  // namespace ipsecgw::app
