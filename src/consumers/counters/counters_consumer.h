// CountersConsumer: the in-store time-bucketed counters (DESIGN §4 `counters`).
//
// BuildEffects turns a batch into one CounterDelta per project x event name x
// granularity (minute, hour, day) x bucket of the event's own time, with the
// event count and the distinct users (user_id, else anonymous_id) seen in it.
// The store adds them inside the fenced transaction that sets this consumer's
// bit (exactly-once). Thread-safe (stateless apart from metrics).
#pragma once

#include <span>
#include <string>

#include "consumers/api/consumer.h"

namespace sluice {

class CountersConsumer final : public Consumer {
 public:
  CountersConsumer(std::string name, uint64_t bit);

  bool in_store() const override { return true; }
  // Pure: appends deltas sorted by (project, event, granularity, bucket); each
  // delta's `users` is sorted and deduplicated. Rows whose body did not parse
  // are skipped (the watcher counts them).
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;
};

}  // namespace sluice
