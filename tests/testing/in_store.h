// In-store effects for store tests: MarkDone/Complete take prebuilt effects
// (queue/store.h), so tests that exercise them build the effects the way the
// watcher does: for the request's rows lacking each bit in the masks the
// request carries, and after a stale answer again from the current masks.
// Thread-safe (stateless; the builders' callbacks must be).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "consumers/api/consumer.h"
#include "queue/store.h"

namespace sluice::testing {

// One in-store consumer as a test defines it.
struct InStoreBuilder {
  uint64_t bit = 0;  // REQUIRES: exactly one bit set
  // Appends the effects of `rows` (the request's rows lacking `bit`).
  std::function<void(std::span<const ClaimedEvent* const> rows, Effects* out)> build;
  // Optional: called once a request succeeded, with the rows whose effects
  // it applied (never with none).
  std::function<void(std::span<const ClaimedEvent* const> rows)> applied;
};

// `consumer` (an in-store one) as a builder: parses the rows' bodies and
// calls its BuildEffects, like the watcher. REQUIRES: consumer outlives it.
InStoreBuilder FromConsumer(const Consumer& consumer);

// The effects of each builder for the rows of `events` lacking its bit
// (builders with no such rows are left out); *rows gets the rows of each
// included part, in order.
std::vector<InStoreEffects> BuildInStore(std::span<const ClaimedEvent> events,
                                         const std::vector<InStoreBuilder>& builders,
                                         std::vector<std::vector<const ClaimedEvent*>>* rows);

// MarkDone / Complete with effects from `builders`; after a stale answer the
// effects are rebuilt for the held rows and their current masks and the call
// is repeated (up to 3 times). *stale_answers, when given, counts the stale
// answers. A non-stale answer is returned as is.
Result<MarkDoneResult> MarkDoneBuilding(Store& store, MarkDoneRequest req,
                                        const std::vector<InStoreBuilder>& builders,
                                        int* stale_answers = nullptr);
Result<CompleteResult> CompleteBuilding(Store& store, CompleteRequest req,
                                        const std::vector<InStoreBuilder>& builders,
                                        int* stale_answers = nullptr);

// The rows of `events` that `held` names, with the masks of `held`.
std::vector<ClaimedEvent> WithCurrentMasks(std::span<const ClaimedEvent> events,
                                           std::span<const HeldRow> held);

}  // namespace sluice::testing
