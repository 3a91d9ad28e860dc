// ReplicaActivity: a replica's 5-minute buckets from its own counters, and
// the document it publishes with its heartbeat.
#include "ops/activity.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

constexpr int64_t kT = 1000 * kActivityBucketMs;  // a bucket boundary

class ActivityTest : public ::testing::Test {
 protected:
  ActivityTest()
      : ingested_(metrics_.GetCounter("sluice_ingest_events_total", "", Labels({{"result", "accepted"}}))),
        completed_(metrics_.GetCounter("sluice_completed_events_total", "")),
        delivered_(metrics_.GetCounter("sluice_deliveries_total", "", Labels({{"consumer", "webhook"}}))),
        failed_(metrics_.GetCounter("sluice_failures_total", "", Labels({{"consumer", "webhook"}}))),
        in_flight_(metrics_.GetGauge("sluice_watcher_in_flight", "")) {}

  Metrics metrics_;
  Counter& ingested_;
  Counter& completed_;
  Counter& delivered_;
  Counter& failed_;
  Gauge& in_flight_;
};

TEST_F(ActivityTest, CountsLandInTheBucketOfTheSampleAndOnlyCompleteBucketsArePublished) {
  int64_t wait = 0;
  ReplicaActivity a(&metrics_, {LocalConsumer{{"webhook", 4, false}, [&] { return wait; }}}, 2);
  ingested_.Inc(100);  // before the baseline: never counted
  a.Sample(kT);
  ingested_.Inc(7);
  completed_.Inc(5);
  delivered_.Inc(9);
  failed_.Inc(2);
  a.Sample(kT + 1000);
  ingested_.Inc(3);
  a.Sample(kT + kActivityBucketMs + 10);  // the next bucket

  // While the first bucket is the current one, nothing is published yet.
  EXPECT_EQ(a.Snapshot(kT + 2000).ingested.back(), 0);
  in_flight_.Set(1);
  wait = 1500;
  ReplicaStats s = a.Snapshot(kT + 2 * kActivityBucketMs);
  EXPECT_EQ(s.loops, 2);
  EXPECT_EQ(s.busy, 1);
  EXPECT_EQ(s.end_ms, kT + 2 * kActivityBucketMs);
  ASSERT_EQ(s.ingested.size(), static_cast<size_t>(kActivityBuckets));
  EXPECT_EQ(s.ingested[kActivityBuckets - 2], 7);
  EXPECT_EQ(s.ingested[kActivityBuckets - 1], 3);
  EXPECT_EQ(s.processed[kActivityBuckets - 2], 5);
  ASSERT_EQ(s.consumers.size(), 1u);
  EXPECT_EQ(s.consumers[0].delivered, 9);
  EXPECT_EQ(s.consumers[0].failed, 2);
  EXPECT_EQ(s.consumers[0].retry_after_ms, 1500);
}

TEST_F(ActivityTest, BucketsOlderThanFiveMinutesFallOut) {
  ReplicaActivity a(&metrics_, {}, 1);
  a.Sample(kT);
  ingested_.Inc(4);
  a.Sample(kT + 1);
  ReplicaStats later = a.Snapshot(kT + (kActivityBuckets + 1) * kActivityBucketMs);
  int64_t total = 0;
  for (int64_t v : later.ingested) total += v;
  EXPECT_EQ(total, 0);
}

TEST_F(ActivityTest, PublishedDocumentParsesBack) {
  ReplicaActivity a(&metrics_, {LocalConsumer{{"webhook \"w\"", 8, false}, nullptr}}, 3);
  a.Sample(kT);
  ingested_.Inc(2);
  a.Sample(kT + 1);
  const std::string json = a.StatsJson(kT + kActivityBucketMs);
  std::optional<ReplicaStats> s = ParseReplicaStats(json);
  ASSERT_TRUE(s.has_value()) << json;
  EXPECT_EQ(s->loops, 3);
  EXPECT_EQ(s->ingested.back(), 2);
  ASSERT_EQ(s->consumers.size(), 1u);
  EXPECT_EQ(s->consumers[0].spec.name, "webhook \"w\"");
  EXPECT_EQ(s->consumers[0].spec.bit, 8u);
  EXPECT_LT(json.size(), kMaxReplicaStatsBytes);
}

TEST(ReplicaStatsTest, ForeignOrBrokenDocumentsAreIgnored) {
  EXPECT_FALSE(ParseReplicaStats("").has_value());
  EXPECT_FALSE(ParseReplicaStats("not json").has_value());
  EXPECT_FALSE(ParseReplicaStats("{\"v\":2}").has_value());
  EXPECT_FALSE(ParseReplicaStats("{\"v\":1,\"ingested\":[\"x\"]}").has_value());
  EXPECT_FALSE(ParseReplicaStats("{\"v\":1,\"consumers\":[{\"bit\":1}]}").has_value());
  // Unknown keys (a newer replica) are fine.
  EXPECT_TRUE(ParseReplicaStats("{\"v\":1,\"future\":{\"a\":[1]},\"loops\":1}").has_value());
}

}  // namespace
}  // namespace sluice
