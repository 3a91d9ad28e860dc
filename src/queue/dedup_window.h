// The dedup window's bucket arithmetic, shared by both stores (which hold
// only its SQL and transactions).
//
// The window is a list of buckets, each a table of fixed-width key hashes.
// New keys go into the newest bucket (highest id); a key is a duplicate when
// any live bucket holds it. A bucket's entries were accepted in [its
// start_ms, its successor's start_ms), so a bucket may be dropped whole once
// its successor started at least `window` ago: every entry in it is then
// older than the window. Hence a key is refused for at least `window` after
// its first acceptance, and for at most window + width + 2 maintenance
// intervals (the rotation and the drop each run up to one interval late).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace sluice {

// Bounds of StoreOptions::dedup_buckets.
inline constexpr int32_t kMinDedupBuckets = 1;
inline constexpr int32_t kMaxDedupBuckets = 64;

struct DedupBucket {
  int64_t id = 0;        // ascending in creation order; the table is dedup_<id>
  int64_t start_ms = 0;  // store clock when it became the newest bucket
  bool operator==(const DedupBucket&) const = default;
};

// What the maintenance duty does now.
struct DedupPlan {
  bool create = false;        // a new newest bucket is due
  int64_t new_id = 0;         // when create: newest id + 1 (1 when there is none)
  std::vector<int64_t> drop;  // ids whose every entry is older than the window
};

// What one maintenance round did (Store::MaintainDedup).
struct DedupMaintenance {
  int64_t created = 0;  // buckets created (0 or 1)
  int64_t dropped = 0;  // buckets dropped
  int64_t live = 0;     // buckets after the round
};

// kInvalidArgument unless window_ms > 0 and buckets in [kMinDedupBuckets,
// kMaxDedupBuckets].
Status ValidateDedupWindow(int64_t window_ms, int32_t buckets);

// window_ms / buckets, at least 1 ms. REQUIRES: ValidateDedupWindow is ok.
int64_t DedupBucketWidthMs(int64_t window_ms, int32_t buckets);

// `live`: the registry, ascending id. A new bucket is due when there is none
// or now >= newest.start_ms + width; bucket i (never the newest) may be
// dropped when live[i+1].start_ms <= now - window. REQUIRES as above.
DedupPlan PlanDedupMaintenance(std::span<const DedupBucket> live, int64_t now_ms, int64_t window_ms,
                               int32_t buckets);

// "dedup_<id>": the table of bucket `id` in both stores.
std::string DedupTableName(int64_t id);

}  // namespace sluice
