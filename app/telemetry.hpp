// The process's own rte_telemetry commands: /ipsecgw/connections[,START], the site connections'
// status rows (app/connections.hpp: Neutron status, reason, phases, algorithms, SPIs, last
// error and rekey, traffic) a page at a time (each reply fits DPDK's 16 KiB: `total`, `start`,
// `count` rows, `next` = the START of the next page, absent on the last);
// /ipsecgw/connection,NAME, one connection's row as a dict; /ipsecgw/ike, the IKE daemon's
// counters. The data plane's /ipsecgw/stats,
// /ipsecgw/ports and /ipsecgw/sa are registered by the gateway (dataplane/gateway_counters.cpp).
#pragma once

#include "app/conn_table.hpp"

namespace ipsecgw::ike {
struct IkeCounters;
}

namespace ipsecgw::app {

// Registers /ipsecgw/connections, /ipsecgw/connection and /ipsecgw/ike (once per process; DPDK 22.11 cannot unregister).
void register_telemetry();

// The rows /ipsecgw/connections and /ipsecgw/connection report: the control lcore writes them
// (ConnectionStatus::publish_all at start, publish after each refresh that changed rows, clear
// at shutdown), the telemetry thread reads a page or one row of them (ConnTable's lock).
ConnTable& connection_table();

// The counters /ipsecgw/ike reports from now on (control lcore).
void publish_ike_counters(const ike::IkeCounters& c);

}  // namespace ipsecgw::app
