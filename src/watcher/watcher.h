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
// Each claimed body is decoded once (ParseBody) and every filter and consumer
// reads the same decoded events. In-store consumers' effects are built here,
// outside any store transaction, for the masks seen at claim, and handed to
// Complete as data; a stale answer (the masks changed) makes the watcher
// rebuild them from the current masks and retry.
//
// Failure isolation: a failing consumer fails only itself (the others' bits
// stay set, the retry reaches it alone); the effects of in-store consumers
// always go into the Complete transaction. A kLeaseLost answer (the lease
// expired and may be someone else's) stops work on that lease without failing
// it. External deliveries run on a small pool of threads per watcher; a call
// that ignores its deadline is abandoned (its late result is ignored).
//
// Time: every wait, sleep, deadline and interval runs on the injected Clock
// (lease expiry is the store's clock). Durations reported to histograms are
// measured with the real steady clock.
//
// Metrics: sluice_claims_total, sluice_claims_empty_total,
// sluice_claim_errors_total, sluice_claim_seconds, sluice_claimed_events_total,
// sluice_lease_reclaims_total, sluice_deliveries_total{consumer} (events handed
// to each consumer; in-store: events lacking its bit in the Complete request),
// sluice_failures_total{consumer} (events), sluice_fenced_total (leases),
// sluice_dead_events_total, sluice_batch_seconds, sluice_watcher_in_flight,
// sluice_watcher_store_errors_total, sluice_bad_bodies_total (claimed bodies
// that did not parse), sluice_stale_effects_total (Complete answers that
// made the watcher rebuild in-store effects).
//
// Thread-safe. Start() spawns the loops; Drain() stops claiming, lets in-flight
// batches finish (or fails them at the drain deadline) and joins.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "queue/store.h"
#include "watcher/delivery_pool.h"

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
  // Per delivery; 0 = lease_ttl / 2. A call still running this + 1 s after
  // it started is abandoned: the batch is failed, the late result ignored.
  int64_t consumer_timeout_ms = 0;
  int64_t drain_timeout_ms = 20000;  // SIGTERM: in-flight batches get this long
  int64_t replica_heartbeat_ms = 2000;
  int64_t dedup_prune_interval_ms = 60000;
};

class Watcher {
 public:
  // REQUIRES: store, metrics and clock outlive the watcher; consumers have
  // distinct bits.
  Watcher(Store* store, std::vector<ConsumerPtr> consumers, WatcherOptions options,
          std::string replica_id, Metrics* metrics, Clock* clock = &Clock::Real());
  ~Watcher();  // Drains if still running.

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void Start();
  // Wakes idle loops at once (called after an in-process enqueue commits).
  void Wake();
  // Stop claiming; finish in-flight batches until the drain deadline, then
  // fail what is left (it is retried elsewhere at once). Joins all threads,
  // including delivery threads still inside an abandoned consumer call.
  void Drain();

  uint64_t all_bits() const { return all_bits_; }
  // Delivery threads started so far (tests, logs).
  size_t delivery_threads() const { return pool_->threads(); }

 private:
  struct Batch;     // one claimed lease, decoded once; shared with its deliveries
  struct InFlight;  // one lease being processed; shared with the heartbeat
  struct Job;       // one external consumer's delivery of one batch
  // A consumer that failed some rows of a batch: the error goes to Fail.
  struct Failure {
    size_t consumer = 0;
    std::vector<int64_t> seqs;  // ascending
    Status error;
  };
  // How the wait for a batch's deliveries ended, and what it left.
  struct Settled {
    bool drain_cut = false;         // the drain deadline passed
    uint64_t deferred_bits = 0;     // succeeded, their MarkDone left to Complete
    std::vector<Failure> failures;  // by consumer index
  };

  void LoopMain(int loop_index);
  void HeartbeatMain();
  // Sleeps up to `ms` on wake_cv_; returns early when stopping or, if
  // `wakeable`, when Wake() was called since `seen`. True when woken by Wake().
  bool WaitIdle(int64_t ms, uint64_t seen, bool wakeable);

  // Processes one claimed lease to completion or failure.
  void ProcessLease(const std::string& owner, Lease lease);
  // Decodes every body once; counts the ones that do not parse.
  std::shared_ptr<const Batch> Decode(Lease lease);
  // One job per external consumer with events lacking its bit, submitted to
  // the pool. Sets flight->pending.
  std::vector<std::shared_ptr<Job>> StartDeliveries(const std::shared_ptr<const Batch>& batch,
                                                    const std::shared_ptr<InFlight>& flight,
                                                    int64_t deadline);
  // The body of one job, on a pool thread: wait for a slot (AwaitSlot),
  // Deliver (isolating poison events in a retried batch), MarkDone or defer
  // the bit, record the verdict.
  void RunJob(Job& job);
  // Waits until the job's consumer has fewer than max_abandoned_ abandoned
  // calls. False (with their number in *stuck) when the job's deadline passed
  // or it was cancelled first.
  bool AwaitSlot(const Job& job, int* stuck);
  // Waits until every job finished, the lease was lost, the delivery deadline
  // (+ grace) or the drain deadline passed; gives up on the unfinished jobs
  // and collects the verdicts. Meaningless when flight.lost.
  Settled AwaitDeliveries(InFlight& flight, const std::vector<std::shared_ptr<Job>>& jobs,
                          int64_t deadline);
  // True when some event of a failing delivery was claimed before.
  static bool IsRetriedBatch(std::span<const DecodedEvent> events);
  // Splits a failing batch to isolate poison events (see watcher.cc). Returns
  // Ok when every event was delivered; otherwise the events still failing are
  // in `still_failing` (ascending seq) and the last error is returned.
  Status Isolate(Consumer& c, const Job& job, Status first_error,
                 std::vector<DecodedEvent>* still_failing);

  // Complete with the in-store effects (and `settled.deferred_bits`), then
  // Fail what remains. Returns after the store answered (or the lease was
  // found lost).
  void CompleteAndFail(InFlight* flight, const Batch& batch, Settled settled);
  // Each in-store consumer's effects for the rows of `events` lacking its
  // bit (in the masks of `events`). A consumer whose builder throws is left
  // out and reported in *failures.
  std::vector<InStoreEffects> BuildInStore(std::span<const DecodedEvent> events,
                                           std::vector<Failure>* failures);
  // Complete, rebuilding the in-store effects after a stale answer and
  // retrying kUnavailable a few times.
  Result<CompleteResult> CompleteInStore(InFlight* flight, const Batch& batch,
                                         uint64_t external_bits, std::vector<Failure>* failures);
  // Fails the `remaining` rows of a completed batch, grouped by the names of
  // the consumers that failed each.
  void FailRemaining(InFlight* flight, const Batch& batch, const std::vector<int64_t>& remaining,
                     const std::vector<Failure>& failures, bool drain_cut);

  // Constant after construction.
  Store* const store_;
  const std::vector<ConsumerPtr> consumers_;
  const WatcherOptions options_;
  const std::string replica_id_;
  Metrics* const metrics_;
  Clock* const clock_;
  uint64_t all_bits_ = 0;
  int64_t heartbeat_ms_ = 0;         // options or lease_ttl / 3
  int64_t consumer_timeout_ms_ = 0;  // options or lease_ttl / 2
  int max_abandoned_ = 1;            // abandoned calls per consumer before new ones wait
  Counter* claims_ = nullptr;
  Counter* empty_claims_ = nullptr;
  Counter* claim_errors_ = nullptr;
  Histogram* claim_seconds_ = nullptr;
  Counter* claimed_events_ = nullptr;
  Counter* reclaims_ = nullptr;
  Counter* fenced_ = nullptr;
  Counter* dead_ = nullptr;
  Counter* store_errors_ = nullptr;
  Counter* bad_bodies_ = nullptr;
  Counter* stale_ = nullptr;
  Histogram* batch_seconds_ = nullptr;
  Gauge* in_flight_gauge_ = nullptr;
  std::vector<Counter*> deliveries_;  // by consumer index
  std::vector<Counter*> failures_;    // by consumer index
  std::mutex slot_mu_;
  std::condition_variable slot_cv_;  // an abandoned call returned
  // Calls given up on but not returned yet, by consumer index.
  std::vector<int> abandoned_;  // GUARDED_BY(slot_mu_)

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
  std::unique_ptr<DeliveryPool> pool_;  // external deliveries; created in the constructor
};

}  // namespace sluice
