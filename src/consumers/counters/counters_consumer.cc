#include "consumers/counters/counters_consumer.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice {

CountersConsumer::CountersConsumer(std::string name, uint64_t bit)
    : Consumer(std::move(name), bit) {}

void CountersConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects* out) const {
  using Key = std::tuple<std::string, std::string, int, int64_t>;
  std::map<Key, CounterDelta> buckets;
  for (const DecodedEvent& decoded : events) {
    // Validated at ingest; skip rather than block the batch (the watcher
    // counted it).
    if (decoded.event == nullptr) continue;
    const ClaimedEvent* row = decoded.row;
    const Event& e = *decoded.event;
    const std::string& user = e.distinct_id();
    for (Granularity g : kAllGranularities) {
      const int64_t bucket = BucketStartMs(g, e.time_ms);
      auto [it, inserted] =
          buckets.try_emplace(Key{row->project, e.event, static_cast<int>(g), bucket});
      CounterDelta& d = it->second;
      if (inserted) {
        d.project = row->project;
        d.event = e.event;
        d.granularity = g;
        d.bucket_ms = bucket;
      }
      ++d.count;
      if (!user.empty()) d.users.push_back(user);
    }
  }
  out->counters.reserve(out->counters.size() + buckets.size());
  for (auto& [key, d] : buckets) {
    std::sort(d.users.begin(), d.users.end());
    d.users.erase(std::unique(d.users.begin(), d.users.end()), d.users.end());
    out->counters.push_back(std::move(d));
  }
}

}  // namespace sluice
