// The Store conformance suite, continued: the dedup window's buckets on the
// store clock. A key is refused across rotations until the bucket holding it
// has a successor older than the window, then accepted as new; no bucket is
// dropped while one of its entries is younger than the window; a stale
// named-lease holder rotates and drops nothing. Instantiated with the rest of
// the suite (store_conformance_test.cc: sqlite, store_conformance_pg_test.cc:
// postgres).
#include <gtest/gtest.h>

#include <vector>

#include "queue/store_conformance_fixture.h"
#include "queue/store_conformance_helpers.h"

namespace sluice {
namespace {

using namespace conformance;  // NOLINT(google-build-using-namespace): the suite's helpers

// Runs MaintainDedup and re-enqueues `events` until they are accepted again;
// every acceptance must come at least `window_ms` after `accepted_before`
// (store clock read before the first acceptance). Returns the buckets
// created meanwhile, or -1 on timeout.
int64_t MaintainUntilAcceptedAgain(Store& s, int64_t token, const std::vector<NewEvent>& events,
                                   int64_t accepted_before, int64_t window_ms) {
  int64_t created = 0;
  const bool again = WaitUntil(
      [&] {
        auto m = s.MaintainDedup(token);
        EXPECT_TRUE(m.ok()) << m.status().ToString();
        if (m.ok()) created += m->created;
        EnqueueResult r = EnqueueOne(s, events);
        const int64_t after = Now(s);
        if (r.accepted == 0) {
          EXPECT_EQ(r.duplicates, static_cast<int64_t>(events.size()));
          return false;
        }
        EXPECT_EQ(r.accepted, static_cast<int64_t>(events.size()));
        EXPECT_GE(after - accepted_before, window_ms) << "accepted again inside the window";
        return true;
      },
      kWait, milliseconds(5));
  return again ? created : -1;
}

TEST_P(StoreConformanceTest, DuplicateIsRefusedAcrossRotationsAndAcceptedAfterItsBucketExpired) {
  StoreOptions o;
  o.dedup_window_ms = 400;
  o.dedup_buckets = 4;  // 100 ms buckets
  StorePtr s = OpenFresh(o);
  ASSERT_NE(s, nullptr);
  auto token = s->AcquireNamedLease("dedup-prune", "r1", 60000);
  ASSERT_TRUE(token.ok());
  std::vector<NewEvent> events = MakeEvents(3);
  const int64_t before = Now(*s);
  EXPECT_EQ(EnqueueOne(*s, events).accepted, 3);
  EXPECT_EQ(EnqueueOne(*s, events).duplicates, 3);
  const int64_t created = MaintainUntilAcceptedAgain(*s, *token, events, before, 400);
  EXPECT_GE(created, 2) << "refused across several rotations";
  EXPECT_EQ(EnqueueOne(*s, events).duplicates, 3);  // and the window restarted
}

TEST_P(StoreConformanceTest, BucketIsNotDroppedWhileAnEntryIsYoungerThanTheWindow) {
  // The key arrives late in its bucket's span (no maintenance ran since the
  // bucket started): its bucket's own start is older than the entry by far,
  // so only the successor's start may decide the drop.
  StoreOptions o;
  o.dedup_window_ms = 500;
  o.dedup_buckets = 2;  // 250 ms buckets
  StorePtr s = OpenFresh(o);
  ASSERT_NE(s, nullptr);
  auto token = s->AcquireNamedLease("dedup-prune", "r1", 60000);
  ASSERT_TRUE(token.ok());
  const int64_t opened = Now(*s);
  ASSERT_TRUE(WaitUntil([&] { return Now(*s) > opened + 350; }, kWait));
  std::vector<NewEvent> events = MakeEvents(2, "late");
  const int64_t before = Now(*s);
  EXPECT_EQ(EnqueueOne(*s, events).accepted, 2);
  EXPECT_GE(MaintainUntilAcceptedAgain(*s, *token, events, before, 500), 1);
}

TEST_P(StoreConformanceTest, MaintainDedupIsFencedByTheNamedLease) {
  StoreOptions o;
  o.dedup_window_ms = 150;
  o.dedup_buckets = 1;
  StorePtr s = OpenFresh(o);
  ASSERT_NE(s, nullptr);
  auto token = s->AcquireNamedLease("dedup-prune", "r1", 60000);
  ASSERT_TRUE(token.ok());
  // Bucket 1 (created by the migration) is the only one.
  std::vector<NewEvent> events = MakeEvents(4);
  EXPECT_EQ(EnqueueOne(*s, events).accepted, 4);
  const int64_t t = Now(*s);
  ASSERT_TRUE(WaitUntil([&] { return Now(*s) > t + 200; }, kWait));
  // A stale holder (another token) rotates nothing.
  EXPECT_EQ(s->MaintainDedup(*token + 1000).status().code(), Code::kLeaseLost);
  auto rotated = s->MaintainDedup(*token);
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(rotated->created, 1);
  EXPECT_EQ(rotated->dropped, 0);  // bucket 1's successor started just now
  EXPECT_EQ(rotated->live, 2);
  EXPECT_EQ(EnqueueOne(*s, events).duplicates, 4);
  const int64_t t2 = Now(*s);
  ASSERT_TRUE(WaitUntil([&] { return Now(*s) > t2 + 200; }, kWait));
  // A holder whose lease was taken over drops nothing.
  auto other = s->AcquireNamedLease("dedup-prune-b", "r2", 60000);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(s->ReleaseNamedLease("dedup-prune", *token).ok());
  EXPECT_EQ(s->MaintainDedup(*token).status().code(), Code::kLeaseLost);
  EXPECT_EQ(EnqueueOne(*s, events).duplicates, 4);
  auto dropped = s->MaintainDedup(*other);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped->dropped, 1);
  EXPECT_EQ(dropped->created, 1);
  EXPECT_EQ(dropped->live, 2);
  EXPECT_EQ(EnqueueOne(*s, events).accepted, 4);
}

}  // namespace
}  // namespace sluice
