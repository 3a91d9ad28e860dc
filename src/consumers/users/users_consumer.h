// UsersConsumer: the in-store per-person profile consumer (DESIGN §4 `users`,
// docs/users.md).
//
// BuildEffects folds a batch into one IdDelta per (project, distinct id)
// with profile::AddEvent: counts, first/last seen (event time), each
// property's registers keyed by (event time, insert_id), identity flags and
// links. The deltas are mergeable state, so the order of the events inside
// the batch, and of the batches, does not matter; the store merges them
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
  // Pure: appends one IdDelta per (project, id) that `events` touch (the
  // event's own id, and the ids its links name), sorted by (project, id).
  // Rows whose body did not parse (validated at ingest, so never expected;
  // the watcher counts them) or that name no user are skipped.
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;

 private:
  Counter* const unattributed_;
};

}  // namespace sluice
