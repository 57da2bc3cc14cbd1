// The gateway's life cycle: Gateway::create (validation, queues, mempools, ports, rings, SA
// tables, workers, reassembly, static neighbours), start, stop and destruction. Counters, the
// exit report and the rte_telemetry commands are in gateway_counters.cpp, the per-packet code
// in worker.cpp, the control lcore's slow path in slowpath.cpp.
#include "dataplane/gateway.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip_frag.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "dataplane/gateway_impl.hpp"

namespace ipsecgw::dp {
namespace {

constexpr unsigned kMbufCache = 256;
constexpr unsigned kFragBuckets = 256, kFragBucketEntries = 8, kFragMaxEntries = 1024;
constexpr unsigned kFragTimeoutSeconds = 5;
constexpr unsigned kJumboMbufs = 255;

std::atomic<unsigned> g_instance{0};

std::string name_of(const char* what, unsigned inst, unsigned i = 0) {
  char buf[RTE_RING_NAMESIZE];
  std::snprintf(buf, sizeof buf, "gw%u_%s%u", inst, what, i);
  return buf;
}

// What a ring carries, which decides how free_ring disposes of what is left in it.
enum class RingContent : std::uint8_t {
  kMbufs,      // punt, inject and hand-off rings: freed with rte_pktmbuf_free
  kResolveKeys,  // resolve rings: neighbor_key values, nothing to free
};

void free_ring(rte_ring* r, RingContent content) {
  if (r == nullptr) return;
  void* obj;
  while (rte_ring_dequeue(r, &obj) == 0)
    if (content == RingContent::kMbufs) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
  rte_ring_free(r);
}

}  // namespace

// ---- GatewayImpl pieces that belong to the life cycle ----

GatewayImpl::~GatewayImpl() {
  withdraw_telemetry(*this);
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
  for (auto& wc : worker_ctxs) {
    for (TxBuf& b : wc->tx) {
      for (unsigned i = 0; i < b.n; ++i) rte_pktmbuf_free(b.pkts[i]);
      b.n = 0;
    }
    free_ring(wc->punt, RingContent::kMbufs);
    free_ring(wc->ike, RingContent::kMbufs);
    free_ring(wc->ike_new, RingContent::kMbufs);
    free_ring(wc->resolve, RingContent::kResolveKeys);
    free_ring(wc->inject, RingContent::kMbufs);
    free_ring(wc->inner_in, RingContent::kMbufs);
  }
  worker_ctxs.clear();
  for (PortState& p : ports) {
    if (p.started) {
      rte_eth_dev_stop(p.cfg.port_id);
      p.started = false;
    }
    if (p.configured) rte_eth_dev_close(p.cfg.port_id);
    free_ring(p.handoff, RingContent::kMbufs);
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

// ---- Gateway::create, step by step ----
//
// Each step fills part of the GatewayImpl; on an error create returns it and the half-built
// GatewayImpl's destructor frees what the earlier steps made.
namespace {

Result<void> check_config(const GatewayConfig& cfg) {
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
  return {};
}

// Queues per port: one RX queue per worker and one TX queue per worker plus one for the
// control lcore, as far as the device allows (net_af_packet: qpairs; net_pcap: one). Returns
// the RX + TX descriptors of both ports, for sizing the mbuf pool.
Result<unsigned> plan_queues(GatewayImpl& g) {
  unsigned desc_total = 0;
  for (unsigned s = 0; s < 2; ++s) {
    PortState& p = g.ports[s];
    p.cfg = s == 0 ? g.cfg.unprotected : g.cfg.protected_port;
    p.side = static_cast<Side>(s);
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(p.cfg.port_id, &info); rc != 0)
      return make_error("port " + std::to_string(p.cfg.port_id) + ": " + rte_strerror(-rc));
    p.nq_rx = static_cast<std::uint16_t>(std::max(1u, std::min<unsigned>(g.workers,
                                                                         info.max_rx_queues)));
    p.nq_tx = static_cast<std::uint16_t>(std::max(1u, std::min<unsigned>(g.workers + 1,
                                                                         info.max_tx_queues)));
    p.ctl_has_txq = p.nq_tx > g.workers;
    std::uint16_t nrx = static_cast<std::uint16_t>(g.cfg.rx_desc);
    std::uint16_t ntx = static_cast<std::uint16_t>(g.cfg.tx_desc);
    rte_eth_dev_adjust_nb_rx_tx_desc(p.cfg.port_id, &nrx, &ntx);
    desc_total += p.nq_rx * nrx + p.nq_tx * ntx;
  }
  return desc_total;
}

// Every mbuf that can sit somewhere at once: RX/TX descriptors, per-lcore TX buffers and
// bursts (with inner fragments), the rings, reassembly, and the per-lcore mempool caches.
unsigned default_mbuf_count(unsigned workers, unsigned desc_total) {
  const unsigned lcores = workers + 1;
  const unsigned n = desc_total + lcores * (2 * kTxBufLen + kMaxBurst * (kMaxFragsOut + 2)) +
                     workers * (kPuntRingSize + 2 * kIkeRingSize + kInjectRingSize) +
                     (workers > 1 ? workers * kInnerRingSize : 0) + 2 * kHandoffRingSize +
                     kFragMaxEntries * RTE_LIBRTE_IP_FRAG_MAX_FRAG +
                     lcores * kMbufCache * 3 / 2 + 1024;
  return static_cast<unsigned>(rte_align32pow2(n) - 1);
}

Result<void> create_mempools(GatewayImpl& g, unsigned inst, int socket, unsigned desc_total) {
  const unsigned n = g.cfg.mbufs != 0 ? g.cfg.mbufs : default_mbuf_count(g.workers, desc_total);
  g.pool = rte_pktmbuf_pool_create(name_of("pool", inst).c_str(), n, kMbufCache, 0,
                                   RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (g.pool == nullptr)
    return make_error("cannot create the mbuf pool of " + std::to_string(n) +
                      " mbufs: " + rte_strerror(rte_errno));
  static_assert(RTE_PKTMBUF_HEADROOM >= 128, "outer headers need 128 bytes of headroom");
  g.jumbo = rte_pktmbuf_pool_create(name_of("jumbo", inst).c_str(), kJumboMbufs, 32, 0,
                                    kJumboDataRoom, socket);
  if (g.jumbo == nullptr) return make_error("cannot create the reassembly mbuf pool");
  return {};
}

// Configures both ports, and gives a port a TX hand-off ring when some lcore has no TX queue
// of its own on it.
Result<void> setup_ports(GatewayImpl& g, unsigned inst, int socket) {
  for (unsigned s = 0; s < 2; ++s) {
    PortState& p = g.ports[s];
    if (auto r = g.setup_port(p); !r) return make_error(r.error());
    if (p.nq_tx < g.workers + 1) {
      p.handoff = rte_ring_create(name_of("hoff", inst, s).c_str(), kHandoffRingSize, socket,
                                  RING_F_SC_DEQ);
      if (p.handoff == nullptr) return make_error("cannot create the TX hand-off ring");
    }
  }
  return {};
}

Result<void> create_sa_tables(GatewayImpl& g, int socket) {
  auto rcu = Rcu::create(g.workers);
  if (!rcu) return make_error(rcu.error());
  g.rcu = std::move(rcu.value());
  auto tables = DpSaInstaller::create(*g.rcu, g.cfg.sa_capacity, socket);
  if (!tables) return make_error(tables.error());
  g.inst = std::move(tables.value());
  return {};
}

// One WorkerCtx per worker lcore: its queues, rings and ESP engine. A context is kept in
// g.worker_ctxs even when incomplete, so that the destructor frees its rings.
Result<void> create_workers(GatewayImpl& g, unsigned inst, int socket) {
  unsigned idx = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    WorkerCtx& wc = *g.worker_ctxs.emplace_back(std::make_unique<WorkerCtx>());
    wc.g = &g;
    wc.idx = idx;
    wc.lcore = lcore;
    for (unsigned s = 0; s < 2; ++s) {
      wc.has_rxq[s] = idx < g.ports[s].nq_rx;
      wc.has_txq[s] = idx < g.ports[s].nq_tx;
    }
    // Zeroed memory is an empty cache (every entry's sa nullptr, owner 0).
    wc.sa_cache.reset(static_cast<InboundSaCache*>(
        rte_zmalloc_socket("ipsecgw_sa_cache", sizeof(InboundSaCache), 64, socket)));
    if (wc.sa_cache == nullptr) return make_error("workers: out of memory for the SA cache");
    wc.punt = rte_ring_create(name_of("punt", inst, idx).c_str(), kPuntRingSize, socket,
                              RING_F_SP_ENQ | RING_F_SC_DEQ);
    wc.ike = rte_ring_create(name_of("ike", inst, idx).c_str(), kIkeRingSize, socket,
                             RING_F_SP_ENQ | RING_F_SC_DEQ);
    wc.ike_new = rte_ring_create(name_of("iken", inst, idx).c_str(), kIkeRingSize, socket,
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    wc.resolve = rte_ring_create(name_of("res", inst, idx).c_str(), kResolveRingSize, socket,
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    // Multi-producer: the control lcore (reassembled ESP) and the other workers (packets of SAs
    // this worker owns) enqueue; only this worker dequeues.
    wc.inject = rte_ring_create(name_of("inj", inst, idx).c_str(), kInjectRingSize, socket,
                                RING_F_SC_DEQ);
    if (wc.punt == nullptr || wc.ike == nullptr || wc.ike_new == nullptr ||
        wc.resolve == nullptr || wc.inject == nullptr)
      return make_error("cannot create the worker rings");
    // Multi-producer too: the other workers hand over the inner packets of outbound SAs this
    // worker owns (dataplane/sa.hpp). One worker owns every SA: no ring.
    if (g.workers > 1) {
      wc.inner_in = rte_ring_create(name_of("inn", inst, idx).c_str(), kInnerRingSize, socket,
                                    RING_F_SC_DEQ);
      if (wc.inner_in == nullptr) return make_error("cannot create the worker rings");
    }
    auto eng = crypto::EspEngine::create();
    if (!eng) return make_error("ESP engine: " + eng.error());
    wc.engine = std::move(eng.value());
    // This worker's share of the echo-reply rate, at least 1/s; a burst of one second's worth.
    if (g.cfg.icmp_echo_per_second != 0) {
      const std::uint64_t share = std::max(1u, g.cfg.icmp_echo_per_second / g.workers);
      wc.echo_interval = std::max<std::uint64_t>(1, g.hz / share);
      wc.echo_tolerance = wc.echo_interval * (share - 1);
    }
    ++idx;
  }
  return {};
}

Result<void> create_reassembly(GatewayImpl& g, int socket) {
  g.frag_tbl = rte_ip_frag_table_create(kFragBuckets, kFragBucketEntries, kFragMaxEntries,
                                        g.hz * kFragTimeoutSeconds, socket);
  if (g.frag_tbl == nullptr) return make_error("cannot create the reassembly table");
  g.death_row = new rte_ip_frag_death_row{};
  g.scratch.resize(65536);
  return {};
}

// A static neighbour goes on the side(s) whose subnet, gateway or route holds its address; on
// both sides when none does.
void load_static_neighbors(GatewayImpl& g) {
  const GatewayConfig& cfg = g.cfg;
  for (const StaticNeighbor& nb : cfg.neighbors) {
    const bool u = cfg.unprotected.subnet.contains(nb.ip) || nb.ip == cfg.unprotected.gateway;
    const bool pr = cfg.protected_port.subnet.contains(nb.ip) ||
                    nb.ip == cfg.protected_port.gateway ||
                    std::any_of(cfg.protected_routes.begin(), cfg.protected_routes.end(),
                                [&](const Route& r) { return r.via == nb.ip; });
    for (Side s : {Side::kUnprotected, Side::kProtected}) {
      if ((s == Side::kUnprotected ? u : pr) || (!u && !pr)) {
        g.neigh.set(s, nb.ip, nb.mac);
        g.static_keys.insert(neighbor_key(s, nb.ip));
      }
    }
  }
}

}  // namespace

// ---- Gateway ----

Result<std::unique_ptr<Gateway>> Gateway::create(const GatewayConfig& cfg) {
  if (auto r = check_config(cfg); !r) return make_error(r.error());

  std::unique_ptr<Gateway> gw(new Gateway());
  gw->impl_ = std::make_unique<GatewayImpl>();
  GatewayImpl& g = *gw->impl_;
  g.cfg = cfg;
  g.workers = rte_lcore_count() - 1;
  g.hz = rte_get_tsc_hz();
  const unsigned inst = g_instance.fetch_add(1);
  const int socket = static_cast<int>(rte_socket_id());

  auto desc_total = plan_queues(g);
  if (!desc_total) return make_error(desc_total.error());
  if (auto r = create_mempools(g, inst, socket, desc_total.value()); !r)
    return make_error(r.error());
  if (auto r = setup_ports(g, inst, socket); !r) return make_error(r.error());
  if (auto r = create_sa_tables(g, socket); !r) return make_error(r.error());
  if (auto r = create_workers(g, inst, socket); !r) return make_error(r.error());
  if (auto r = create_reassembly(g, socket); !r) return make_error(r.error());
  load_static_neighbors(g);
  g.sender = std::make_unique<GatewaySender>(g);
  g.last_timer_tsc = g.last_snapshot_tsc = rte_rdtsc();
  g.icmp_refill_tsc = 0;  // the ICMP error bucket starts full
  if (cfg.telemetry) publish_telemetry(g);
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
  for (auto& wc : g.worker_ctxs) {
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
    for (auto& wc : g.worker_ctxs) rte_eal_wait_lcore(wc->lcore);
    g.running = false;
  }
  for (PortState& p : g.ports) {
    if (!p.started) continue;
    p.final_counters = read_port_counters(p.cfg.port_id);
    rte_eth_dev_stop(p.cfg.port_id);
    p.started = false;
  }
  g.refresh_sa_snapshot();
}

}  // namespace ipsecgw::dp
