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
// Failure isolation: a failing external consumer fails only itself (the
// others' bits stay set, the retry reaches it alone); in-store consumers always
// go into the Complete transaction. A kLeaseLost answer (the lease expired and
// may be someone else's) stops work on that lease without failing it.
//
// Metrics: sluice_claims_total, sluice_claims_empty_total,
// sluice_claim_errors_total, sluice_claim_seconds, sluice_claimed_events_total,
// sluice_lease_reclaims_total, sluice_deliveries_total{consumer} (events handed
// to each consumer; in-store: events lacking its bit in the Complete request),
// sluice_failures_total{consumer} (events), sluice_fenced_total (leases),
// sluice_dead_events_total, sluice_batch_seconds, sluice_watcher_in_flight,
// sluice_watcher_store_errors_total.
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
#include "consumers/api/consumer.h"
#include "queue/store.h"

namespace sluice {

struct WatcherOptions {
  // Claim loops per replica; default 2. 0: an ingest-only replica that never
  // claims (processing runs on other replicas).
  int32_t loops = 2;
  int32_t batch = 500;  // max events per claim
  int64_t lease_ttl_ms = 30000;
  int64_t heartbeat_ms = 0;  // 0 = lease_ttl / 3
  BackoffPolicy backoff;
  int64_t idle_poll_min_ms = 10;  // first idle wait; doubles up to max
  int64_t idle_poll_max_ms = 1000;
  int64_t consumer_timeout_ms = 0;   // per delivery; 0 = lease_ttl / 2
  int64_t drain_timeout_ms = 20000;  // SIGTERM: in-flight batches get this long
  int64_t replica_heartbeat_ms = 2000;
  int64_t dedup_prune_interval_ms = 60000;
};

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
  struct InFlight;  // one lease being processed; shared with the heartbeat
  struct Job;       // one external consumer's delivery of one lease

  void LoopMain(int loop_index);
  void HeartbeatMain();
  // Processes one claimed lease to completion or failure.
  void ProcessLease(const std::string& owner, Lease lease);
  // Complete with the in-store work, then Fail what remains. Returns after the
  // store answered (or the lease was found lost).
  // True when some event of a failing delivery was claimed before.
  static bool IsRetriedBatch(const std::vector<const ClaimedEvent*>& events);
  // Splits a failing batch to isolate poison events (see watcher.cc). Returns
  // Ok when every event was delivered; otherwise the events still failing are
  // in `still_failing` (ascending seq) and the last error is returned.
  Status Isolate(Consumer& c, const Job& job, const Lease& lease, InFlight* flight,
                 int64_t deadline, Status first_error,
                 std::vector<const ClaimedEvent*>* still_failing);
  // `external_bits`: bits of external consumers that succeeded and left
  // their MarkDone to this Complete (set in the same transaction).
  void CompleteAndFail(InFlight* flight, const Lease& lease, const std::vector<Job*>& failed,
                       uint64_t external_bits, bool drain_cut);
  // Sleeps up to `ms` on wake_cv_; returns early when stopping or, if
  // `wakeable`, when Wake() was called since `seen`. True when woken by Wake().
  bool WaitIdle(int64_t ms, uint64_t seen, bool wakeable);

  // Constant after construction.
  Store* const store_;
  const std::vector<ConsumerPtr> consumers_;
  const WatcherOptions options_;
  const std::string replica_id_;
  Metrics* const metrics_;
  uint64_t all_bits_ = 0;
  int64_t heartbeat_ms_ = 0;         // options or lease_ttl / 3
  int64_t consumer_timeout_ms_ = 0;  // options or lease_ttl / 2
  Counter* claims_ = nullptr;
  Counter* empty_claims_ = nullptr;
  Counter* claim_errors_ = nullptr;
  Histogram* claim_seconds_ = nullptr;
  Counter* claimed_events_ = nullptr;
  Counter* reclaims_ = nullptr;
  Counter* fenced_ = nullptr;
  Counter* dead_ = nullptr;
  Counter* store_errors_ = nullptr;
  Histogram* batch_seconds_ = nullptr;
  Gauge* in_flight_gauge_ = nullptr;
  std::vector<Counter*> deliveries_;  // by consumer index
  std::vector<Counter*> failures_;    // by consumer index

  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> drain_deadline_mono_ms_{0};  // 0 = not draining
  std::mutex mu_;
  std::condition_variable wake_cv_;
  std::condition_variable heartbeat_cv_;
  uint64_t wake_seq_ = 0;                             // GUARDED_BY(mu_)
  bool started_ = false;                              // GUARDED_BY(mu_)
  bool drained_ = false;                              // GUARDED_BY(mu_)
  bool heartbeat_stop_ = false;                       // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<InFlight>> in_flight_;  // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;                  // loops; touched by Start/Drain only
  std::thread heartbeat_;
};

}  // namespace sluice
