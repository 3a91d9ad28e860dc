// Lease logic: the store-agnostic rules of the fenced writes and of the dead
// letters, written once as pure functions. Each Store reads the rows it needs
// with its own SQL, asks these functions what to write, and writes that with
// its own SQL inside its own transaction; nothing here knows SQL.
//
//   MarkDone/Complete: PlanMarkDone / PlanComplete (which held rows change,
//                      stale effects, deleted vs remaining)
//   Fail:              PlanFail, BackoffDelayMs (dead or back at now + delay)
//   Dead letters:      DeadLetterMatches (the `consumer` and `error` filters)
//   PollDepth:         CheckPollDepth (its arguments)
//
// Pure functions of their arguments (BackoffJitter excepted: it draws a
// random number): thread-safe. Tests: tests/queue/lease_logic_test.cc.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "queue/store.h"

namespace sluice {

// ---- MarkDone / Complete ----

// What one MarkDone or Complete writes, decided from the request and the rows
// the store found held under the request's token (read under the fence, with
// the rows locked until the transaction ends).
struct MarkPlan {
  enum class Outcome {
    kApply,      // write mask_writes, delete `deleted`, apply the effects
    kLeaseLost,  // no row of the request is held: write nothing, answer kLeaseLost
    kStale,      // effects built for masks that no longer hold: write nothing,
                 // answer stale with `held`
  };
  Outcome outcome = Outcome::kLeaseLost;
  // The request's rows that are held, ascending seq, with their masks before
  // this write (the stale answer's `held`).
  std::vector<HeldRow> held;
  std::vector<int64_t> marked;       // kApply: rows on which a bit is newly set, ascending
  std::vector<HeldRow> mask_writes;  // kApply: new masks to write; never a row in `deleted`
  std::vector<int64_t> deleted;      // kApply, Complete only: held rows with every bit now
  std::vector<int64_t> remaining;    // kApply, Complete only: the other held rows
};

// `events`: the request's rows with the masks the caller built its effects
// for (any order). `held_now`: the rows the store found held under the token,
// any order, with their current masks; rows not in `events` are ignored.
// `in_store_bits`: OR of the request's InStoreEffects bits.
//
// Stale when, for some in-store bit b, a row of `events` lacking b is not held
// or has b now, or a held row of `events` that had b lacks it now. Otherwise
// every held row of `events` gets external_bits | in_store_bits, so the rows
// whose b flips are exactly those the effects of b were built for.
MarkPlan PlanMarkDone(std::span<const ClaimedEvent> events, std::span<const HeldRow> held_now,
                      uint64_t external_bits, uint64_t in_store_bits);
// As PlanMarkDone; then the held rows whose mask has every bit of all_bits
// are `deleted` (their mask is not written), the others `remaining`.
MarkPlan PlanComplete(std::span<const ClaimedEvent> events, std::span<const HeldRow> held_now,
                      uint64_t all_bits, uint64_t external_bits, uint64_t in_store_bits);

// OR of the bits of `in_store`.
uint64_t InStoreBits(std::span<const InStoreEffects> in_store);

// When `plan` is kStale, moves its answer into *result (a MarkDoneResult or
// CompleteResult: `stale`, `held`) and returns true.
template <typename R>
bool TakeStale(MarkPlan& plan, R* result) {
  if (plan.outcome != MarkPlan::Outcome::kStale) return false;
  result->stale = true;
  result->held = std::move(plan.held);
  return true;
}

// ---- Fail ----

// min(cap, base * 2^(attempts-1)) scaled by (1 - jitter * u), jitter clamped
// to [0, 1], and at least min_delay_ms. `u` in [0, 1) is the random draw
// (BackoffJitter()); u = 0 gives the undithered delay.
int64_t BackoffDelayMs(const BackoffPolicy& policy, int64_t attempts, double u);

// One held row of a Fail: dead when attempts >= max_attempts, else pending
// again at now + delay_ms.
struct FailStep {
  bool dead = false;
  int64_t delay_ms = 0;  // 0 when dead
};
FailStep PlanFail(const BackoffPolicy& policy, int64_t attempts, double u);

// A uniform draw in [0, 1) from a thread-local generator, for BackoffDelayMs.
double BackoffJitter();

// ---- dead letters ----

// last_error names each consumer that failed the row, "; "-separated
// ("consumer a: ..; consumer b: .."): true when "consumer NAME:" is at its
// start or follows "; ". An empty `consumer` matches every row.
bool LastErrorNamesConsumer(std::string_view last_error, std::string_view consumer);
// True when last_error contains `text`, ASCII letters compared without case
// (other bytes exactly). An empty `text` matches every row.
bool LastErrorContains(std::string_view last_error, std::string_view text);
// The parts of a DeadFilter that look at last_error (consumer, error); the
// stores select by project and seqs in SQL and apply this to what they read.
bool DeadLetterMatches(const DeadFilter& filter, std::string_view last_error);

// ---- PollDepth ----

// InvalidArgument unless 0 <= exact_above < limit (Store::PollDepth's REQUIRES).
Status CheckPollDepth(int64_t exact_above, int64_t limit);

}  // namespace sluice
