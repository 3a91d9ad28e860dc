// DeliveryPool: the threads a watcher runs its external deliveries on. A
// thread is started when a task finds none idle, up to max_threads, and is
// kept for the next batches; when all max_threads are busy a task waits its
// turn (FIFO). The watcher sizes the pool so that it never has to wait
// (watcher.cc, "Delivery threads").
//
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice {

class DeliveryPool {
 public:
  // REQUIRES: max_threads >= 1.
  explicit DeliveryPool(size_t max_threads);
  ~DeliveryPool();  // Shutdown()

  DeliveryPool(const DeliveryPool&) = delete;
  DeliveryPool& operator=(const DeliveryPool&) = delete;

  // Runs `task` on a pool thread. REQUIRES: not after Shutdown().
  void Submit(std::function<void()> task);
  // Lets every queued and running task finish, then joins the threads.
  void Shutdown();

  // Threads started so far (for tests and logs).
  size_t threads() const;

 private:
  void Main();

  // Constant after construction.
  const size_t max_threads_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // GUARDED_BY(mu_)
  size_t idle_ = 0;                          // GUARDED_BY(mu_) threads waiting for a task
  bool stop_ = false;                        // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;         // GUARDED_BY(mu_)
};

}  // namespace sluice
