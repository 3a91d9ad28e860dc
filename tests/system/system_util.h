// Helpers shared by the system tests: a workload with an exact expected
// outcome, a parallel sender, and a reader of /admin/status (MetricSum, for
// /metrics, is in testing/testing.h).
// Thread-compatible.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {

// One generated event as sent, and what the aggregates must show.
struct WorkloadEvent {
  std::string insert_id;
  std::string event;
  std::string user;
  int64_t time_ms = 0;
};

struct Workload {
  std::vector<WorkloadEvent> unique;       // each stored exactly once
  std::vector<size_t> duplicate_of;        // indexes into `unique` sent a second time
  // Expected aggregates of `unique`.
  std::map<std::string, int64_t> user_events;                          // user -> events
  std::map<std::string, std::map<std::string, int64_t>> user_counts;   // user -> name -> n
  // (event name, hour bucket ms) -> count and distinct users.
  std::map<std::pair<std::string, int64_t>, int64_t> hour_counts;
  std::map<std::pair<std::string, int64_t>, std::set<std::string>> hour_users;
  int64_t min_time_ms = 0;
  int64_t max_time_ms = 0;
};

// `n` unique events over `users` users and `names` event names spread over a
// few hours, plus round(n * dup_frac) re-submissions of earlier insert_ids.
Workload MakeWorkload(int64_t n, int users, int names, double dup_frac, uint64_t seed);

// The body of POST /v1/events for `events`.
std::string EventsBody(const std::vector<const WorkloadEvent*>& events);

struct SendStats {
  int64_t accepted = 0;
  int64_t duplicates = 0;
  int64_t failed_requests = 0;  // non-200 after retries
};

// Sends every event of `w` (uniques, then the duplicates interleaved) in
// batches of `batch` over `threads` threads, round-robin over `urls`
// (base URLs). A batch not acknowledged (503, no answer) is sent again, the
// same insert_ids, for up to `retry_for_ms`; each batch is acknowledged before
// counting. `acked` (may be null) counts acknowledged events as they come.
// `events_per_second` > 0 paces the senders: after each acknowledged batch a
// thread waits its share, so a stall is not followed by a burst.
SendStats SendWorkload(const Workload& w, const std::vector<std::string>& urls, int batch,
                       int threads, int64_t retry_for_ms = 10000,
                       std::atomic<int64_t>* acked = nullptr, int64_t events_per_second = 0);

// pending + leased from GET /admin/status; -1 on error.
int64_t QueueBacklog(const std::string& base_url);

// Checks every user and every (event, hour) bucket of `w` against the read
// API of `base_url`; returns "" when exact, else the first mismatch.
std::string CheckAggregates(const Workload& w, const std::string& base_url);

// `n` replicas (not started) of `sluice serve` in `dir` sharing one config,
// `config_text` written to <dir>/sluice.toml: replica ids r0.., logs
// replica-<i>.log, the binary BinaryFor(config_text).
std::vector<std::unique_ptr<SluiceProcess>> MakeReplicas(const TempDir& dir, int n,
                                                         const std::string& config_text);

// A TOML config for a replica on `store_url` with extra TOML appended.
std::string ReplicaConfig(const std::string& store_url, const std::string& extra = "");

}  // namespace sluice::testing
