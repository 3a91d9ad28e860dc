// `sluice bench claim|process`: drivers that talk to a Store directly.
//
//  - Preload: enqueues N synthetic events through Store::Enqueue (the path a
//    group commit takes), so the queue can be filled without HTTP.
//  - Claim: at a given queue depth, repeated 500-event claims (each followed by
//    a Complete that deletes the rows), with latency percentiles of both.
//  - Process: R in-process replicas (each its own Store connection pool and
//    Watcher, as `sluice serve` builds them) drain a pre-loaded queue, or run
//    for a fixed time; events/s and duplicate dispatches (events handed to a
//    consumer more than once, counted by wrapping every consumer).
// Thread-compatible: one run at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/status.h"
#include "consumers/registry/registry.h"
#include "queue/store.h"

namespace sluice {

struct PreloadOptions {
  int64_t events = 0;         // events to enqueue; 0 = none
  int32_t batch = 5000;       // events per Enqueue call (one transaction), >= 1
  int32_t threads = 2;        // concurrent Enqueue callers, >= 1
  int32_t event_bytes = 300;  // approximate native size of one event
  int64_t users = 10000;      // distinct users
  std::string project = "default";
};

struct PreloadResult {
  int64_t accepted = 0;
  int64_t duplicates = 0;
  double seconds = 0;
  double events_per_s = 0;
};

Result<PreloadResult> Preload(Store* store, const PreloadOptions& options);

// How a driver opens its store(s). Default: OpenStore. The test binary
// passes its broken variants (sluice-testkit bench ... --test-only K=V).
using BenchStoreOpener = std::function<Result<StorePtr>(const StoreOptions&)>;

// What the claim and process drivers may do to the store they are given.
struct BenchStoreAccess {
  BenchStoreOpener open;  // null = OpenStore
  // The drivers claim and delete whatever the store holds. false (default):
  // a store that holds events before the preload is refused; true: they are
  // used (--use-existing-events), e.g. a queue filled by an earlier run.
  bool use_existing_events = false;
  std::string claim_label = "atomic";  // what the store's claim is, for the report
};

struct ClaimBenchOptions {
  StoreOptions store;
  BenchStoreAccess access;
  PreloadOptions preload;
  int32_t claims = 200;  // claim+complete rounds; 0 = only preload
  int32_t batch = 500;   // events per claim
  int64_t lease_ttl_ms = 30000;
  bool complete = true;  // delete each claimed batch (else rows stay leased)
};

struct ClaimBenchResult {
  PreloadResult preload;
  int64_t pending_before = 0;  // queue depth when the claims started
  int64_t claimed = 0;         // events claimed over all rounds
  int32_t rounds = 0;
  LatencySummary claim;        // Store::Claim latency
  LatencySummary complete;     // Store::Complete latency
  LatencySummary claim_first;  // claims of the first 10% of rounds
  LatencySummary claim_last;   // claims of the last 10% of rounds

  std::string ToJson(const ClaimBenchOptions& o) const;
  std::string ToText(const ClaimBenchOptions& o) const;
};

Result<ClaimBenchResult> RunClaimBench(const ClaimBenchOptions& options);

struct ProcessBenchOptions {
  StoreOptions store;
  BenchStoreAccess access;
  std::span<const ConsumerType> consumer_types;  // besides the built-in ones
  PreloadOptions preload;
  // Consumer types ("users", "counters", any of consumer_types, "sink" = the
  // bench's own external no-op that sleeps sleep_ms per batch; "test" falls
  // back to it where no such type is registered).
  std::vector<std::string> consumers = {"users", "counters"};
  std::map<std::string, std::string> consumer_options;  // passed to every consumer
  int32_t replicas = 1;  // in-process replicas, each its own Store + Watcher
  int32_t loops = 2;     // claim loops per replica
  int32_t batch = 500;   // events per claim
  int64_t lease_ttl_ms = 30000;
  double duration_s = 0;   // > 0: run this long then drain; 0: until the queue is empty
  double timeout_s = 600;  // give up draining after this long
};

struct ProcessBenchResult {
  PreloadResult preload;
  int64_t pending_before = 0;
  int64_t completed = 0;             // events deleted by Complete (every consumer done)
  double seconds = 0;                // watchers started -> last completion (or duration)
  double events_per_s = 0;           // completed / seconds
  double cpu_s = 0;                  // CPU of this process (all replicas) over `seconds`
  int64_t deliveries = 0;            // events handed to consumers, max over consumers
  int64_t duplicate_dispatches = 0;  // deliveries - completed (after the drain)
  int64_t claims = 0;                // non-empty claims
  int64_t lease_lost = 0;            // fenced calls refused with kLeaseLost
  int64_t pending_after = 0;
  int64_t dead_after = 0;
  bool timed_out = false;
  std::string consumer_note;  // e.g. a fallback taken
  LatencySummary claim;       // Store::Claim latency of non-empty claims
  LatencySummary complete;    // Store::Complete latency

  std::string ToJson(const ProcessBenchOptions& o) const;
  std::string ToText(const ProcessBenchOptions& o) const;
};

Result<ProcessBenchResult> RunProcessBench(const ProcessBenchOptions& options);

}  // namespace sluice
