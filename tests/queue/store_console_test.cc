// Conformance of the console's store reads (Store::ScanBacklog,
// PublishReplicaStats, the dead-letter error filter), for every store kind:
// these TEST_Ps join StoreConformanceTest, instantiated for sqlite in
// store_conformance_test.cc and for postgres in store_conformance_pg_test.cc.
#include <gtest/gtest.h>

#include <map>

#include "common/event.h"
#include "queue/store_conformance_fixture.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::WaitUntil;

constexpr int64_t kT0 = 1'700'000'000'000;

std::vector<NewEvent> Events(int n, const std::string& prefix) {
  std::vector<NewEvent> out;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.event = "view";
    e.user_id = "u" + std::to_string(i);
    e.time_ms = kT0 + i;
    out.push_back({"p", prefix + std::to_string(i), ToBody(e)});
  }
  return out;
}

void Enqueue(Store& s, const std::vector<NewEvent>& events) {
  EnqueueBatch batch{events};
  auto r = s.Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

Lease Claim(Store& s, int n) {
  auto r = s.Claim(ClaimRequest{"r/0", n, 30000});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : Lease{};
}

BacklogScan Scan(Store& s, int64_t max_live = 1000, int64_t max_dead = 1000) {
  auto r = s.ScanBacklog(BacklogScanRequest{max_live, max_dead, 1000});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : BacklogScan{};
}

std::map<uint64_t, MaskGroup> ByMask(const std::vector<MaskGroup>& groups) {
  std::map<uint64_t, MaskGroup> out;
  for (const MaskGroup& g : groups) out[g.done_mask] = g;
  return out;
}

TEST_P(StoreConformanceTest, ScanOfAnEmptyQueueIsCompleteAndEmpty) {
  BacklogScan s = Scan(*store_);
  EXPECT_TRUE(s.live_complete);
  EXPECT_TRUE(s.dead_complete);
  EXPECT_EQ(s.live_scanned, 0);
  EXPECT_TRUE(s.live.empty());
  EXPECT_TRUE(s.dead.empty());
  EXPECT_EQ(s.leased_total, 0);
  EXPECT_GT(s.now_ms, kT0);
}

TEST_P(StoreConformanceTest, ScanGroupsLiveRowsByDoneMaskWithLeasedAndWaiting) {
  Enqueue(*store_, Events(10, "a"));
  // 4 rows leased; bit 4 set on 2 of them; 2 more failed into a backoff.
  Lease held = Claim(*store_, 4);
  ASSERT_EQ(held.events.size(), 4u);
  std::vector<ClaimedEvent> two(held.events.begin(), held.events.begin() + 2);
  ASSERT_TRUE(store_->MarkDone(MarkDoneRequest{held.token, two, 4, {}}).ok());
  Lease failing = Claim(*store_, 2);
  ASSERT_EQ(failing.events.size(), 2u);
  std::vector<int64_t> seqs{failing.events[0].seq, failing.events[1].seq};
  ASSERT_TRUE(store_
                  ->Fail(FailRequest{failing.token, seqs, "consumer webhook: 503",
                                     BackoffPolicy{600000, 600000, 10, 0.0, 0}})
                  .ok());

  BacklogScan s = Scan(*store_);
  EXPECT_TRUE(s.live_complete);
  EXPECT_EQ(s.live_scanned, 10);
  EXPECT_EQ(s.leased_total, 4);
  EXPECT_EQ(s.first_live_seq, held.events[0].seq);
  EXPECT_EQ(s.max_seq, s.last_scanned_seq);
  auto groups = ByMask(s.live);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[4].events, 2);
  EXPECT_EQ(groups[4].leased, 2);
  EXPECT_EQ(groups[4].waiting, 0);
  EXPECT_EQ(groups[0].events, 8);
  EXPECT_EQ(groups[0].leased, 2);
  EXPECT_EQ(groups[0].waiting, 2);
  EXPECT_GT(groups[0].next_visible_ms, s.now_ms + 500000);  // the 10-minute backoff
  EXPECT_GT(groups[0].oldest_ms, 0);
  EXPECT_LE(groups[0].oldest_ms, s.now_ms);
  EXPECT_GE(groups[0].oldest_pending_ms, groups[0].oldest_ms);
  EXPECT_EQ(groups[4].oldest_pending_ms, 0);  // both leased: none pending
}

TEST_P(StoreConformanceTest, ScanStopsAtItsLimitAndSaysSo) {
  Enqueue(*store_, Events(30, "a"));
  BacklogScan s = Scan(*store_, /*max_live=*/10);
  EXPECT_FALSE(s.live_complete);
  EXPECT_EQ(s.live_scanned, 10);
  // The oldest ten: the seq range behind them is what estimates extend over.
  EXPECT_EQ(s.last_scanned_seq - s.first_live_seq, 9);
  EXPECT_EQ(s.max_seq - s.last_scanned_seq, 20);
  // Fewer seqs behind the head than probes: every one is probed (all live here).
  EXPECT_EQ(s.sample_span, 20);
  EXPECT_EQ(s.samples_taken, 20);
  int64_t hits = 0;
  for (const MaskGroup& g : s.sampled) hits += g.events;
  EXPECT_EQ(hits, 20);
}

TEST_P(StoreConformanceTest, ProbesBeyondTheScanHitLiveRowsOnly) {
  Enqueue(*store_, Events(40, "a"));
  // Finish (delete) the rows 21..30: holes the probes must not count.
  Lease head = Claim(*store_, 20);
  Lease mid = Claim(*store_, 10);
  ASSERT_EQ(mid.events.size(), 10u);
  auto done = store_->Complete(CompleteRequest{mid.token, mid.events, 1, 1, {}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  ASSERT_EQ(done->deleted.size(), 10u);
  auto r = store_->ScanBacklog(BacklogScanRequest{10, 10, /*samples=*/5});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->live_scanned, 10);
  EXPECT_EQ(r->sample_span, 30);
  EXPECT_EQ(r->samples_taken, 5);
  // Probes at offsets 0, 6, 12, 18, 24 of the 30 seqs after the head: the
  // ones in 11..20 and 31..40 are live, 21..30 are gone.
  int64_t hits = 0;
  for (const MaskGroup& g : r->sampled) hits += g.events;
  EXPECT_EQ(hits, 3);
}

TEST_P(StoreConformanceTest, ScanCountsDeadRowsByDoneMaskApart) {
  Enqueue(*store_, Events(5, "a"));
  Lease l = Claim(*store_, 3);
  ASSERT_EQ(l.events.size(), 3u);
  std::vector<ClaimedEvent> first(l.events.begin(), l.events.begin() + 1);
  ASSERT_TRUE(store_->MarkDone(MarkDoneRequest{l.token, first, 1, {}}).ok());
  std::vector<int64_t> seqs;
  for (const auto& e : l.events) seqs.push_back(e.seq);
  auto f = store_->Fail(FailRequest{l.token, seqs, "consumer webhook: 400",
                                    BackoffPolicy{1, 1, 1, 0.0, 0}});
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->dead, 3);
  BacklogScan s = Scan(*store_);
  EXPECT_EQ(s.live_scanned, 2);
  EXPECT_EQ(s.dead_scanned, 3);
  EXPECT_TRUE(s.dead_complete);
  auto dead = ByMask(s.dead);
  EXPECT_EQ(dead[1].events, 1);
  EXPECT_EQ(dead[0].events, 2);
  EXPECT_GT(dead[0].oldest_ms, 0);
  BacklogScan limited = Scan(*store_, 1000, /*max_dead=*/2);
  EXPECT_FALSE(limited.dead_complete);
  EXPECT_EQ(limited.dead_scanned, 2);
}

TEST_P(StoreConformanceTest, ScanRejectsNonPositiveLimits) {
  EXPECT_EQ(store_->ScanBacklog(BacklogScanRequest{0, 10, 10}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(store_->ScanBacklog(BacklogScanRequest{10, 0, 10}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(store_->ScanBacklog(BacklogScanRequest{10, 10, 0}).status().code(),
            Code::kInvalidArgument);
}

TEST_P(StoreConformanceTest, PublishedReplicaStatsComeBackWithTheReplica) {
  ReplicaInfo r{"r1", "host-a", 101, "0.1.0", 0, 0, 0};
  ASSERT_TRUE(store_->RegisterReplica(r).ok());
  auto before = store_->ListReplicas(60000);
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(before->size(), 1u);
  EXPECT_EQ((*before)[0].stats, "");
  const int64_t first_beat = (*before)[0].heartbeat_ms;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto now = store_->NowMs();
        return now.ok() && *now > first_beat;
      },
      milliseconds(5000)));
  ASSERT_TRUE(store_->PublishReplicaStats("r1", "{\"v\":1,\"loops\":2}").ok());
  auto after = store_->ListReplicas(60000);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].stats, "{\"v\":1,\"loops\":2}");
  EXPECT_GT((*after)[0].heartbeat_ms, first_beat);  // it is a heartbeat too
  // Re-registering (a restart) keeps the row and its stats until the next publish.
  ASSERT_TRUE(store_->RegisterReplica(r).ok());
  EXPECT_EQ(store_->ListReplicas(60000)->at(0).stats, "{\"v\":1,\"loops\":2}");
}

TEST_P(StoreConformanceTest, PublishForAnUnknownReplicaIsNotFound) {
  EXPECT_EQ(store_->PublishReplicaStats("nobody", "{}").code(), Code::kNotFound);
}

TEST_P(StoreConformanceTest, PublishOverTheSizeLimitIsRefused) {
  ASSERT_TRUE(store_->RegisterReplica(ReplicaInfo{"r1", "h", 1, "v", 0, 0, 0}).ok());
  EXPECT_EQ(store_->PublishReplicaStats("r1", std::string(kMaxReplicaStatsBytes + 1, ' ')).code(),
            Code::kTooLarge);
}

TEST_P(StoreConformanceTest, DeadLettersFilterByErrorTextIgnoringCase) {
  Enqueue(*store_, Events(3, "a"));
  Lease a = Claim(*store_, 1);
  Lease b = Claim(*store_, 2);
  for (auto [lease, error] : {std::pair<Lease*, const char*>{&a, "consumer webhook: HTTP 400 Bad"},
                              {&b, "consumer archive: connection refused"}}) {
    std::vector<int64_t> seqs;
    for (const auto& e : lease->events) seqs.push_back(e.seq);
    ASSERT_TRUE(store_->Fail(FailRequest{lease->token, seqs, error, BackoffPolicy{1, 1, 1, 0.0, 0}})
                    .ok());
  }
  DeadFilter refused;
  refused.error = "REFUSED";
  auto listed = store_->ListDead(refused);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->size(), 2u);
  DeadFilter http;
  http.error = "http 400";
  EXPECT_EQ(store_->ListDead(http)->size(), 1u);
  DeadFilter both = http;
  both.consumer = "archive";
  EXPECT_TRUE(store_->ListDead(both)->empty());
  auto requeued = store_->RequeueDead(http);
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(*requeued, 1);
  auto purged = store_->PurgeDead(refused);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 2);
  EXPECT_TRUE(store_->ListDead(DeadFilter{})->empty());
}

}  // namespace
}  // namespace sluice
