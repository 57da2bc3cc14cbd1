// Requests from the HTTP threads to the control thread. HTTP handler threads never touch the
// model: they post a closure and wait on its future; the control loop calls drain() (through
// ApiServer::poll()) once per iteration and runs the closures, in order, on its own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

namespace ipsecgw::api {

class RequestQueue {
 public:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

  // Runs every queued closure on the calling thread; returns how many ran. The lock is held
  // only to take the batch, never while a closure runs.
  std::size_t drain() {
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(q_);
    }
    for (auto& fn : batch) fn();
    return batch.size();
  }

  // For a control loop with nothing else to do: sleeps until a request is queued or `d` passed.
  bool wait_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, d, [&] { return !q_.empty(); });
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return q_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
};

}  // namespace ipsecgw::api
