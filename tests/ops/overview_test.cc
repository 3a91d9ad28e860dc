// The console's arithmetic (ops/overview.h), pure: backlog per consumer from
// a bounded scan, the estimate beyond it, fleet rates from the replicas'
// published documents.
#include "ops/overview.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

MaskGroup Group(uint64_t mask, int64_t events, int64_t oldest_age_ms, int64_t leased = 0,
                int64_t waiting = 0, int64_t next_visible_in_ms = 0) {
  MaskGroup g;
  g.done_mask = mask;
  g.events = events;
  g.leased = leased;
  g.waiting = waiting;
  g.oldest_ms = kNow - oldest_age_ms;
  g.oldest_pending_ms = events > leased ? kNow - oldest_age_ms : 0;
  g.next_visible_ms = next_visible_in_ms > 0 ? kNow + next_visible_in_ms : 0;
  return g;
}

BacklogScan CompleteScan(std::vector<MaskGroup> live, std::vector<MaskGroup> dead = {}) {
  BacklogScan s;
  s.now_ms = kNow;
  s.live = std::move(live);
  s.dead = std::move(dead);
  for (const MaskGroup& g : s.live) s.live_scanned += g.events;
  for (const MaskGroup& g : s.dead) s.dead_scanned += g.events;
  s.live_complete = true;
  s.dead_complete = true;
  s.first_live_seq = 1;
  s.last_scanned_seq = s.max_seq = s.live_scanned;
  return s;
}

const std::vector<ConsumerSpec> kConsumers = {
    {"users", 1, true}, {"counters", 2, true}, {"webhook", 4, false}};

TEST(OverviewTest, BacklogCountsEventsLackingEachConsumersBit) {
  // 5 events nobody finished, 7 finished by users+counters (webhook down), 2 by all but users.
  BacklogScan s = CompleteScan({Group(0, 5, 1000), Group(3, 7, 90000), Group(6, 2, 5000)});
  auto c = ComputeBacklogs(s, kConsumers, /*delay_warning_ms=*/60000);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].backlog, 7);   // users: groups 0 and 6
  EXPECT_EQ(c[1].backlog, 5);   // counters: group 0
  EXPECT_EQ(c[2].backlog, 12);  // webhook: groups 0 and 3
  for (const auto& b : c) EXPECT_TRUE(b.exact);
  EXPECT_EQ(c[0].oldest_age_ms, 5000);
  EXPECT_EQ(c[2].oldest_age_ms, 90000);
  EXPECT_FALSE(c[0].delayed);
  EXPECT_TRUE(c[2].delayed);
}

TEST(OverviewTest, ConsumerWithNothingToDoHasZeroBacklogAndAge) {
  BacklogScan s = CompleteScan({Group(7, 4, 1000)});
  auto c = ComputeBacklogs(s, kConsumers, 60000);
  for (const auto& b : c) {
    EXPECT_EQ(b.backlog, 0);
    EXPECT_EQ(b.oldest_age_ms, 0);
    EXPECT_FALSE(b.delayed);
  }
}

TEST(OverviewTest, BeyondTheScanTheBacklogIsEstimatedFromTheProbes) {
  // 100 scanned (10 lacking users); 900 seqs behind them probed every 10th:
  // 80 hits done by users+counters, 9 by nobody, 1 probe on a deleted row.
  BacklogScan s = CompleteScan({Group(3, 90, 60000), Group(0, 10, 61000)});
  s.live_complete = false;
  s.max_seq = s.last_scanned_seq + 900;
  s.sample_span = 900;
  s.samples_taken = 90;
  s.sampled = {Group(3, 80, 30000), Group(0, 9, 1000)};
  auto c = ComputeBacklogs(s, kConsumers, 600000);
  EXPECT_FALSE(c[2].exact);
  EXPECT_EQ(c[2].counted, 100);
  EXPECT_EQ(c[2].backlog, 100 + 890);  // every hit lacks the webhook's bit
  EXPECT_EQ(c[0].backlog, 10 + 90);
  EXPECT_EQ(c[0].oldest_age_ms, 61000);  // from the head: exact
  EXPECT_TRUE(c[0].oldest_exact);
  QueueView q = ComputeQueue(s, 100);
  EXPECT_FALSE(q.exact);
  EXPECT_EQ(q.live, 100 + 890);
  EXPECT_EQ(q.samples, 90);
}

TEST(OverviewTest, ProbesThatCoverEverySeqAreExact) {
  BacklogScan s = CompleteScan({Group(3, 100, 60000)});
  s.live_complete = false;
  s.max_seq = s.last_scanned_seq + 40;
  s.sample_span = 40;
  s.samples_taken = 40;
  s.sampled = {Group(0, 30, 2000)};  // 10 of the 40 seqs were deleted
  auto c = ComputeBacklogs(s, kConsumers, 600000);
  EXPECT_TRUE(c[0].exact);
  EXPECT_EQ(c[0].backlog, 30);
  EXPECT_EQ(c[0].oldest_age_ms, 2000);
  EXPECT_TRUE(c[0].oldest_exact);
  EXPECT_EQ(ComputeQueue(s, 100).live, 130);
}

TEST(OverviewTest, OldestAgeFromTheProbesIsMarkedApproximate) {
  // The head is all waiting for the webhook; users finished every scanned event.
  BacklogScan s = CompleteScan({Group(3, 100, 600000)});
  s.live_complete = false;
  s.max_seq = s.last_scanned_seq + 5000;
  s.sample_span = 5000;
  s.samples_taken = 50;
  s.sampled = {Group(3, 40, 500000), Group(0, 10, 20000)};
  auto c = ComputeBacklogs(s, kConsumers, 60000);
  EXPECT_EQ(c[0].oldest_age_ms, 20000);
  EXPECT_FALSE(c[0].oldest_exact);
  EXPECT_EQ(c[0].backlog, 1000);
  EXPECT_EQ(c[2].oldest_age_ms, 600000);
  EXPECT_TRUE(c[2].delayed);
}

TEST(OverviewTest, OldestAgeIsUnknownWhenNeitherScanNorProbesSawAnUnprocessedEvent) {
  BacklogScan s = CompleteScan({Group(3, 100, 600000)});
  s.live_complete = false;
  s.max_seq = s.last_scanned_seq + 5000;
  s.sample_span = 5000;
  s.samples_taken = 50;
  s.sampled = {Group(3, 50, 500000)};
  auto c = ComputeBacklogs(s, kConsumers, 60000);
  EXPECT_EQ(c[0].oldest_age_ms, -1);
  EXPECT_EQ(c[0].backlog, 0);
  EXPECT_FALSE(c[0].delayed);
}

TEST(OverviewTest, WaitingAndNextRetryComeFromBackingOffEvents) {
  BacklogScan s = CompleteScan({Group(3, 8, 1000, /*leased=*/2, /*waiting=*/6, 12000),
                                Group(0, 1, 500, 0, 1, 30000)});
  auto c = ComputeBacklogs(s, kConsumers, 60000);
  EXPECT_EQ(c[2].waiting, 7);
  EXPECT_EQ(c[2].leased, 2);
  EXPECT_EQ(c[2].next_retry_in_ms, 12000);
  EXPECT_EQ(c[0].waiting, 1);
  EXPECT_EQ(c[0].next_retry_in_ms, 30000);
}

TEST(OverviewTest, DeadPerConsumerCountsDeadEventsLackingItsBit) {
  BacklogScan s = CompleteScan({}, {Group(3, 4, 1000), Group(0, 1, 1000)});
  auto c = ComputeBacklogs(s, kConsumers, 60000);
  EXPECT_EQ(c[0].dead, 1);
  EXPECT_EQ(c[2].dead, 5);
  QueueView q = ComputeQueue(s, 1000);
  EXPECT_EQ(q.dead, 5);
  EXPECT_TRUE(q.dead_exact);
}

TEST(OverviewTest, QueueSplitsLiveIntoPendingAndLeased) {
  BacklogScan s = CompleteScan({Group(0, 10, 4000, /*leased=*/3)});
  s.leased_total = 3;
  QueueView q = ComputeQueue(s, 1000);
  EXPECT_EQ(q.live, 10);
  EXPECT_EQ(q.pending, 7);
  EXPECT_EQ(q.leased, 3);
  EXPECT_EQ(q.oldest_pending_age_ms, 4000);
}

ReplicaView Replica(const std::string& id, bool stale, int64_t end_ms,
                    std::vector<int64_t> ingested, std::vector<ConsumerActivity> consumers = {}) {
  ReplicaView v;
  v.info.id = id;
  v.stale = stale;
  v.has_stats = true;
  v.stats.end_ms = end_ms;
  v.stats.ingested = std::move(ingested);
  v.stats.processed = v.stats.ingested;
  v.stats.consumers = std::move(consumers);
  return v;
}

TEST(OverviewTest, FleetRatesSumAliveReplicasAlignedByBucketEnd) {
  Overview o;
  const int64_t end = 1000 * kActivityBucketMs;
  std::vector<int64_t> a(kActivityBuckets, 0), b(kActivityBuckets, 0), dead(kActivityBuckets, 7);
  a.back() = 10;
  b.back() = 5;                    // b is one bucket behind: its last bucket is our second to last
  o.replicas = {Replica("a", false, end, a), Replica("b", false, end - kActivityBucketMs, b),
                Replica("gone", true, end, dead)};
  AddFleetActivity(&o);
  ASSERT_EQ(o.ingested.size(), static_cast<size_t>(kActivityBuckets));
  EXPECT_EQ(o.series_end_ms, end);
  EXPECT_EQ(o.ingested[kActivityBuckets - 1], 10);
  EXPECT_EQ(o.ingested[kActivityBuckets - 2], 5);
  EXPECT_EQ(o.ingested[0], 0);  // the stale replica counts nowhere
}

TEST(OverviewTest, FleetFailuresSumAndRetryAfterTakesTheLongest) {
  Overview o;
  o.consumers = {ConsumerBacklog{}};
  o.consumers[0].spec = {"webhook", 4, false};
  ConsumerActivity x{{"webhook", 4, false}, 100, 10, 2000};
  ConsumerActivity y{{"webhook", 4, false}, 50, 5, 9000};
  o.replicas = {Replica("a", false, kActivityBucketMs, {}, {x}),
                Replica("b", false, kActivityBucketMs, {}, {y})};
  AddFleetActivity(&o);
  EXPECT_EQ(o.consumers[0].delivered, 150);
  EXPECT_EQ(o.consumers[0].failed, 15);
  EXPECT_EQ(o.consumers[0].retry_after_ms, 9000);
}

TEST(OverviewTest, ConsumersOnlyAnotherReplicaRunsAreAddedByName) {
  std::vector<ReplicaView> replicas = {
      Replica("a", false, 0, {}, {ConsumerActivity{{"webhook", 4, false}, 0, 0, 0},
                                  ConsumerActivity{{"users", 1, true}, 0, 0, 0}}),
      Replica("b", true, 0, {}, {ConsumerActivity{{"stale-only", 8, false}, 0, 0, 0}})};
  auto merged = MergeConsumers({{"users", 1, true}}, replicas);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0].name, "users");
  EXPECT_EQ(merged[1].name, "webhook");
}

TEST(OverviewTest, JsonKeepsTheStatusShapeAndMarksEstimates) {
  Overview o;
  o.store_kind = "sqlite";
  o.now_ms = kNow;
  o.queue = ComputeQueue(CompleteScan({Group(0, 2, 10)}), 100);
  o.consumers = ComputeBacklogs(CompleteScan({Group(0, 2, 10)}), kConsumers, 60000);
  o.consumers[2].oldest_age_ms = -1;
  const std::string json = RenderOverviewJson(o);
  EXPECT_EQ(json.rfind("{\"queue\":{\"pending\":2,\"leased\":0,\"dead\":0,", 0), 0u) << json;
  EXPECT_NE(json.find("\"oldest_age_ms\":null"), std::string::npos) << json;
  EXPECT_NE(json.find("\"name\":\"webhook\",\"bit\":2,\"in_store\":false,\"backlog\":2"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"store\":\"sqlite\""), std::string::npos);
  const std::string text = RenderOverviewText(o);
  EXPECT_NE(text.find("pending 2"), std::string::npos) << text;
  EXPECT_NE(text.find("webhook"), std::string::npos) << text;
}

}  // namespace
}  // namespace sluice
