// The gateway's life cycle: port and queue set-up, mempools, rings, launching the workers,
// counters, the exit report and the rte_telemetry commands. The per-packet code is in
// worker.cpp, the control lcore's slow path in slowpath.cpp.
#include "dataplane/gateway.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip_frag.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_telemetry.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "dataplane/gateway_impl.hpp"

namespace ipsecgw::dp {

struct Gateway::Impl : GatewayImpl {};

namespace {

constexpr unsigned kMbufCache = 256;
constexpr unsigned kFragBuckets = 256, kFragBucketEntries = 8, kFragMaxEntries = 1024;
constexpr unsigned kFragTimeoutSeconds = 5;
constexpr unsigned kJumboMbufs = 255;

std::atomic<unsigned> g_instance{0};

// Telemetry callbacks have no user pointer: they find the live gateway here. Registered once
// per process (DPDK 22.11 cannot unregister); a destroyed gateway clears the pointer.
std::mutex g_tel_mu;
GatewayImpl* g_tel = nullptr;
bool g_tel_registered = false;

std::string name_of(const char* what, unsigned inst, unsigned i = 0) {
  char buf[RTE_RING_NAMESIZE];
  std::snprintf(buf, sizeof buf, "gw%u_%s%u", inst, what, i);
  return buf;
}

void free_ring(rte_ring* r) {
  if (r == nullptr) return;
  void* obj;
  while (rte_ring_dequeue(r, &obj) == 0) {
    // Resolve rings carry integers, the others mbufs.
    if (std::strstr(r->name, "_res") == nullptr) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
  }
  rte_ring_free(r);
}

PortCounters read_port(std::uint16_t id) {
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
  std::vector<const LcoreStats*> ls;
  std::vector<unsigned> ids;
  for (auto& w : g.w) {
    ls.push_back(&w->stats);
    ids.push_back(w->lcore);
  }
  ls.push_back(&g.ctl_stats);
  ids.push_back(rte_get_main_lcore());
  LcoreStats total;
  for (const LcoreStats* s : ls) add_stats(total, *s);
  rte_tel_data_start_dict(d);
  // Per-lcore values are arrays in the order of "lcores" (workers, then the control lcore).
  auto add_array = [&](const std::string& name, auto get) {
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return;
    rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
    for (std::size_t i = 0; i < ls.size(); ++i) rte_tel_data_add_array_u64(a, get(i));
    if (rte_tel_data_add_dict_container(d, name.c_str(), a, 0) != 0) rte_tel_data_free(a);
  };
  add_array("lcores", [&](std::size_t i) { return std::uint64_t{ids[i]}; });
  for (const StatField& f : kStatFields) {
    add_array(f.name, [&](std::size_t i) { return ls[i]->*f.field; });
    rte_tel_data_add_dict_u64(d, (std::string("total_") + f.name).c_str(), total.*f.field);
  }
  for (std::size_t r = 0; r < kDropReasonCount; ++r) {
    add_array(drop_key(r), [&](std::size_t i) { return ls[i]->drops[r]; });
    rte_tel_data_add_dict_u64(d, ("total_" + drop_key(r)).c_str(), total.drops[r]);
  }
  return 0;
}

int tel_ports(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lk(g_tel_mu);
  if (g_tel == nullptr) return -1;
  rte_tel_data_start_dict(d);
  for (const PortState& p : g_tel->ports) {
    const std::string pre = p.side == Side::kUnprotected ? "unprotected_" : "protected_";
    const PortCounters c = p.started ? read_port(p.cfg.port_id) : p.final_counters;
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
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return;
    rte_tel_data_start_array(a, RTE_TEL_U64_VAL);
    for (const SaRow& r : rows) rte_tel_data_add_array_u64(a, get(r));
    if (rte_tel_data_add_dict_container(d, name.c_str(), a, 0) != 0) rte_tel_data_free(a);
  };
  auto add_str = [&](const char* name, auto get) {
    rte_tel_data* a = rte_tel_data_alloc();
    if (a == nullptr) return;
    rte_tel_data_start_array(a, RTE_TEL_STRING_VAL);
    for (const SaRow& r : rows) rte_tel_data_add_array_string(a, get(r).c_str());
    if (rte_tel_data_add_dict_container(d, name, a, 0) != 0) rte_tel_data_free(a);
  };
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

// ---- GatewayImpl pieces that belong to the life cycle ----

GatewayImpl::~GatewayImpl() {
  {
    std::lock_guard lk(g_tel_mu);
    if (g_tel == this) g_tel = nullptr;
  }
  for (TxBuf& b : ctl_tx_) {
    for (unsigned i = 0; i < b.n; ++i) rte_pktmbuf_free(b.pkts[i]);
    b.n = 0;
  }
  for (auto& [key, pr] : pending)
    for (rte_mbuf* m : pr.queued) rte_pktmbuf_free(m);
  pending.clear();
  // SAs: the installer's destructor unlinks and wipes them; no worker runs any more.
  if (inst) inst->drain();
  inst.reset();
  rcu.reset();
  for (auto& wc : w) {
    for (TxBuf& b : wc->tx) {
      for (unsigned i = 0; i < b.n; ++i) rte_pktmbuf_free(b.pkts[i]);
      b.n = 0;
    }
    free_ring(wc->punt);
    free_ring(wc->resolve);
    free_ring(wc->inject);
  }
  w.clear();
  for (PortState& p : ports) {
    if (p.started) {
      rte_eth_dev_stop(p.cfg.port_id);
      p.started = false;
    }
    if (p.configured) rte_eth_dev_close(p.cfg.port_id);
    free_ring(p.handoff);
    p.handoff = nullptr;
  }
  if (death_row != nullptr) {
    rte_ip_frag_free_death_row(death_row, 0);
    delete death_row;
  }
  if (frag_tbl != nullptr) rte_ip_frag_table_destroy(frag_tbl);
  if (jumbo != nullptr) rte_mempool_free(jumbo);
  if (pool != nullptr) rte_mempool_free(pool);
}

Result<void> GatewayImpl::setup_port(PortState& p) {
  const std::uint16_t id = p.cfg.port_id;
  rte_eth_dev_info info{};
  if (int rc = rte_eth_dev_info_get(id, &info); rc != 0)
    return make_error("port " + std::to_string(id) + ": dev_info: " + rte_strerror(-rc));
  rte_eth_conf conf{};
  // RSS on the IP addresses only: all packets of one SA (same outer addresses) land on one
  // queue, so they mostly reach the worker that owns the SA; the rest are handed over to it
  // (one owner per inbound SA, dataplane/sa.hpp).
  if (p.nq_rx > 1 && (info.flow_type_rss_offloads & RTE_ETH_RSS_IP) != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IP & info.flow_type_rss_offloads;
    p.rss = true;
  }
  // IPv4 header checksums verified by the NIC where it can (the worker still checks in software
  // every packet whose mbuf says UNKNOWN, e.g. on vdevs without the offload).
  if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0)
    conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
  int crc = rte_eth_dev_configure(id, p.nq_rx, p.nq_tx, &conf);
  if (crc != 0 && p.nq_tx > p.nq_rx) {
    // Some PMDs (net_tap) want as many TX as RX queues: then the control lcore has no TX
    // queue of its own and sends through the hand-off ring.
    p.nq_tx = p.nq_rx;
    p.ctl_has_txq = p.nq_tx > workers;
    crc = rte_eth_dev_configure(id, p.nq_rx, p.nq_tx, &conf);
  }
  if (crc != 0)
    return make_error("port " + std::to_string(id) + ": configure " + std::to_string(p.nq_rx) +
                      " rx / " + std::to_string(p.nq_tx) + " tx queues: " + rte_strerror(-crc));
  p.configured = true;
  std::uint16_t nrx = static_cast<std::uint16_t>(cfg.rx_desc);
  std::uint16_t ntx = static_cast<std::uint16_t>(cfg.tx_desc);
  rte_eth_dev_adjust_nb_rx_tx_desc(id, &nrx, &ntx);
  int socket = rte_eth_dev_socket_id(id);
  if (socket < 0) socket = SOCKET_ID_ANY;
  for (std::uint16_t q = 0; q < p.nq_rx; ++q)
    if (int rc = rte_eth_rx_queue_setup(id, q, nrx, socket, nullptr, pool); rc != 0)
      return make_error("port " + std::to_string(id) + ": rx queue " + std::to_string(q) +
                        ": " + rte_strerror(-rc));
  for (std::uint16_t q = 0; q < p.nq_tx; ++q)
    if (int rc = rte_eth_tx_queue_setup(id, q, ntx, socket, nullptr); rc != 0)
      return make_error("port " + std::to_string(id) + ": tx queue " + std::to_string(q) +
                        ": " + rte_strerror(-rc));
  rte_ether_addr mac{};
  if (rte_eth_macaddr_get(id, &mac) != 0)
    return make_error("port " + std::to_string(id) + ": cannot read the MAC address");
  std::memcpy(p.mac.data(), mac.addr_bytes, 6);
  p.driver = info.driver_name != nullptr ? info.driver_name : "?";
  return {};
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

// ---- Gateway ----

Result<std::unique_ptr<Gateway>> Gateway::create(const GatewayConfig& cfg) {
  if (rte_lcore_count() < 2)
    return make_error("the gateway needs at least one worker lcore besides the main one "
                      "(EAL -l with two or more lcores)");
  const std::uint16_t ids[2] = {cfg.unprotected.port_id, cfg.protected_port.port_id};
  for (std::uint16_t id : ids)
    if (!rte_eth_dev_is_valid_port(id))
      return make_error("port " + std::to_string(id) + " does not exist (check -a/--vdev)");
  if (ids[0] == ids[1]) return make_error("unprotected and protected ports must differ");
  if (cfg.unprotected.addr == 0 || cfg.protected_port.addr == 0)
    return make_error("both ports need an address");
  if (!cfg.unprotected.subnet.contains(cfg.unprotected.addr))
    return make_error("unprotected.addr is outside unprotected.subnet");
  if (!cfg.protected_port.subnet.contains(cfg.protected_port.addr))
    return make_error("protected.addr is outside protected.subnet");

  std::unique_ptr<Gateway> gw(new Gateway());
  gw->impl_ = std::make_unique<Impl>();
  GatewayImpl& g = *gw->impl_;
  g.cfg = cfg;
  g.workers = rte_lcore_count() - 1;
  g.hz = rte_get_tsc_hz();
  const unsigned inst = g_instance.fetch_add(1);
  const int socket = static_cast<int>(rte_socket_id());

  // Queues per port: one RX queue per worker and one TX queue per worker plus one for the
  // control lcore, as far as the device allows (net_af_packet: qpairs; net_pcap: one).
  unsigned desc_total = 0;
  for (unsigned s = 0; s < 2; ++s) {
    PortState& p = g.ports[s];
    p.cfg = s == 0 ? cfg.unprotected : cfg.protected_port;
    p.side = static_cast<Side>(s);
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(p.cfg.port_id, &info); rc != 0)
      return make_error("port " + std::to_string(p.cfg.port_id) + ": " + rte_strerror(-rc));
    p.nq_rx = static_cast<std::uint16_t>(std::max(1u, std::min<unsigned>(g.workers,
                                                                         info.max_rx_queues)));
    p.nq_tx = static_cast<std::uint16_t>(std::max(1u, std::min<unsigned>(g.workers + 1,
                                                                         info.max_tx_queues)));
    p.ctl_has_txq = p.nq_tx > g.workers;
    std::uint16_t nrx = static_cast<std::uint16_t>(cfg.rx_desc);
    std::uint16_t ntx = static_cast<std::uint16_t>(cfg.tx_desc);
    rte_eth_dev_adjust_nb_rx_tx_desc(p.cfg.port_id, &nrx, &ntx);
    desc_total += p.nq_rx * nrx + p.nq_tx * ntx;
  }

  // Every mbuf that can sit somewhere at once: RX/TX descriptors, per-lcore TX buffers and
  // bursts (with inner fragments), the rings, reassembly, and the per-lcore mempool caches.
  const unsigned lcores = g.workers + 1;
  unsigned n = cfg.mbufs;
  if (n == 0) {
    n = desc_total + lcores * (2 * kTxBufLen + kMaxBurst * (kMaxFragsOut + 2)) +
        g.workers * (kPuntRingSize + kInjectRingSize) + 2 * kHandoffRingSize +
        kFragMaxEntries * RTE_LIBRTE_IP_FRAG_MAX_FRAG + lcores * kMbufCache * 3 / 2 + 1024;
    n = static_cast<unsigned>(rte_align32pow2(n) - 1);
  }
  g.pool = rte_pktmbuf_pool_create(name_of("pool", inst).c_str(), n, kMbufCache, 0,
                                   RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (g.pool == nullptr)
    return make_error("cannot create the mbuf pool of " + std::to_string(n) +
                      " mbufs: " + rte_strerror(rte_errno));
  static_assert(RTE_PKTMBUF_HEADROOM >= 128, "outer headers need 128 bytes of headroom");
  g.jumbo = rte_pktmbuf_pool_create(name_of("jumbo", inst).c_str(), kJumboMbufs, 32, 0,
                                    kJumboDataRoom, socket);
  if (g.jumbo == nullptr) return make_error("cannot create the reassembly mbuf pool");

  for (unsigned s = 0; s < 2; ++s) {
    PortState& p = g.ports[s];
    if (auto r = g.setup_port(p); !r) return make_error(r.error());
    if (p.nq_tx < g.workers + 1) {  // some lcore has no TX queue of its own on this port
      p.handoff = rte_ring_create(name_of("hoff", inst, s).c_str(), kHandoffRingSize, socket,
                                  RING_F_SC_DEQ);
      if (p.handoff == nullptr) return make_error("cannot create the TX hand-off ring");
    }
  }

  auto rcu = Rcu::create(g.workers);
  if (!rcu) return make_error(rcu.error());
  g.rcu = std::move(rcu.value());
  auto tables = DpSaInstaller::create(*g.rcu, cfg.sa_capacity, socket);
  if (!tables) return make_error(tables.error());
  g.inst = std::move(tables.value());

  unsigned idx = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    auto wc = std::make_unique<WorkerCtx>();
    wc->g = &g;
    wc->idx = idx;
    wc->lcore = lcore;
    for (unsigned s = 0; s < 2; ++s) {
      wc->has_rxq[s] = idx < g.ports[s].nq_rx;
      wc->has_txq[s] = idx < g.ports[s].nq_tx;
    }
    wc->punt = rte_ring_create(name_of("punt", inst, idx).c_str(), kPuntRingSize, socket,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
    wc->resolve = rte_ring_create(name_of("res", inst, idx).c_str(), kResolveRingSize, socket,
                                  RING_F_SP_ENQ | RING_F_SC_DEQ);
    // Multi-producer: the control lcore (reassembled ESP) and the other workers (packets of SAs
    // this worker owns) enqueue; only this worker dequeues.
    wc->inject = rte_ring_create(name_of("inj", inst, idx).c_str(), kInjectRingSize, socket,
                                 RING_F_SC_DEQ);
    if (wc->punt == nullptr || wc->resolve == nullptr || wc->inject == nullptr) {
      g.w.push_back(std::move(wc));
      return make_error("cannot create the worker rings");
    }
    auto eng = crypto::EspEngine::create();
    if (!eng) {
      g.w.push_back(std::move(wc));
      return make_error("ESP engine: " + eng.error());
    }
    wc->engine = std::move(eng.value());
    g.w.push_back(std::move(wc));
    ++idx;
  }

  g.frag_tbl = rte_ip_frag_table_create(kFragBuckets, kFragBucketEntries, kFragMaxEntries,
                                        g.hz * kFragTimeoutSeconds, socket);
  if (g.frag_tbl == nullptr) return make_error("cannot create the reassembly table");
  g.death_row = new rte_ip_frag_death_row{};
  g.scratch.resize(65536);

  for (const StaticNeighbor& nb : cfg.neighbors) {
    const bool u = cfg.unprotected.subnet.contains(nb.ip) || nb.ip == cfg.unprotected.gateway;
    const bool pr = cfg.protected_port.subnet.contains(nb.ip) ||
                    nb.ip == cfg.protected_port.gateway ||
                    std::any_of(cfg.protected_routes.begin(), cfg.protected_routes.end(),
                                [&](const Route& r) { return r.via == nb.ip; });
    for (Side s : {Side::kUnprotected, Side::kProtected}) {
      if ((s == Side::kUnprotected ? u : pr) || (!u && !pr)) {
        g.neigh.set(s, nb.ip, nb.mac);
        g.static_keys.insert(std::uint64_t{static_cast<std::uint8_t>(s)} << 32 | nb.ip);
      }
    }
  }
  g.sender = std::make_unique<GatewaySender>(g);
  g.last_timer_tsc = g.last_snapshot_tsc = rte_rdtsc();
  g.icmp_refill_tsc = 0;  // the ICMP error bucket starts full

  if (cfg.telemetry) {
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
  return gw;
}

Gateway::~Gateway() {
  if (impl_) stop();
}

SaInstaller& Gateway::installer() noexcept { return *impl_->inst; }
DpSaInstaller& Gateway::tables() noexcept { return *impl_->inst; }
void Gateway::set_datagram_handler(DatagramHandler* h) noexcept { impl_->handler = h; }
DatagramSender& Gateway::datagram_sender() noexcept { return *impl_->sender; }

Result<void> Gateway::start() {
  GatewayImpl& g = *impl_;
  if (g.running) return {};
  for (PortState& p : g.ports) {
    if (!p.started) {
      if (int rc = rte_eth_dev_start(p.cfg.port_id); rc != 0)
        return make_error("port " + std::to_string(p.cfg.port_id) + ": start: " +
                          rte_strerror(-rc));
      p.started = true;
      (void)rte_eth_promiscuous_enable(p.cfg.port_id);  // not all vdevs support it
    }
  }
  g.stop_flag.store(false, std::memory_order_release);
  for (auto& wc : g.w) {
    if (int rc = rte_eal_remote_launch(&GatewayImpl::worker_main, wc.get(), wc->lcore); rc != 0) {
      g.stop_flag.store(true, std::memory_order_release);
      rte_eal_mp_wait_lcore();
      return make_error("cannot launch a worker on lcore " + std::to_string(wc->lcore));
    }
  }
  g.running = true;
  // Resolve the default next hops early, so the first packets find them.
  g.resolve(Side::kUnprotected, g.cfg.unprotected.gateway);
  g.resolve(Side::kProtected, g.cfg.protected_port.gateway);
  g.ctl_flush();
  return {};
}

unsigned Gateway::control_poll() { return impl_->control_poll(); }

void Gateway::stop() {
  GatewayImpl& g = *impl_;
  if (g.running) {
    g.ctl_flush();
    g.stop_flag.store(true, std::memory_order_release);
    for (auto& wc : g.w) rte_eal_wait_lcore(wc->lcore);
    g.running = false;
  }
  for (PortState& p : g.ports) {
    if (!p.started) continue;
    p.final_counters = read_port(p.cfg.port_id);
    rte_eth_dev_stop(p.cfg.port_id);
    p.started = false;
  }
  g.refresh_sa_snapshot();
}

std::vector<LcoreStats> Gateway::lcore_stats() const {
  std::vector<LcoreStats> v;
  for (auto& wc : impl_->w) v.push_back(wc->stats);
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
  return p.started ? read_port(p.cfg.port_id) : p.final_counters;
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
    line(i < g.w.size() ? "lcore " + std::to_string(g.w[i]->lcore) + " worker"
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
