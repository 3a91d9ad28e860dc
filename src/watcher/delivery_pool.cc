#include "watcher/delivery_pool.h"

#include <algorithm>
#include <utility>

namespace sluice {

DeliveryPool::DeliveryPool(size_t max_threads) : max_threads_(std::max<size_t>(1, max_threads)) {}

DeliveryPool::~DeliveryPool() { Shutdown(); }

void DeliveryPool::Submit(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(task));
  // Each idle thread takes one queued task when it wakes; start a thread for
  // every task beyond them, up to the bound.
  if (queue_.size() > idle_ && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Main(); });
  } else {
    cv_.notify_one();
  }
}

void DeliveryPool::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
}

size_t DeliveryPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

void DeliveryPool::Main() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    while (queue_.empty() && !stop_) {
      ++idle_;
      cv_.wait(lock);
      --idle_;
    }
    // Queued tasks still run after Shutdown: each one's owner waits for it.
    if (queue_.empty()) return;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    task = nullptr;  // release what the task holds before waiting again
    lock.lock();
  }
}

}  // namespace sluice
