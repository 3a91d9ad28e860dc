#include "queue/dedup_window.h"

#include <algorithm>

#include "fmt/format.h"

namespace sluice {

Status ValidateDedupWindow(int64_t window_ms, int32_t buckets) {
  if (window_ms <= 0) return Status::InvalidArgument("dedup_window must be > 0");
  if (buckets < kMinDedupBuckets || buckets > kMaxDedupBuckets) {
    return Status::InvalidArgument(fmt::format("dedup_buckets must be in [{}, {}], got {}",
                                               kMinDedupBuckets, kMaxDedupBuckets, buckets));
  }
  return Status::Ok();
}

int64_t DedupBucketWidthMs(int64_t window_ms, int32_t buckets) {
  return std::max<int64_t>(1, window_ms / buckets);
}

DedupPlan PlanDedupMaintenance(std::span<const DedupBucket> live, int64_t now_ms, int64_t window_ms,
                               int32_t buckets) {
  DedupPlan plan;
  if (live.empty()) {
    plan.create = true;
    plan.new_id = 1;
    return plan;
  }
  const DedupBucket& newest = live.back();
  if (now_ms >= newest.start_ms + DedupBucketWidthMs(window_ms, buckets)) {
    plan.create = true;
    plan.new_id = newest.id + 1;
  }
  // A bucket's own start says nothing about its youngest entry: entries keep
  // arriving until its successor starts. So the successor's start decides.
  for (size_t i = 0; i + 1 < live.size(); ++i) {
    if (live[i + 1].start_ms <= now_ms - window_ms) plan.drop.push_back(live[i].id);
  }
  return plan;
}

std::string DedupTableName(int64_t id) { return fmt::format("dedup_{}", id); }

}  // namespace sluice
