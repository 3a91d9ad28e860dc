// UsersConsumer: the in-store per-user profile consumer (DESIGN §4 `users`).
//
// BuildEffects groups a batch by (project, distinct_id) into UserDeltas:
// first/last seen (event time), event count, count per event name, `$set`
// merged in event order (later wins; order = event time, then seq) and
// `$set_once` merged keeping the earliest value. The store applies the deltas
// inside the fenced transaction that sets this consumer's bit (exactly-once).
// Thread-safe (stateless apart from metrics).
#pragma once

#include <span>
#include <string>

#include "common/metrics.h"
#include "consumers/api/consumer.h"

namespace sluice {

class UsersConsumer final : public Consumer {
 public:
  // `unattributed` counts events that name no user (skipped); may be null.
  UsersConsumer(std::string name, uint64_t bit, Counter* unattributed = nullptr);

  bool in_store() const override { return true; }
  // Pure: appends one UserDelta per (project, user) of `events`, sorted by
  // (project, user_id). Rows whose body did not parse (validated at ingest,
  // so never expected; the watcher counts them) or that name no user are
  // skipped.
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;

 private:
  Counter* const unattributed_;
};

}  // namespace sluice
