// Maps the YAML model (app/config.hpp, Neutron VPNaaS names) onto the IKE daemon's connection
// configuration (ike/config.hpp). No DPDK: tests/app checks the mapping directly.
#pragma once

#include <string>
#include <vector>

#include "app/config.hpp"
#include "app/model/lookup.hpp"
#include "app/model/model.hpp"
#include "common/result.hpp"
#include "ike/config.hpp"

namespace ipsecgw::app {

// One ike::ConnectionConfig per enabled site connection without manual_keys, in configuration
// order; id = index in ipsec_site_connections + 1 (the conn_id manual_sa_specs also uses).
//   ikepolicy:   encryption_algorithm -> cipher, auth_algorithm -> hash, pfs -> Main Mode DH
//                group (group2/5/14 = MODP 1024/1536/2048, RFC 2409 §6.2, RFC 3526 §3),
//                lifetime.value -> lifetime_s
//   ipsecpolicy: cipher, integ (HMAC-SHA1-96 / HMAC-SHA-256-128), pfs -> Quick Mode PFS group
//   dpd:         hold/clear/restart-by-peer -> hold (delete, wait for the peer or our own
//                re-initiation), restart -> restart; disabled -> hold with a one-year interval
//   mtu:         min(connection mtu, unprotected port mtu), as for static SAs
//   local_addr:  vpnservice.external_v4_ip
//   CIDRs:       the first local and peer CIDR, the others as extra subnets: a CHILD SA per
//                (local, peer) pair
std::vector<ike::ConnectionConfig> ike_connection_configs(const Config& cfg);

// The same mapping for a connection of the API's desired-state model (app/model/), used by the
// reconciler (app/reconciler.*): the local and peer CIDRs resolved through the model (a CHILD
// SA per pair), peer_id and local_id as given, name and id given by the caller, admin_state_up as `enabled`. An error names the field
// the IKE daemon cannot take.
struct IkeGatewayParams {
  dp::Ipv4 local_addr = 0;       // vpnservice.external_v4_ip of the configuration file
  std::uint16_t port_mtu = 1500;  // the unprotected port's mtu
};
Result<ike::ConnectionConfig> ike_connection_config(const model::State& s,
                                                    const model::Environment& env,
                                                    const model::SiteConnection& c,
                                                    const IkeGatewayParams& gw);
// The same through a lookup built once for many connections (the reconciler).
Result<ike::ConnectionConfig> ike_connection_config(const model::StateLookup& s,
                                                    const model::Environment& env,
                                                    const model::SiteConnection& c,
                                                    const IkeGatewayParams& gw);

// A DPD interval long enough to mean "never" for dpd: {action: disabled}.
inline constexpr std::uint32_t kDpdDisabledIntervalS = 365u * 86400u;

}  // namespace ipsecgw::app
