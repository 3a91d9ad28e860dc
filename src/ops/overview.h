// Overview: everything the console shows, collected from the store in a few
// bounded reads (Store::ScanBacklog, ListReplicas) — the document of
// GET /admin/overview and of `sluice status` — plus the pure arithmetic
// behind it, unit-tested without a store.
//
// Per consumer C (bit b), from the head scan of the oldest `max_live` live
// events and the probes of the seqs behind them, grouped by done_mask:
//   backlog      events lacking b (pending or leased, not dead). Exact when the
//                scan saw every live event (or the probes every seq); else the
//                head's count plus, per probe that hit an event lacking b,
//                span / probes events (an estimate, "exact": false;
//                docs/operations.md, "The console at 10 million events").
//   oldest age   now - the oldest enqueued_at among events lacking b: exact
//                from the head scan; from the probes, within one stride of the
//                truth ("oldest_exact": false); unknown (-1) when neither saw one
//                but the probes could have missed a few.
//   waiting      events lacking b that back off (a retry later, Retry-After).
//   dead         dead events lacking b.
// Fleet figures (rates, failures, Retry-After) are the sums of what the alive
// replicas published (ops/activity.h).
// Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "ops/activity.h"
#include "queue/store.h"

namespace sluice {

struct OverviewOptions {
  int64_t alive_within_ms = 10000;   // heartbeat older than this: the replica is stale
  int64_t list_within_ms = 600000;   // stale replicas are listed this long; default 10 min
  int64_t delay_warning_ms = 60000;  // a consumer whose oldest event is older is "delayed"
  BacklogScanRequest scan;
};

struct ConsumerBacklog {
  ConsumerSpec spec;
  int64_t backlog = 0;
  bool exact = true;
  int64_t counted = 0;        // events lacking the bit among the scanned ones
  int64_t oldest_age_ms = 0;  // -1 = unknown (see above)
  bool oldest_exact = true;
  int64_t leased = 0;         // scanned events lacking the bit that are leased
  int64_t waiting = 0;        // scanned events lacking the bit that back off
  int64_t next_retry_in_ms = 0;  // the earliest of those becomes claimable; 0 = none
  int64_t dead = 0;
  bool dead_exact = true;
  // Fleet, last five minutes (published by the replicas).
  int64_t delivered = 0;
  int64_t failed = 0;
  int64_t retry_after_ms = 0;  // the longest wait a receiver asked of any replica
  bool delayed = false;        // oldest_age_ms > delay_warning_ms
};

struct ReplicaView {
  ReplicaInfo info;
  int64_t heartbeat_age_ms = 0;
  bool stale = false;
  bool has_stats = false;  // the replica published a document this build reads
  ReplicaStats stats;
};

struct QueueView {
  int64_t live = 0;  // pending + leased
  int64_t pending = 0;
  int64_t leased = 0;
  int64_t dead = 0;
  bool exact = true;       // live/pending exact (the scan saw every live event)
  bool dead_exact = true;  // dead exact
  int64_t oldest_pending_age_ms = 0;  // 0 when none pending among the scanned
  int64_t scanned = 0;
  int64_t scan_limit = 0;
  int64_t samples = 0;  // probes beyond the head scan (0: none needed)
};

struct Overview {
  std::string store_kind;
  int64_t now_ms = 0;  // store clock
  int64_t delay_warning_ms = 0;
  QueueView queue;
  std::vector<ReplicaView> replicas;  // alive first, by id
  std::vector<ConsumerBacklog> consumers;
  std::vector<JobStats> jobs;  // keyed jobs (Store::JobStatsByName), by name
  // Fleet rates: events per bucket, oldest first, the last bucket ending at
  // series_end_ms (alive replicas summed).
  int64_t bucket_ms = kActivityBucketMs;
  int64_t series_end_ms = 0;
  std::vector<int64_t> ingested;
  std::vector<int64_t> processed;
};

// The pure parts.
QueueView ComputeQueue(const BacklogScan& scan, int64_t scan_limit);
std::vector<ConsumerBacklog> ComputeBacklogs(const BacklogScan& scan,
                                             const std::vector<ConsumerSpec>& consumers,
                                             int64_t delay_warning_ms);
// Consumers of `local` first, then those only some replica published, by name.
std::vector<ConsumerSpec> MergeConsumers(const std::vector<ConsumerSpec>& local,
                                         const std::vector<ReplicaView>& replicas);
// Adds the alive replicas' published figures (rates, failures, Retry-After).
void AddFleetActivity(Overview* overview);

// Reads the store (ScanBacklog + ListReplicas) and computes everything.
// `local`: the consumers of the caller's config (may be empty).
Result<Overview> CollectOverview(Store* store, const std::vector<ConsumerSpec>& local,
                                 const OverviewOptions& options);

// The JSON of GET /admin/overview (docs/operations.md, "The console").
std::string RenderOverviewJson(const Overview& overview);
// `sluice status`: replicas, queue, consumers as text tables.
std::string RenderOverviewText(const Overview& overview);

}  // namespace sluice
