// The store-agnostic lease logic (queue/lease_logic.h), directly: which held
// rows a MarkDone/Complete changes, when in-store effects are stale, the
// deleted/remaining split, the backoff delay and the dead-letter consumer
// filter. Both stores run exactly these functions.
#include "queue/lease_logic.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice {
namespace {

std::vector<ClaimedEvent> Rows(std::initializer_list<std::pair<int64_t, uint64_t>> seq_masks) {
  std::vector<ClaimedEvent> out;
  for (const auto& [seq, mask] : seq_masks) {
    ClaimedEvent e;
    e.seq = seq;
    e.done_mask = mask;
    out.push_back(e);
  }
  return out;
}

using Outcome = MarkPlan::Outcome;

// ---- MarkDone / Complete ----

TEST(LeaseLogic, NothingHeldIsLeaseLost) {
  const auto events = Rows({{1, 0}, {2, 0}});
  const std::vector<HeldRow> held = {{7, 0}};  // the token holds another row only
  EXPECT_EQ(PlanMarkDone(events, held, 4, 0).outcome, Outcome::kLeaseLost);
  EXPECT_EQ(PlanComplete(events, {}, 7, 4, 1).outcome, Outcome::kLeaseLost);
}

TEST(LeaseLogic, MarkDoneSetsTheBitsOnHeldRowsOfTheRequestOnly) {
  const auto events = Rows({{3, 0}, {1, 0}, {2, 4}});          // any order
  const std::vector<HeldRow> held = {{1, 0}, {2, 4}, {5, 0}};  // 3 gone; 5 not asked about
  MarkPlan p = PlanMarkDone(events, held, 4, 0);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_EQ(p.held, (std::vector<HeldRow>{{1, 0}, {2, 4}}));
  EXPECT_EQ(p.marked, std::vector<int64_t>{1});  // row 2 had bit 4 already
  EXPECT_EQ(p.mask_writes, (std::vector<HeldRow>{{1, 4}}));
  EXPECT_TRUE(p.deleted.empty());
  EXPECT_TRUE(p.remaining.empty());
}

TEST(LeaseLogic, CompleteDeletesRowsWithEveryBitAndWritesOnlyTheOthers) {
  const auto events = Rows({{1, 0}, {2, 2}, {3, 0}});
  const std::vector<HeldRow> held = {{1, 0}, {2, 2}, {3, 0}};
  // External bit 4 for all; in-store bit 1 applied; bit 2 (another external)
  // only row 2 had.
  MarkPlan p = PlanComplete(events, held, /*all_bits=*/7, /*external=*/4, /*in_store=*/1);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_EQ(p.marked, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(p.deleted, std::vector<int64_t>{2});
  EXPECT_EQ(p.remaining, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(p.mask_writes, (std::vector<HeldRow>{{1, 5}, {3, 5}}));  // never the deleted row
}

TEST(LeaseLogic, CompleteWithoutNewBitsStillSplitsDeletedAndRemaining) {
  const auto events = Rows({{1, 3}, {2, 1}});
  const std::vector<HeldRow> held = {{1, 3}, {2, 1}};
  MarkPlan p = PlanComplete(events, held, 3, 0, 0);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_TRUE(p.marked.empty());
  EXPECT_TRUE(p.mask_writes.empty());
  EXPECT_EQ(p.deleted, std::vector<int64_t>{1});
  EXPECT_EQ(p.remaining, std::vector<int64_t>{2});
}

TEST(LeaseLogic, InStoreBitAlreadySetSinceTheMasksWereSeenIsStale) {
  // The effects of bit 1 were built for rows 1 and 2 (both lacked it); row 2
  // has it now (an earlier attempt committed).
  const auto events = Rows({{1, 0}, {2, 0}});
  const std::vector<HeldRow> held = {{1, 0}, {2, 1}};
  MarkPlan p = PlanComplete(events, held, 1, 4, 1);
  EXPECT_EQ(p.outcome, Outcome::kStale);
  EXPECT_EQ(p.held, held);  // the current masks, to rebuild from
  EXPECT_TRUE(p.marked.empty());
  EXPECT_TRUE(p.mask_writes.empty());
  EXPECT_TRUE(p.deleted.empty());
}

TEST(LeaseLogic, EffectsForARowNoLongerHeldAreStale) {
  const auto events = Rows({{1, 0}, {2, 0}});
  const std::vector<HeldRow> held = {{2, 0}};
  MarkPlan p = PlanMarkDone(events, held, 0, 1);
  EXPECT_EQ(p.outcome, Outcome::kStale);
  EXPECT_EQ(p.held, (std::vector<HeldRow>{{2, 0}}));
}

TEST(LeaseLogic, AGoneRowThatHadTheBitDoesNotMakeTheEffectsStale) {
  // Row 1 had bit 1 when the effects were built (so they do not cover it).
  const auto events = Rows({{1, 1}, {2, 0}});
  const std::vector<HeldRow> held = {{2, 0}};
  MarkPlan p = PlanMarkDone(events, held, 0, 1);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_EQ(p.marked, std::vector<int64_t>{2});
}

TEST(LeaseLogic, ABitLostSinceTheMasksWereSeenIsStale) {
  const auto events = Rows({{1, 1}});
  const std::vector<HeldRow> held = {{1, 0}};
  EXPECT_EQ(PlanMarkDone(events, held, 0, 1).outcome, Outcome::kStale);
}

TEST(LeaseLogic, ChangedExternalBitsDoNotMakeInStoreEffectsStale) {
  // Bit 4 (external) was set by another delivery since; only in-store bits
  // are checked.
  const auto events = Rows({{1, 0}});
  const std::vector<HeldRow> held = {{1, 4}};
  MarkPlan p = PlanComplete(events, held, 5, 0, 1);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_EQ(p.deleted, std::vector<int64_t>{1});
}

TEST(LeaseLogic, EffectsBuiltFromTheCurrentMasksApply) {
  // The retry after a stale answer: masks as the store reported them.
  const auto events = Rows({{1, 0}, {2, 1}});
  const std::vector<HeldRow> held = {{1, 0}, {2, 1}};
  MarkPlan p = PlanComplete(events, held, 1, 0, 1);
  ASSERT_EQ(p.outcome, Outcome::kApply);
  EXPECT_EQ(p.marked, std::vector<int64_t>{1});  // the bit flips exactly where effects were built
  EXPECT_EQ(p.deleted, (std::vector<int64_t>{1, 2}));
}

TEST(LeaseLogic, InStoreBitsAreTheUnionOfTheParts) {
  std::vector<InStoreEffects> parts(2);
  parts[0].bit = 1;
  parts[1].bit = 8;
  EXPECT_EQ(InStoreBits(parts), 9u);
  EXPECT_EQ(InStoreBits({}), 0u);
}

// ---- Fail ----

TEST(LeaseLogic, BackoffDoublesPerAttemptUpToTheCap) {
  BackoffPolicy p{
      .base_ms = 100, .cap_ms = 1000, .max_attempts = 10, .jitter = 0.5, .min_delay_ms = 0};
  EXPECT_EQ(BackoffDelayMs(p, 1, 0.0), 100);
  EXPECT_EQ(BackoffDelayMs(p, 2, 0.0), 200);
  EXPECT_EQ(BackoffDelayMs(p, 4, 0.0), 800);
  EXPECT_EQ(BackoffDelayMs(p, 5, 0.0), 1000);
  EXPECT_EQ(BackoffDelayMs(p, 62, 0.0), 1000);  // no overflow
  EXPECT_EQ(BackoffDelayMs(p, 0, 0.0), 100);
}

TEST(LeaseLogic, JitterScalesTheDelayDownByAtMostItsFraction) {
  BackoffPolicy p{
      .base_ms = 1000, .cap_ms = 1000, .max_attempts = 10, .jitter = 0.5, .min_delay_ms = 0};
  EXPECT_EQ(BackoffDelayMs(p, 1, 0.5), 750);
  EXPECT_EQ(BackoffDelayMs(p, 1, 0.999), 500);
  p.jitter = 7;  // clamped to 1
  EXPECT_EQ(BackoffDelayMs(p, 1, 0.5), 500);
  for (int i = 0; i < 1000; ++i) {
    const double u = BackoffJitter();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(LeaseLogic, RetryAfterFloorsTheDelay) {
  BackoffPolicy p{
      .base_ms = 10, .cap_ms = 10, .max_attempts = 10, .jitter = 0, .min_delay_ms = 5000};
  EXPECT_EQ(BackoffDelayMs(p, 1, 0.0), 5000);
}

TEST(LeaseLogic, RowAtTheAttemptLimitGoesDead) {
  BackoffPolicy p{.base_ms = 10, .cap_ms = 10, .max_attempts = 3, .jitter = 0, .min_delay_ms = 0};
  EXPECT_FALSE(PlanFail(p, 2, 0.0).dead);
  EXPECT_EQ(PlanFail(p, 2, 0.0).delay_ms, 10);
  EXPECT_TRUE(PlanFail(p, 3, 0.0).dead);
  EXPECT_EQ(PlanFail(p, 3, 0.0).delay_ms, 0);
  EXPECT_TRUE(PlanFail(p, 4, 0.0).dead);
}

// ---- dead letters ----

TEST(LeaseLogic, ConsumerFilterMatchesANameAtTheStartOrAfterASeparator) {
  EXPECT_TRUE(LastErrorNamesConsumer("consumer hook: HTTP 500", "hook"));
  EXPECT_TRUE(LastErrorNamesConsumer("consumer a: x; consumer hook: y", "hook"));
  EXPECT_TRUE(LastErrorNamesConsumer("anything", ""));
  EXPECT_TRUE(LastErrorNamesConsumer("", ""));
}

TEST(LeaseLogic, ConsumerFilterIgnoresPrefixesAndMentionsInMessages) {
  EXPECT_FALSE(LastErrorNamesConsumer("consumer hooked: x", "hook"));  // another name
  EXPECT_FALSE(LastErrorNamesConsumer("consumer a: called consumer hook: x", "hook"));
  EXPECT_FALSE(LastErrorNamesConsumer("drain", "hook"));
  EXPECT_FALSE(LastErrorNamesConsumer("", "hook"));
  EXPECT_FALSE(LastErrorNamesConsumer("xconsumer hook: y", "hook"));
}

}  // namespace
}  // namespace sluice
