// The Store conformance suite, continued: in-store effects built for masks
// that no longer hold are refused (stale) and change nothing; rebuilt from
// the masks the store reports, they apply exactly once. Instantiated with the
// rest of the suite (store_conformance_test.cc: sqlite,
// store_conformance_pg_test.cc: postgres).
#include <gtest/gtest.h>

#include <span>
#include <vector>

#include "queue/store_conformance_fixture.h"
#include "queue/store_conformance_helpers.h"

namespace sluice {
namespace {

using namespace conformance;  // NOLINT(google-build-using-namespace): the suite's helpers

// ---- stale effects: built for masks that no longer hold ----

// The counters consumer's effects for the rows of `rows` lacking `bit`, as
// the watcher builds them (from the masks the rows carry).
InStoreEffects CountersFor(uint64_t bit, std::span<const ClaimedEvent> rows) {
  InStoreEffects part{.bit = bit, .effects = {}};
  std::vector<const ClaimedEvent*> lacking;
  for (const ClaimedEvent& e : rows) {
    if ((e.done_mask & bit) == 0) lacking.push_back(&e);
  }
  CounterWork(bit).build(lacking, &part.effects);
  return part;
}

TEST_P(StoreConformanceTest, CompleteWithEffectsForStaleMasksWritesNothingAndReportsStale) {
  EnqueueOne(*store_, MakeEvents(4));
  Lease l = ClaimOk(*store_, "r/0", 10);
  ASSERT_EQ(l.events.size(), 4u);
  // Counters (bit 1) applied for the first two rows.
  std::vector<ClaimedEvent> two(l.events.begin(), l.events.begin() + 2);
  MarkDoneRequest mark{l.token, two, 0, {}};
  mark.in_store.push_back(CountersFor(1, two));
  auto m = store_->MarkDone(mark);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_FALSE(m->stale);
  EXPECT_EQ(m->marked.size(), 2u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 2);

  // A Complete whose effects were built from the claim's masks (no row had
  // bit 1) covers two rows that have it now: nothing is written, not even
  // the external bit or the delete, and the current masks come back.
  CompleteRequest stale_req{l.token, l.events, 1 | 4, 4, {}};
  stale_req.in_store.push_back(CountersFor(1, l.events));
  auto stale = store_->Complete(stale_req);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  EXPECT_TRUE(stale->stale);
  EXPECT_TRUE(stale->deleted.empty());
  EXPECT_TRUE(stale->remaining.empty());
  ASSERT_EQ(stale->held.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(stale->held[i].seq, l.events[i].seq);
    EXPECT_EQ(stale->held[i].done_mask, i < 2 ? 1u : 0u) << "row " << i;
  }
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 2);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->leased, 4);

  // Rebuilt from the current masks, the retry applies the other two rows
  // exactly once and completes the batch.
  std::vector<ClaimedEvent> current = testing::WithCurrentMasks(l.events, stale->held);
  CompleteRequest retry{l.token, current, 1 | 4, 4, {}};
  retry.in_store.push_back(CountersFor(1, current));
  auto done = store_->Complete(retry);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_FALSE(done->stale);
  EXPECT_EQ(done->deleted.size(), 4u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 4);
}

TEST_P(StoreConformanceTest, MarkDoneWithEffectsForRowsNoLongerHeldIsStaleAndChangesNothing) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease l = ClaimOk(*store_, "r/0", 10);
  ASSERT_EQ(l.events.size(), 3u);
  // The first row is completed (gone) before the effects are used.
  std::vector<ClaimedEvent> first(l.events.begin(), l.events.begin() + 1);
  ASSERT_TRUE(store_->Complete(CompleteRequest{l.token, first, 0, 0, {}}).ok());

  MarkDoneRequest req{l.token, l.events, 4, {}};
  req.in_store.push_back(CountersFor(1, l.events));  // built for all three rows
  auto stale = store_->MarkDone(req);
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  EXPECT_TRUE(stale->stale);
  EXPECT_TRUE(stale->marked.empty());
  ASSERT_EQ(stale->held.size(), 2u);
  EXPECT_EQ(stale->held[0], (HeldRow{l.events[1].seq, 0}));
  EXPECT_EQ(stale->held[1], (HeldRow{l.events[2].seq, 0}));
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 0);
  // The external bit of the stale call was not set either.
  auto ext = store_->MarkDone(MarkDoneRequest{l.token, l.events, 4, {}});
  ASSERT_TRUE(ext.ok());
  EXPECT_EQ(ext->marked.size(), 2u);

  // Rebuilt for the two held rows: applied once; the same effects again are
  // stale (the rows have the bit now) and change nothing.
  std::vector<ClaimedEvent> current = testing::WithCurrentMasks(l.events, stale->held);
  MarkDoneRequest retry{l.token, current, 0, {}};
  retry.in_store.push_back(CountersFor(1, current));
  auto ok = store_->MarkDone(retry);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_FALSE(ok->stale);
  EXPECT_EQ(ok->marked.size(), 2u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 2);
  auto again = store_->MarkDone(retry);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->stale);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 2);
}

TEST_P(StoreConformanceTest, EffectsBuiltOnlyForRowsLackingTheBitAreNotStale) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease l = ClaimOk(*store_, "r/0", 10);
  std::vector<ClaimedEvent> first(l.events.begin(), l.events.begin() + 1);
  MarkDoneRequest mark{l.token, first, 0, {}};
  mark.in_store.push_back(CountersFor(1, first));
  ASSERT_TRUE(store_->MarkDone(mark).ok());
  // The caller knows row 0 has the bit (its mask says so): the effects cover
  // rows 1 and 2 only, which is exactly what the store finds.
  std::vector<ClaimedEvent> rows = l.events;
  rows[0].done_mask = 1;
  CompleteRequest req{l.token, rows, 1, 0, {}};
  req.in_store.push_back(CountersFor(1, rows));
  auto done = store_->Complete(req);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_FALSE(done->stale);
  EXPECT_EQ(done->deleted.size(), 3u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 3);
}

}  // namespace
}  // namespace sluice
