// Watcher: a replica's claim loops. Each loop claims a batch (Store::Claim),
// hands each consumer the events lacking its bit, records the results with
// fenced store calls, and completes or fails the batch. The watcher only
// orchestrates; the protocol's guarantees live in the Store.
//
//   loop: lease = Claim(owner, batch, ttl)           // atomic, fenced token
//         external consumers, concurrently: Deliver -> MarkDone(bit)
//         Complete(in-store effects + bits + delete)  // one transaction
//         rows some consumer failed -> Fail(backoff | dead)
//   a heartbeat extends in-flight leases every heartbeat_ms.
//
// Thread-safe. Start() spawns the loops; Drain() stops claiming, lets in-flight
// batches finish (or fails them at the drain deadline) and joins.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "config/config.h"
#include "consumers/consumer.h"
#include "queue/store.h"

namespace sluice {

class Watcher {
 public:
  // REQUIRES: store, metrics outlive the watcher; consumers have distinct bits.
  Watcher(Store* store, std::vector<ConsumerPtr> consumers, WatcherOptions options,
          std::string replica_id, Metrics* metrics);
  ~Watcher();  // Drains if still running.

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void Start();
  // Wakes idle loops at once (called after an in-process enqueue commits).
  void Wake();
  // Stop claiming; finish in-flight batches until the drain deadline, then
  // fail what is left (it is retried elsewhere at once). Joins all threads.
  void Drain();

  uint64_t all_bits() const { return all_bits_; }

 private:
  void LoopMain(int loop_index);
  void HeartbeatMain();
  // Processes one claimed lease to completion or failure.
  void ProcessLease(const std::string& owner, Lease lease);

  // Constant after construction.
  Store* const store_;
  const std::vector<ConsumerPtr> consumers_;
  const WatcherOptions options_;
  const std::string replica_id_;
  Metrics* const metrics_;
  uint64_t all_bits_ = 0;

  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable wake_cv_;
  uint64_t wake_seq_ = 0;                 // GUARDED_BY(mu_)
  std::vector<int64_t> in_flight_tokens_;  // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace sluice
