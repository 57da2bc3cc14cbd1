// Rcu: the workers' side of the SA tables' reclamation, a thin wrapper over rte_rcu_qsbr
// (DPDK lib/rcu, quiescent-state based). Workers register once, go online, report a quiescent
// state once per poll-loop iteration (or every N) and go offline before they sleep or block.
// The control thread (DpSaInstaller) takes tokens and checks them; see dataplane/reclaimer.hpp.
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <string>

#include "dataplane/sa_table.hpp"

namespace ipsecgw::dp {

Result<std::unique_ptr<Rcu>> Rcu::create(unsigned max_threads) {
  if (max_threads == 0) return make_error("rcu: max_threads must be at least 1");
  const std::size_t sz = rte_rcu_qsbr_get_memsize(max_threads);
  if (sz == 0 || sz == static_cast<std::size_t>(-1))
    return make_error("rcu: invalid max_threads " + std::to_string(max_threads));
  auto* v = static_cast<rte_rcu_qsbr*>(rte_zmalloc("ipsecgw_rcu", sz, RTE_CACHE_LINE_SIZE));
  if (v == nullptr) return make_error("rcu: out of memory for the QSBR variable");
  if (rte_rcu_qsbr_init(v, max_threads) != 0) {
    rte_free(v);
    return make_error(std::string("rcu: rte_rcu_qsbr_init failed: ") + rte_strerror(rte_errno));
  }
  std::unique_ptr<Rcu> r(new Rcu());
  r->v_ = v;
  return r;
}

Rcu::~Rcu() { rte_free(v_); }

void Rcu::register_thread(unsigned tid) noexcept { rte_rcu_qsbr_thread_register(v_, tid); }
void Rcu::unregister_thread(unsigned tid) noexcept { rte_rcu_qsbr_thread_unregister(v_, tid); }
void Rcu::online(unsigned tid) noexcept { rte_rcu_qsbr_thread_online(v_, tid); }
void Rcu::offline(unsigned tid) noexcept { rte_rcu_qsbr_thread_offline(v_, tid); }
void Rcu::quiescent(unsigned tid) noexcept { rte_rcu_qsbr_quiescent(v_, tid); }

}  // namespace ipsecgw::dp
