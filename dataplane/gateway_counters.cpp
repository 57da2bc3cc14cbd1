// The gateway's counters: per-port, per-lcore and per-SA numbers for the exit report
// (Gateway::report) and the /ipsecgw/stats, /ipsecgw/ports and /ipsecgw/sa rte_telemetry
// commands. The life cycle is in gateway.cpp.
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_telemetry.h>

#include <cstdio>
#include <mutex>
#include <sstream>

#include "dataplane/gateway.hpp"
#include "dataplane/gateway_impl.hpp"
#include "dataplane/telemetry_columns.hpp"

namespace ipsecgw::dp {

PortCounters read_port_counters(std::uint16_t id) {
  PortCounters c;
  rte_eth_stats st{};
  if (rte_eth_stats_get(id, &st) != 0) return c;
  c.ipackets = st.ipackets;
  c.opackets = st.opackets;
  c.ibytes = st.ibytes;
  c.obytes = st.obytes;
  c.imissed = st.imissed;
  c.ierrors = st.ierrors;
  c.oerrors = st.oerrors;
  c.rx_nombuf = st.rx_nombuf;
  return c;
}

namespace {

// Telemetry callbacks have no user pointer: they find the live gateway here. Registered once
// per process (DPDK 22.11 cannot unregister); a destroyed gateway clears the pointer.
std::mutex g_tel_mu;
GatewayImpl* g_tel = nullptr;
bool g_tel_registered = false;

void add_stats(LcoreStats& t, const LcoreStats& s) {
  for (std::size_t r = 0; r < kDropReasonCount; ++r) t.drops[r] += s.drops[r];
  t.esp_out_packets += s.esp_out_packets;
  t.esp_out_bytes += s.esp_out_bytes;
  t.esp_in_packets += s.esp_in_packets;
  t.esp_in_bytes += s.esp_in_bytes;
  t.rx_packets += s.rx_packets;
  t.tx_packets += s.tx_packets;
  t.punted += s.punted;
  t.forwarded += s.forwarded;
  t.keepalives += s.keepalives;
  t.handed_off += s.handed_off;
}

// The named scalar counters of LcoreStats, in report and telemetry order.
struct StatField {
  const char* name;
  std::uint64_t LcoreStats::*field;
};
constexpr StatField kStatFields[] = {
    {"rx_packets", &LcoreStats::rx_packets},
    {"tx_packets", &LcoreStats::tx_packets},
    {"punted", &LcoreStats::punted},
    {"forwarded", &LcoreStats::forwarded},
    {"keepalives", &LcoreStats::keepalives},
    {"handed_off", &LcoreStats::handed_off},
    {"esp_in_packets", &LcoreStats::esp_in_packets},
    {"esp_in_bytes", &LcoreStats::esp_in_bytes},
    {"esp_out_packets", &LcoreStats::esp_out_packets},
    {"esp_out_bytes", &LcoreStats::esp_out_bytes},
};

struct PortField {
  const char* name;
  std::uint64_t PortCounters::*field;
};
constexpr PortField kPortFields[] = {
    {"ipackets", &PortCounters::ipackets}, {"opackets", &PortCounters::opackets},
    {"ibytes", &PortCounters::ibytes},     {"obytes", &PortCounters::obytes},
    {"imissed", &PortCounters::imissed},   {"ierrors", &PortCounters::ierrors},
    {"oerrors", &PortCounters::oerrors},   {"rx_nombuf", &PortCounters::rx_nombuf},
};

std::string drop_key(std::size_t r) {
  return "drop_" + std::string(to_string(static_cast<DropReason>(r)));
}

// ---- telemetry (runs on the telemetry thread; reads counters racily, SAs from the snapshot)

int tel_stats(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lk(g_tel_mu);
  if (g_tel == nullptr) return -1;
  GatewayImpl& g = *g_tel;
  struct LcoreRow {
    unsigned lcore;
    const LcoreStats* stats;
  };
  std::vector<LcoreRow> rows;  // workers, then the control lcore
  for (auto& w : g.worker_ctxs) rows.push_back({w->lcore, &w->stats});
  rows.push_back({rte_get_main_lcore(), &g.ctl_stats});
  LcoreStats total;
  for (const LcoreRow& r : rows) add_stats(total, *r.stats);
  rte_tel_data_start_dict(d);
  // Per-lcore values are arrays in the order of "lcores".
  add_u64_column(d, "lcores", rows, [](const LcoreRow& r) { return r.lcore; });
  for (const StatField& f : kStatFields) {
    add_u64_column(d, f.name, rows, [&](const LcoreRow& r) { return r.stats->*f.field; });
    rte_tel_data_add_dict_u64(d, (std::string("total_") + f.name).c_str(), total.*f.field);
  }
  for (std::size_t k = 0; k < kDropReasonCount; ++k) {
    add_u64_column(d, drop_key(k).c_str(), rows,
                   [k](const LcoreRow& r) { return r.stats->drops[k]; });
    rte_tel_data_add_dict_u64(d, ("total_" + drop_key(k)).c_str(), total.drops[k]);
  }
  return 0;
}

int tel_ports(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lk(g_tel_mu);
  if (g_tel == nullptr) return -1;
  rte_tel_data_start_dict(d);
  for (const PortState& p : g_tel->ports) {
    const std::string pre = p.side == Side::kUnprotected ? "unprotected_" : "protected_";
    const PortCounters c = p.started ? read_port_counters(p.cfg.port_id) : p.final_counters;
    rte_tel_data_add_dict_u64(d, (pre + "port_id").c_str(), p.cfg.port_id);
    rte_tel_data_add_dict_u64(d, (pre + "rx_queues").c_str(), p.nq_rx);
    rte_tel_data_add_dict_u64(d, (pre + "tx_queues").c_str(), p.nq_tx);
    rte_tel_data_add_dict_string(d, (pre + "addr").c_str(), format_ipv4(p.cfg.addr).c_str());
    for (const PortField& f : kPortFields)
      rte_tel_data_add_dict_u64(d, (pre + f.name).c_str(), c.*f.field);
  }
  return 0;
}

int tel_sa(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lk(g_tel_mu);
  if (g_tel == nullptr) return -1;
  std::vector<SaRow> rows;
  {
    std::lock_guard sl(g_tel->snap_mu);
    rows = g_tel->sa_snapshot;
  }
  if (rows.size() > RTE_TEL_MAX_ARRAY_ENTRIES) rows.resize(RTE_TEL_MAX_ARRAY_ENTRIES);
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "count", rows.size());
  auto add_u64 = [&](const std::string& name, auto get) {
    add_u64_column(d, name.c_str(), rows, get);
  };
  auto add_str = [&](const char* name, auto get) { add_string_column(d, name, rows, get); };
  add_str("dir", [](const SaRow& r) {
    return std::string(r.dir == Direction::kInbound ? "in" : "out");
  });
  add_u64("spi", [](const SaRow& r) { return std::uint64_t{r.spi}; });
  add_u64("conn_id", [](const SaRow& r) { return std::uint64_t{r.conn_id}; });
  add_str("peer", [](const SaRow& r) { return format_ipv4(r.peer); });
  add_u64("udp_encap", [](const SaRow& r) { return std::uint64_t{r.udp_encap}; });
  add_u64("packets", [](const SaRow& r) { return r.c.packets; });
  add_u64("bytes", [](const SaRow& r) { return r.c.bytes; });
  for (std::size_t k = 0; k < kDropReasonCount; ++k)
    add_u64(drop_key(k), [k](const SaRow& r) { return r.c.drops[k]; });
  return 0;
}

}  // namespace

void publish_telemetry(GatewayImpl& g) {
  std::lock_guard lk(g_tel_mu);
  if (!g_tel_registered) {
    rte_telemetry_register_cmd("/ipsecgw/stats", tel_stats,
                               "Per-lcore and total counters with drop reasons. No parameters");
    rte_telemetry_register_cmd("/ipsecgw/ports", tel_ports,
                               "Port counters of both ports. No parameters");
    rte_telemetry_register_cmd("/ipsecgw/sa", tel_sa,
                               "Per-SA counters (refreshed every second). No parameters");
    g_tel_registered = true;
  }
  g_tel = &g;
}

void withdraw_telemetry(const GatewayImpl& g) {
  std::lock_guard lk(g_tel_mu);
  if (g_tel == &g) g_tel = nullptr;
}

std::vector<SaRow> GatewayImpl::sa_rows() const {
  std::vector<SaRow> rows;
  if (!inst) return rows;
  for (const SaHead* sa : inst->all_sas()) {
    SaRow r{sa->dir, sa->spi, sa->conn_id, sa->local_addr, sa->peer_addr,
            (sa->flags & kSaUdpEncap) != 0, sa_read_counters(*sa)};
    rows.push_back(r);
  }
  return rows;
}

void GatewayImpl::refresh_sa_snapshot() {
  std::vector<SaRow> rows = sa_rows();
  std::lock_guard lk(snap_mu);
  sa_snapshot = std::move(rows);
}

std::vector<LcoreStats> Gateway::lcore_stats() const {
  std::vector<LcoreStats> v;
  for (auto& wc : impl_->worker_ctxs) v.push_back(wc->stats);
  v.push_back(impl_->ctl_stats);
  return v;
}

LcoreStats Gateway::total_stats() const {
  LcoreStats t;
  for (const LcoreStats& s : lcore_stats()) add_stats(t, s);
  return t;
}

PortCounters Gateway::port_counters(bool protected_side) const {
  const PortState& p = impl_->ports[protected_side ? 1 : 0];
  return p.started ? read_port_counters(p.cfg.port_id) : p.final_counters;
}

std::string Gateway::report() const {
  const GatewayImpl& g = *impl_;
  std::ostringstream o;
  for (const PortState& p : g.ports) {
    const PortCounters c = port_counters(p.side == Side::kProtected);
    o << (p.side == Side::kUnprotected ? "port unprotected" : "port protected") << " id "
      << p.cfg.port_id << " (" << p.driver << ", " << p.nq_rx << " rx / " << p.nq_tx
      << " tx queues" << (p.rss ? ", rss" : "") << ") " << format_ipv4(p.cfg.addr);
    for (const PortField& f : kPortFields) o << ' ' << f.name << '=' << c.*f.field;
    o << '\n';
  }
  auto line = [&](const std::string& who, const LcoreStats& s) {
    o << who;
    for (const StatField& f : kStatFields) o << ' ' << f.name << '=' << s.*f.field;
    for (std::size_t r = 0; r < kDropReasonCount; ++r)
      if (s.drops[r] != 0) o << ' ' << drop_key(r) << '=' << s.drops[r];
    o << '\n';
  };
  const auto all = lcore_stats();
  for (std::size_t i = 0; i < all.size(); ++i)
    line(i < g.worker_ctxs.size() ? "lcore " + std::to_string(g.worker_ctxs[i]->lcore) + " worker"
                        : "lcore " + std::to_string(rte_get_main_lcore()) + " control",
         all[i]);
  line("total", total_stats());
  o << "control arp_requests=" << g.arp_requests_sent << " arp_replies=" << g.arp_replies_sent
    << " icmp_sent=" << g.icmp_sent << " ike_in=" << g.ike_in << " ike_out=" << g.ike_out
    << " reassembled=" << g.reassembled << " neighbors=" << g.neigh.size() << '\n';
  for (const SaRow& r : g.sa_rows()) {
    char spi[16];
    std::snprintf(spi, sizeof spi, "0x%08x", r.spi);
    o << "sa " << (r.dir == Direction::kInbound ? "in " : "out ") << spi << " conn " << r.conn_id
      << " peer " << format_ipv4(r.peer) << (r.udp_encap ? " udp" : "")
      << " packets=" << r.c.packets << " bytes=" << r.c.bytes;
    for (std::size_t k = 0; k < kDropReasonCount; ++k)
      if (r.c.drops[k] != 0) o << ' ' << drop_key(k) << '=' << r.c.drops[k];
    o << '\n';
  }
  return o.str();
}

}  // namespace ipsecgw::dp
