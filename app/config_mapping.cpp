// The validated Config turned into what the process uses: the data plane's GatewayConfig,
// the static SAs of manual_keys connections, and the --check-config summary.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "app/config.hpp"

namespace ipsecgw::app {

dp::GatewayConfig to_gateway_config(const Config& cfg) {
  const auto& vs = cfg.vpnservice;
  dp::GatewayConfig g;
  g.unprotected = {vs.unprotected.port, vs.unprotected.subnet, vs.unprotected.address,
                   vs.unprotected.gateway, vs.unprotected.mtu};
  g.protected_port = {vs.protected_port.port, vs.protected_port.subnet,
                      vs.protected_port.address, vs.protected_port.gateway,
                      vs.protected_port.mtu};
  for (auto& r : vs.routes) g.protected_routes.push_back({r.destination, r.nexthop});
  for (auto& n : vs.neighbors) g.neighbors.push_back({n.ip, n.mac});
  g.unmatched = vs.unmatched_traffic == UnmatchedTraffic::kForward ? dp::UnmatchedPolicy::kForward
                                                                   : dp::UnmatchedPolicy::kDrop;
  g.sa_capacity = cfg.dataplane.sa_capacity;
  g.mbufs = cfg.dataplane.mbufs;
  g.rx_desc = cfg.dataplane.rx_desc;
  g.tx_desc = cfg.dataplane.tx_desc;
  g.idle_sleep_us = cfg.dataplane.idle_sleep_us;
  g.telemetry = cfg.dataplane.telemetry;
  return g;
}

std::vector<dp::SaSpec> manual_sa_specs(const Config& cfg) {
  std::vector<dp::SaSpec> out;
  if (!cfg.vpnservice.admin_state_up) return out;
  for (std::size_t i = 0; i < cfg.ipsec_site_connections.size(); ++i) {
    const auto& c = cfg.ipsec_site_connections[i];
    if (!c.admin_state_up || !c.manual_keys || c.local_cidrs.empty() || c.peer_cidrs.empty())
      continue;
    const auto& pol = cfg.ipsecpolicy_of(c);
    const auto& mk = *c.manual_keys;
    for (auto dir : {dp::Direction::kInbound, dp::Direction::kOutbound}) {
      const ManualSa& m = dir == dp::Direction::kInbound ? mk.inbound : mk.outbound;
      dp::SaSpec s;
      s.dir = dir;
      s.spi = m.spi;
      s.conn_id = static_cast<std::uint32_t>(i + 1);
      s.cipher = to_cipher(pol.encryption_algorithm);
      s.integ = to_integ(pol.auth_algorithm);
      s.enc_key = m.encryption_key.clone();
      s.auth_key = m.auth_key.clone();
      s.local_addr = cfg.vpnservice.external_v4_ip;
      s.peer_addr = c.peer_address;
      s.udp_encap = mk.udp_encap;
      s.local_subnet = c.local_cidrs.front();
      s.peer_subnet = c.peer_cidrs.front();
      s.replay_window = mk.replay_window;
      // The outer packet must fit both the connection's MTU and the public link's.
      s.mtu = std::min<std::uint16_t>(c.mtu, cfg.vpnservice.unprotected.mtu);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::string describe(const Config& cfg) {
  std::ostringstream o;
  const auto& vs = cfg.vpnservice;
  auto port = [&](const char* name, const PortSettings& p) {
    o << "  " << name << ": port " << p.port << ", " << dp::format_ipv4(p.address) << "/"
      << unsigned(p.subnet.len);
    if (p.gateway) o << ", gateway " << dp::format_ipv4(p.gateway);
    o << ", mtu " << p.mtu << "\n";
  };
  o << "vpnservice " << vs.name << (vs.admin_state_up ? "" : " (admin down)")
    << ": external_v4_ip " << dp::format_ipv4(vs.external_v4_ip) << ", subnet "
    << dp::format_prefix(vs.subnet) << ", unmatched traffic "
    << (vs.unmatched_traffic == UnmatchedTraffic::kDrop ? "drop" : "forward") << "\n";
  port("unprotected", vs.unprotected);
  port("protected", vs.protected_port);
  for (auto& r : vs.routes)
    o << "  route " << dp::format_prefix(r.destination) << " via " << dp::format_ipv4(r.nexthop)
      << "\n";
  for (auto& n : vs.neighbors) {
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", n.mac[0], n.mac[1], n.mac[2],
                  n.mac[3], n.mac[4], n.mac[5]);
    o << "  neighbor " << dp::format_ipv4(n.ip) << " at " << mac << "\n";
  }
  for (auto& c : cfg.ipsec_site_connections) {
    const auto& esp = cfg.ipsecpolicy_of(c);
    o << "connection " << c.name << (c.admin_state_up ? "" : " (admin down)") << ": peer "
      << dp::format_ipv4(c.peer_address) << " (id " << c.peer_id << "), ";
    for (auto& l : c.local_cidrs) o << dp::format_prefix(l) << " ";
    o << "<=> ";
    for (auto& p : c.peer_cidrs) o << dp::format_prefix(p) << " ";
    o << "mtu " << c.mtu << "\n";
    o << "  esp: " << to_string(esp.encryption_algorithm) << "/" << to_string(esp.auth_algorithm)
      << " (ipsecpolicy " << esp.name << ")";
    if (c.manual_keys) {
      o << ", manual keys (value not shown), spi in 0x" << std::hex << c.manual_keys->inbound.spi
        << " out 0x" << c.manual_keys->outbound.spi << std::dec
        << (c.manual_keys->udp_encap ? ", ESP in UDP 4500" : ", ESP (IP proto 50)")
        << ", replay window " << c.manual_keys->replay_window << "\n";
    } else {
      const auto& ike = cfg.ikepolicy_of(c);
      o << ", pfs " << to_string(esp.pfs) << ", lifetime " << esp.lifetime.value << " s\n";
      o << "  ike: v1 main mode " << to_string(ike.encryption_algorithm) << "/"
        << to_string(ike.auth_algorithm) << "/" << to_string(ike.pfs) << ", lifetime "
        << ike.lifetime.value << " s (ikepolicy " << ike.name << "), psk (set), initiator "
        << to_string(c.initiator) << ", dpd " << to_string(c.dpd.action) << " "
        << c.dpd.interval << "/" << c.dpd.timeout << " s\n";
    }
  }
  return o.str();
}

}  // namespace ipsecgw::app
