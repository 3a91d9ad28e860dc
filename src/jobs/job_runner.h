// JobRunner: a replica's job claim loops (docs/jobs.md). Each loop claims
// due runs (Store::ClaimJobRuns: atomic, fenced token, store-clock lease),
// POSTs each run to its job's handler, and records the answer with a fenced
// store call; a heartbeat extends the leases of the claims in flight.
//
//   loop: lease = ClaimJobRuns(owner, jobs, batch, ttl)
//         for each run: POST url {job, project, key, run, events_since_last_run,
//                                 first_event, last_event, profile}
//                       Idempotency-Key: JobIdempotencyKey(job, project, key, run)
//           2xx -> CompleteJobRun          (fenced; kLeaseLost: someone else's now)
//           else -> FailJobRun(backoff, Retry-After as its floor)  (retry or dead)
//
// A run whose lease was lost is not answered at all: a late success changes
// nothing (the fence refuses it), and whoever holds the run now runs it.
//
// Metrics: sluice_job_runs_total{job,result} (ok | retry | dead | fenced),
// sluice_job_coalesced_events_total{job} (events of completed runs beyond
// the first), sluice_job_run_seconds{job}, sluice_job_lag_ms{job} (age
// of the oldest due run, store clock), sluice_job_due{job},
// sluice_job_dead_runs{job}, sluice_job_claim_errors_total.
//
// Time: waits, intervals and deadlines run on the injected Clock; leases on
// the store's. Thread-safe. Start() spawns the loops; Drain() stops
// claiming, lets the runs of the claims in flight finish until the drain
// deadline (later runs are left to their lease's expiry) and joins.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "http_client/http_client.h"
#include "jobs/job_options.h"
#include "queue/store.h"

namespace sluice {

// The Idempotency-Key of run `run` of (job, project, key): "job-" + 32 hex
// digits of SHA-256 over the four, NUL-separated. The same on every retry of
// the run, on every replica, in every build.
std::string JobIdempotencyKey(const JobRef& ref, int64_t run);

// The POST body of `run`; `profile_json` is the key's profile object, or ""
// (sent as null) when the job is not keyed by user or the user is unknown.
std::string JobRequestBody(const ClaimedRun& run, const std::string& profile_json);

// A user profile (Store::GetUser) as a JSON object.
std::string ProfileJson(const UserProfile& p);

class JobRunner {
 public:
  // REQUIRES: store, metrics and clock outlive the runner; jobs validated.
  JobRunner(Store* store, std::vector<JobOptions> jobs, JobRunnerOptions options,
            std::string replica_id, Metrics* metrics, Clock* clock = &Clock::Real());
  ~JobRunner();  // Drains if still running.

  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  void Start();
  void Drain();

 private:
  struct Job {
    JobOptions options;
    std::unique_ptr<HttpClient> client;
    Counter* ok = nullptr;
    Counter* retry = nullptr;
    Counter* dead = nullptr;
    Counter* fenced = nullptr;
    Counter* coalesced = nullptr;
    Histogram* seconds = nullptr;
  };

  void LoopMain(int index);
  void HeartbeatMain();
  void StatsMain();
  // Runs one claimed run to its recorded outcome. False when the lease was
  // lost (the claim's other runs are skipped).
  bool RunOne(int64_t token, const ClaimedRun& run);
  // Sleeps up to ms; false when stopping.
  bool Wait(int64_t ms);
  bool DrainDeadlinePassed();

  // Constant after construction.
  Store* const store_;
  const JobRunnerOptions options_;
  const std::string replica_id_;
  Metrics* const metrics_;
  Clock* const clock_;
  std::vector<std::string> names_;
  std::map<std::string, Job> jobs_;  // by name; constant after construction
  Counter* claim_errors_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;         // GUARDED_BY(mu_)
  int64_t drain_deadline_ = 0;    // GUARDED_BY(mu_) mono ms; 0 = not draining
  std::map<int64_t, int> in_flight_;  // GUARDED_BY(mu_) token -> claims in flight
  std::map<int64_t, bool> lost_;      // GUARDED_BY(mu_) token -> lease lost (heartbeat)
  std::vector<std::thread> threads_;
  bool started_ = false;
};

}  // namespace sluice
