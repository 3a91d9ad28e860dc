// A replica's own activity over the last five minutes, for the console:
//
//  - CompletionCountingStore counts the events this replica's Complete calls
//    removed from the queue (sluice_completed_events_total): the processing
//    rate.
//  - ReplicaActivity samples that, the accepted-event counter of ingest and
//    each consumer's delivery/failure counters into 5-second buckets, and
//    renders the JSON the replica publishes with its heartbeat
//    (Store::PublishReplicaStats). The console sums the replicas' documents:
//    fleet rates without any shared counter in the store.
//
// Published document (ParseReplicaStats reads it back):
//   {"v":1,"loops":2,"busy":1,"bucket_ms":5000,"end_ms":T,
//    "ingested":[n,...],"processed":[n,...],          // oldest first; the last bucket ends at T
//    "consumers":[{"name":..,"bit":2,"in_store":false,
//                  "delivered":n,"failed":n,          // over the window
//                  "retry_after_ms":n}]}              // the receiver asked us to wait this long
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "queue/store_wrapper.h"

namespace sluice {

inline constexpr int64_t kActivityBucketMs = 5000;
inline constexpr int kActivityBuckets = 60;  // 5 minutes

// A consumer as the console shows it.
struct ConsumerSpec {
  std::string name;
  uint64_t bit = 0;  // the done_mask bit (one bit set)
  bool in_store = false;
};

class CompletionCountingStore final : public StoreWrapper {
 public:
  CompletionCountingStore(StorePtr inner, Metrics* metrics);
  Result<CompleteResult> Complete(const CompleteRequest& req) override;

 private:
  Counter* const completed_;
};

// This replica's consumer, with what only the running object knows.
struct LocalConsumer {
  ConsumerSpec spec;
  std::function<int64_t()> retry_after_ms;  // may be empty
};

struct ConsumerActivity {
  ConsumerSpec spec;
  int64_t delivered = 0;  // events handed over within the window
  int64_t failed = 0;     // events it failed within the window
  int64_t retry_after_ms = 0;
};

// One replica's published document, parsed.
struct ReplicaStats {
  int32_t loops = 0;
  int32_t busy = 0;  // claim loops processing a lease now
  int64_t bucket_ms = kActivityBucketMs;
  int64_t end_ms = 0;  // end of the newest complete bucket (wall clock of the replica)
  std::vector<int64_t> ingested;   // events per bucket, oldest first
  std::vector<int64_t> processed;  // events per bucket, oldest first
  std::vector<ConsumerActivity> consumers;
};

class ReplicaActivity {
 public:
  // REQUIRES: metrics outlives this. `loops`: the watcher's claim loops.
  ReplicaActivity(Metrics* metrics, std::vector<LocalConsumer> consumers, int32_t loops);

  ReplicaActivity(const ReplicaActivity&) = delete;
  ReplicaActivity& operator=(const ReplicaActivity&) = delete;

  // Reads the counters and adds what changed since the last call to the
  // bucket of `now_ms` (wall clock). Call every few seconds.
  void Sample(int64_t now_ms);
  // The document to publish (see above); buckets end at the start of the
  // bucket of `now_ms` (only complete ones).
  ReplicaStats Snapshot(int64_t now_ms) const;
  std::string StatsJson(int64_t now_ms) const;

  std::vector<ConsumerSpec> consumer_specs() const;

 private:
  struct Totals {
    int64_t ingested = 0;
    int64_t processed = 0;
    std::vector<int64_t> delivered;  // by consumer
    std::vector<int64_t> failed;
  };
  Totals ReadTotals() const;
  // The ring slot of bucket `index` (= time / kActivityBucketMs), cleared when
  // it last held an older bucket.
  size_t SlotLocked(int64_t index);

  // Constant after construction.
  const std::vector<LocalConsumer> consumers_;
  const int32_t loops_;
  Counter* ingested_;
  Counter* processed_;
  Gauge* in_flight_;
  std::vector<Counter*> delivered_;
  std::vector<Counter*> failed_;

  mutable std::mutex mu_;
  std::optional<Totals> last_;  // GUARDED_BY(mu_)
  struct Bucket {
    int64_t index = -1;  // which 5 s bucket this slot holds
    int64_t ingested = 0;
    int64_t processed = 0;
    std::vector<int64_t> delivered;
    std::vector<int64_t> failed;
  };
  std::vector<Bucket> ring_;  // GUARDED_BY(mu_), kActivityBuckets + 1 slots
};

std::string RenderReplicaStats(const ReplicaStats& stats);
// nullopt when `json` is not such a document (an older or foreign replica).
std::optional<ReplicaStats> ParseReplicaStats(std::string_view json);

}  // namespace sluice
