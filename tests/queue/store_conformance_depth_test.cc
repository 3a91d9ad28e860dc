// The Store conformance suite, continued: PollDepth, the backpressure poll's
// depth (exact above the caller's bound, capped at its limit, never below
// the depth), against Stats()'s exact counts. Instantiated with the rest of
// the suite (store_conformance_test.cc: sqlite, store_conformance_pg_test.cc:
// postgres).
#include <gtest/gtest.h>

#include <vector>

#include "queue/store_conformance_fixture.h"
#include "queue/store_conformance_helpers.h"

namespace sluice {
namespace {

using namespace conformance;  // NOLINT(google-build-using-namespace): the suite's helpers

int64_t Poll(Store& s, int64_t exact_above, int64_t limit) {
  auto d = s.PollDepth(exact_above, limit);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? *d : -1;
}

int64_t StatsDepth(Store& s) {
  auto stats = s.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  return stats.ok() ? stats->pending + stats->leased : -1;
}

TEST_P(StoreConformanceTest, PollDepthIsExactAboveTheBoundCappedAtTheLimitAndNeverLow) {
  EXPECT_EQ(Poll(*store_, 0, 10), 0);  // empty store
  EnqueueOne(*store_, MakeEvents(30));
  Lease done = ClaimOk(*store_, "r/0", 10);
  ASSERT_EQ(done.events.size(), 10u);
  Lease dies = ClaimOk(*store_, "r/0", 5);
  ASSERT_EQ(dies.events.size(), 5u);
  // 30 live: 15 leased, 15 pending.
  EXPECT_EQ(StatsDepth(*store_), 30);
  EXPECT_EQ(Poll(*store_, 0, 1000), 30);   // above the bound: exact
  EXPECT_EQ(Poll(*store_, 29, 1000), 30);  // just above: exact
  EXPECT_EQ(Poll(*store_, 0, 20), 20);     // capped at the limit
  EXPECT_EQ(Poll(*store_, 10, 30), 30);    // the limit itself is exact
  const int64_t below = Poll(*store_, 100, 1000);
  EXPECT_GE(below, 30);  // at or under the bound: an upper bound within it
  EXPECT_LE(below, 100);

  // Completed rows leave the count; dead rows never were in it.
  auto c = store_->Complete(CompleteRequest{done.token, done.events, 0, 0, {}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<int64_t> seqs = Seqs(dies.events);
  ASSERT_TRUE(
      store_->Fail(FailRequest{dies.token, seqs, "consumer c: e", BackoffPolicy{1, 1, 1, 0.0, 0}})
          .ok());
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->dead, 5);
  EXPECT_EQ(StatsDepth(*store_), 15);
  EXPECT_EQ(Poll(*store_, 0, 1000), 15);
  EXPECT_EQ(Poll(*store_, 14, 16), 15);
  EXPECT_EQ(Poll(*store_, 15, 16), 15);  // at the bound: within [depth, bound]
  const int64_t loose = Poll(*store_, 1000, 2000);
  EXPECT_GE(loose, 15);
  EXPECT_LE(loose, 1000);
}

TEST_P(StoreConformanceTest, PollDepthRefusesALimitNotAboveTheBound) {
  EXPECT_EQ(store_->PollDepth(10, 10).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store_->PollDepth(-1, 10).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
