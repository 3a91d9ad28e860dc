// A store-level replica for multi-process tests on PostgreSQL: W claim loops
// that claim batches, hand them to the real `users` and `counters` consumers
// (their effects, built as the watcher does) and Complete them, plus an optional ingester,
// all through the Store API. Each replica runs in its own forked process and
// logs every event it dispatched, so the parent can count duplicate
// dispatches and check the aggregates against exact expectations.
//
// Thread-compatible (RunPgReplica owns its threads).
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "queue/store.h"

namespace sluice::testing {

struct PgReplicaOptions {
  std::string url;                // store URL
  std::string id;                 // replica id; loop owners are "<id>/<loop>"
  bool naive_claim = false;       // the test kit's two-step claim (the checker's control)
  int loops = 2;                  // claim loops (threads)
  int32_t batch = 500;            // events per claim
  int64_t lease_ttl_ms = 30000;
  int32_t pool_size = 4;
  int64_t busy_timeout_ms = 10000;
  std::string dispatch_log;       // file: one line "<insert_id>" per dispatched event
  std::string stop_file;          // exit once this file exists and a claim comes back empty
  // Ingest (optional): this replica also enqueues `ingest_events` generated
  // events (GeneratedEvents(id, ...)) in batches of `ingest_batch`, retrying
  // each batch until it is acknowledged; writes `ingest_done_file` after.
  int64_t ingest_events = 0;
  int32_t ingest_batch = 100;
  int ingest_users = 500;
  int ingest_names = 4;
  int64_t ingest_start_ms = 0;
  int64_t ingest_span_ms = 3 * 3600 * 1000;
  int ingest_duplicate_every = 20;  // 5% duplicate submissions
  std::string ingest_done_file;
};

// Runs the replica until the stop file appears. Returns 0 on a clean exit.
int RunPgReplica(const PgReplicaOptions& options);

// Forks a child that runs RunPgReplica and _exits with its result. Call it
// before the parent process starts any thread. Returns the child's pid.
int ForkPgReplica(const PgReplicaOptions& options);
// Waits for `pid`; returns its exit status (or -1).
int WaitPid(int pid);

// Deterministic test events: `n` events of stream `stream`, with
// `duplicate_every`-th event (when > 0) re-using the insert_id (and body) of
// an earlier event of the stream. Users "u<k>" (k < users), event names
// "e<k>" (k < names), times rising evenly over `span_ms` from `start_ms`.
std::vector<NewEvent> GeneratedEvents(const std::string& stream, int64_t n, int users,
                                      int names, int64_t start_ms, int64_t span_ms,
                                      int duplicate_every);

// Exact aggregates the `users` and `counters` consumers must produce for the
// distinct (by insert_id) events of `events`.
struct ExpectedAggregates {
  int64_t distinct = 0;
  // (event, hour bucket ms) -> (count, distinct users)
  std::vector<std::tuple<std::string, int64_t, int64_t, int64_t>> hourly;
  // user -> events
  std::vector<std::pair<std::string, int64_t>> users;
};
ExpectedAggregates Expect(const std::vector<NewEvent>& events);

// Compares the store's aggregates with `expected` (project "default");
// returns "" when equal, else the first difference.
std::string CheckAggregates(Store& store, const ExpectedAggregates& expected, int names);

// Reads the dispatch logs: total lines and the number of insert_ids that
// appear more than once.
struct DispatchCount {
  int64_t total = 0;
  int64_t duplicated = 0;
};
DispatchCount CountDispatches(const std::vector<std::string>& logs);

}  // namespace sluice::testing
