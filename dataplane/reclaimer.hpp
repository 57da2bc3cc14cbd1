// Reclaimer: the control thread's deferred-free queue over rte_rcu_qsbr (private to
// dataplane/sa_table.cpp). Control thread only; never touched by workers.
//
// The writer unlinks an object (hash delete, atomic re-point, new SPD published) and hands the
// free action to defer(). reclaim(), called once per control-loop iteration, closes the batch
// of everything deferred since the previous call with ONE token (rte_rcu_qsbr_start: the
// unlinks all happened before it), then runs the actions of every batch whose token all
// online workers have passed (rte_rcu_qsbr_check, non-blocking). Publish new, one token per
// batch, free old: never one synchronize per object (grout, DPDK lib/rcu).
#pragma once

#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

namespace ipsecgw::dp {

class Reclaimer {
 public:
  using Action = std::function<void()>;

  explicit Reclaimer(rte_rcu_qsbr* v) noexcept : v_(v) {}
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  // Free `a` once every worker online now has gone through a quiescent state.
  void defer(Action a) { open_.push_back(std::move(a)); }

  // Non-blocking: runs what past grace periods allow; returns how many actions ran.
  unsigned reclaim() noexcept { return run(false); }
  // Blocking: waits for every worker online to pass a quiescent state, then runs everything.
  unsigned drain() noexcept { return run(true); }

  std::size_t pending() const noexcept {
    std::size_t n = open_.size();
    for (const auto& b : batches_) n += b.actions.size();
    return n;
  }

 private:
  struct Batch {
    std::uint64_t token;
    std::vector<Action> actions;
  };

  unsigned run(bool wait) noexcept {
    if (!open_.empty()) {
      // Every unlink in open_ happened before this token was taken.
      batches_.push_back(Batch{rte_rcu_qsbr_start(v_), std::move(open_)});
      open_.clear();
    }
    unsigned freed = 0;
    while (!batches_.empty()) {
      Batch& b = batches_.front();
      // Tokens increase, so once one batch has not passed, the later ones have not either.
      if (rte_rcu_qsbr_check(v_, b.token, wait) != 1) break;
      for (auto& a : b.actions) {
        a();
        ++freed;
      }
      batches_.pop_front();
    }
    return freed;
  }

  rte_rcu_qsbr* v_;
  std::vector<Action> open_;
  std::deque<Batch> batches_;
};

}  // namespace ipsecgw::dp
