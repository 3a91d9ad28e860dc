// The Store conformance suite, continued: keyed jobs (queue/jobs.h). Job
// deltas are applied by the fenced Complete of an event batch (as the job
// consumer's effects); runs are claimed, extended, completed and failed with
// the queue's protocol. Timing runs on the database clock with short delays.
// Instantiated with the rest of the suite (store_conformance_test.cc:
// sqlite, store_conformance_pg_test.cc: postgres).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "queue/store_conformance_fixture.h"
#include "queue/store_conformance_helpers.h"
#include "testkit/testkit.h"

namespace sluice {
namespace {

using namespace conformance;  // NOLINT(google-build-using-namespace): the suite's helpers

constexpr uint64_t kJobBit = uint64_t{1} << 5;
const std::vector<std::string> kJobs = {"rescore"};

JobRef Ref(const std::string& key) { return JobRef{"rescore", "p", key}; }

// Enqueues `events` events and completes them with one job delta for `key`
// (as the job consumer builds it), like the watcher does.
void Schedule(Store& s, const std::string& key, int events, int64_t delay_ms,
              int64_t max_delay_ms) {
  static int batch = 0;
  EnqueueOne(s, MakeEvents(events, "b" + std::to_string(batch++) + "-"));
  Lease l = ClaimOk(s, "w", 1000);
  ASSERT_EQ(l.events.size(), static_cast<size_t>(events));
  CompleteRequest req{l.token, l.events, kJobBit, 0, {}};
  InStoreEffects part{.bit = kJobBit, .effects = {}};
  part.effects.jobs.push_back(JobDelta{"rescore", "p", key, events, kT0, kT0 + events,
                                       delay_ms, max_delay_ms});
  req.in_store.push_back(std::move(part));
  auto r = s.Complete(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_FALSE(r->stale);
}

RunLease ClaimRuns(Store& s, const std::string& owner, int64_t ttl_ms = 30000) {
  auto r = s.ClaimJobRuns(JobClaimRequest{owner, kJobs, 16, ttl_ms});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : RunLease{};
}

JobRow Row(Store& s, const std::string& key) {
  JobFilter f;
  f.job = "rescore";
  f.key = key;
  auto rows = s.ListJobs(f);
  EXPECT_TRUE(rows.ok()) << rows.status().ToString();
  if (!rows.ok() || rows->size() != 1) {
    ADD_FAILURE() << "no single row for " << key;
    return JobRow{};
  }
  return rows->front();
}

TEST_P(StoreConformanceTest, JobDeltasOfManyBatchesBeforeTheRunMakeOneRun) {
  Schedule(*store_, "u1", 2, 0, 0);
  Schedule(*store_, "u1", 3, 0, 0);
  Schedule(*store_, "u1", 1, 0, 0);
  Schedule(*store_, "u2", 4, 0, 0);
  RunLease l = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l.runs.size(), 2u);
  EXPECT_GT(l.token, 0);
  for (const ClaimedRun& run : l.runs) {
    EXPECT_EQ(run.run, 1);
    EXPECT_EQ(run.attempts, 1);
    EXPECT_EQ(run.events, run.ref.key == "u1" ? 6 : 4) << run.ref.key;
    EXPECT_EQ(run.first_event_ms, kT0);
  }
  EXPECT_TRUE(ClaimRuns(*store_, "r/1").runs.empty()) << "a leased run is not claimed twice";
}

TEST_P(StoreConformanceTest, BatchCompletedWithAStaleTokenSchedulesNothing) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease stale = ClaimOk(*store_, "a", 10, 200);
  WaitPast(*store_, stale.lease_until_ms);
  Lease fresh = ClaimOk(*store_, "b", 10);
  ASSERT_EQ(fresh.events.size(), 3u);
  auto complete = [&](const Lease& l) {
    CompleteRequest req{l.token, l.events, kJobBit, 0, {}};
    InStoreEffects part{.bit = kJobBit, .effects = {}};
    part.effects.jobs.push_back(JobDelta{"rescore", "p", "u1", 3, kT0, kT0, 0, 0});
    req.in_store.push_back(std::move(part));
    return store_->Complete(req);
  };
  EXPECT_EQ(complete(stale).status().code(), Code::kLeaseLost);
  auto none = store_->ListJobs(JobFilter{});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "the stale batch scheduled a run";
  ASSERT_TRUE(complete(fresh).ok());
  EXPECT_EQ(Row(*store_, "u1").pending_events, 3);
  // The batch is gone: a redelivery cannot schedule it again.
  EXPECT_TRUE(ClaimOk(*store_, "c", 10).events.empty());
}

TEST_P(StoreConformanceTest, DebounceMakesTheRunDueOnlyOnceTheKeyIsQuiet) {
  constexpr int64_t kDelay = 800;
  const int64_t before1 = Now(*store_);
  Schedule(*store_, "u1", 1, kDelay, 60000);
  const int64_t after1 = Now(*store_);
  JobRow r1 = Row(*store_, "u1");
  EXPECT_EQ(r1.state, "pending");
  EXPECT_GE(r1.visible_at_ms, before1 + kDelay);
  EXPECT_LE(r1.visible_at_ms, after1 + kDelay);
  EXPECT_EQ(r1.visible_at_ms, r1.pending_since_ms + kDelay);
  // Another event 300 ms later moves the due time: quiet since then.
  ASSERT_TRUE(WaitUntil([&] { return Now(*store_) >= before1 + 300; }, kWait));
  const int64_t before2 = Now(*store_);
  Schedule(*store_, "u1", 1, kDelay, 60000);
  JobRow r2 = Row(*store_, "u1");
  EXPECT_GE(r2.visible_at_ms, before2 + kDelay);
  EXPECT_EQ(r2.pending_since_ms, r1.pending_since_ms) << "the first pending upsert is kept";
  EXPECT_EQ(r2.pending_events, 2);
  // Not claimable before its due time (store clock)...
  if (Now(*store_) < r2.visible_at_ms - 100) {
    EXPECT_TRUE(ClaimRuns(*store_, "r/0").runs.empty());
  }
  // ... then once, with both events.
  RunLease l;
  ASSERT_TRUE(WaitUntil([&] { return !(l = ClaimRuns(*store_, "r/0")).runs.empty(); }, kWait));
  EXPECT_GE(Now(*store_), r2.visible_at_ms);
  ASSERT_EQ(l.runs.size(), 1u);
  EXPECT_EQ(l.runs[0].events, 2);
}

TEST_P(StoreConformanceTest, MaxDelayCapsTheDebounceOfAKeyThatNeverGoesQuiet) {
  constexpr int64_t kDelay = 400, kMaxDelay = 1200;
  Schedule(*store_, "u1", 1, kDelay, kMaxDelay);
  const int64_t since = Row(*store_, "u1").pending_since_ms;
  RunLease l;
  int scheduled = 1;
  // An event every ~100 ms: the debounce alone would never fire.
  while (l.runs.empty()) {
    const int64_t now = Now(*store_);
    ASSERT_LT(now, since + kMaxDelay + 2000) << "the run never became due";
    Schedule(*store_, "u1", 1, kDelay, kMaxDelay);
    ++scheduled;
    const JobRow r = Row(*store_, "u1");
    if (r.state == "pending") {
      EXPECT_LE(r.visible_at_ms, since + kMaxDelay);
      EXPECT_EQ(r.visible_at_ms, std::min(r.pending_due_ms, since + kMaxDelay));
    }
    l = ClaimRuns(*store_, "r/0");
    if (l.runs.empty()) {
      const int64_t t = Now(*store_);
      WaitUntil([&] { return Now(*store_) >= t + 100; }, kWait);
    }
  }
  ASSERT_EQ(l.runs.size(), 1u);
  EXPECT_GE(Now(*store_), since + kMaxDelay) << "due before max_delay: the debounce was ignored";
  EXPECT_EQ(l.runs[0].events, scheduled);
}

TEST_P(StoreConformanceTest, EventsArrivingDuringARunGoToTheNextRunDueWhenItCompletes) {
  Schedule(*store_, "u1", 2, 0, 0);
  RunLease first = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(first.runs.size(), 1u);
  EXPECT_EQ(first.runs[0].events, 2);
  Schedule(*store_, "u1", 3, 0, 0);
  EXPECT_EQ(Row(*store_, "u1").pending_events, 3);
  EXPECT_EQ(Row(*store_, "u1").run_events, 2) << "the run's content is frozen";
  EXPECT_TRUE(ClaimRuns(*store_, "r/1").runs.empty()) << "one run per key at a time";
  ASSERT_TRUE(store_->CompleteJobRun(first.token, Ref("u1")).ok());
  JobRow after = Row(*store_, "u1");
  EXPECT_EQ(after.state, "pending");
  EXPECT_EQ(after.run, 2);
  RunLease second = ClaimRuns(*store_, "r/1");
  ASSERT_EQ(second.runs.size(), 1u);
  EXPECT_EQ(second.runs[0].run, 2);
  EXPECT_EQ(second.runs[0].events, 3);
  EXPECT_GT(second.token, first.token);
  ASSERT_TRUE(store_->CompleteJobRun(second.token, Ref("u1")).ok());
  EXPECT_EQ(Row(*store_, "u1").state, "idle");
  EXPECT_EQ(Row(*store_, "u1").runs_done, 2);
  // A new event for an idle key schedules run 3.
  Schedule(*store_, "u1", 1, 0, 0);
  RunLease third = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(third.runs.size(), 1u);
  EXPECT_EQ(third.runs[0].run, 3);
  EXPECT_EQ(third.runs[0].events, 1);
}

TEST_P(StoreConformanceTest, RetriedRunKeepsItsNumberAndContentWhileNewEventsWait) {
  Schedule(*store_, "u1", 2, 0, 0);
  RunLease first = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(first.runs.size(), 1u);
  Schedule(*store_, "u1", 3, 0, 0);
  BackoffPolicy now_again{.base_ms = 0, .cap_ms = 0, .max_attempts = 5, .jitter = 0};
  auto failed = store_->FailJobRun(first.token, Ref("u1"), "job rescore: 503", now_again);
  ASSERT_TRUE(failed.ok()) << failed.status().ToString();
  EXPECT_EQ(failed->retried, 1);
  EXPECT_EQ(Row(*store_, "u1").last_error, "job rescore: 503");
  RunLease retry = ClaimRuns(*store_, "r/1");
  ASSERT_EQ(retry.runs.size(), 1u);
  EXPECT_EQ(retry.runs[0].run, 1) << "a retry is the same run (same Idempotency-Key)";
  EXPECT_EQ(retry.runs[0].events, 2) << "events that arrived meanwhile wait for run 2";
  EXPECT_EQ(retry.runs[0].attempts, 2);
  ASSERT_TRUE(store_->CompleteJobRun(retry.token, Ref("u1")).ok());
  RunLease next = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(next.runs.size(), 1u);
  EXPECT_EQ(next.runs[0].run, 2);
  EXPECT_EQ(next.runs[0].events, 3);
}

TEST_P(StoreConformanceTest, FailedRunIsInvisibleUntilItsBackoffPasses) {
  Schedule(*store_, "u1", 1, 0, 0);
  RunLease l = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l.runs.size(), 1u);
  BackoffPolicy later{.base_ms = 700, .cap_ms = 700, .max_attempts = 5, .jitter = 0};
  const int64_t failed_at = Now(*store_);
  ASSERT_TRUE(store_->FailJobRun(l.token, Ref("u1"), "x", later).ok());
  EXPECT_GE(Row(*store_, "u1").visible_at_ms, failed_at + 700);
  if (Now(*store_) < failed_at + 600) {
    EXPECT_TRUE(ClaimRuns(*store_, "r/0").runs.empty());
  }
  RunLease again;
  ASSERT_TRUE(WaitUntil([&] { return !(again = ClaimRuns(*store_, "r/0")).runs.empty(); }, kWait));
  EXPECT_GE(Now(*store_), failed_at + 700);
}

TEST_P(StoreConformanceTest, StaleRunTokenIsRefusedAfterTakeoverAndChangesNothing) {
  Schedule(*store_, "u1", 2, 0, 0);
  RunLease stale = ClaimRuns(*store_, "a", 200);
  ASSERT_EQ(stale.runs.size(), 1u);
  // Just expired, not yet taken over: already refused.
  WaitPast(*store_, stale.lease_until_ms);
  EXPECT_EQ(store_->CompleteJobRun(stale.token, Ref("u1")).code(), Code::kLeaseLost);
  EXPECT_EQ(store_->ExtendJobRuns(stale.token, 30000).status().code(), Code::kLeaseLost);
  RunLease fresh = ClaimRuns(*store_, "b");
  ASSERT_EQ(fresh.runs.size(), 1u);
  EXPECT_TRUE(fresh.runs[0].reclaimed);
  EXPECT_EQ(fresh.runs[0].run, 1);
  EXPECT_EQ(fresh.runs[0].events, 2);
  EXPECT_EQ(fresh.runs[0].attempts, 2);
  EXPECT_GT(fresh.token, stale.token);
  // A late success or failure of the old holder changes nothing.
  EXPECT_EQ(store_->CompleteJobRun(stale.token, Ref("u1")).code(), Code::kLeaseLost);
  EXPECT_EQ(store_->FailJobRun(stale.token, Ref("u1"), "late", BackoffPolicy{}).status().code(),
            Code::kLeaseLost);
  JobRow r = Row(*store_, "u1");
  EXPECT_EQ(r.state, "leased");
  EXPECT_EQ(r.runs_done, 0);
  EXPECT_EQ(r.lease_owner, "b");
  auto extended = store_->ExtendJobRuns(fresh.token, 30000);
  ASSERT_TRUE(extended.ok()) << extended.status().ToString();
  ASSERT_TRUE(store_->CompleteJobRun(fresh.token, Ref("u1")).ok());
  EXPECT_EQ(Row(*store_, "u1").runs_done, 1);
}

// The control: the test kit's UnfencedStore accepts the stale holder's late
// completion, which the check above catches (the run is reported done while
// its new holder is still on it).
TEST_P(StoreConformanceTest, ControlUnfencedStoreLetsAStaleRunCompleteAndIsCaught) {
  StoreOptions o;
  o.url = url_;
  auto unfenced = ApplyTestOnlySettings(OpenWith({}), o, {{"store.fencing", "false"}});
  ASSERT_TRUE(unfenced.ok()) << unfenced.status().ToString();
  Store& broken = **unfenced;
  Schedule(broken, "u1", 2, 0, 0);
  RunLease stale = ClaimRuns(broken, "a", 200);
  ASSERT_EQ(stale.runs.size(), 1u);
  WaitPast(broken, stale.lease_until_ms);
  RunLease fresh = ClaimRuns(broken, "b");
  ASSERT_EQ(fresh.runs.size(), 1u);
  EXPECT_TRUE(broken.CompleteJobRun(stale.token, Ref("u1")).ok())
      << "the broken store refused the stale token after all";
  EXPECT_EQ(Row(broken, "u1").runs_done, 1) << "the stale completion went through";
}

TEST_P(StoreConformanceTest, RunGoesDeadAfterMaxAttemptsAndTheKeyRunsOn) {
  Schedule(*store_, "u1", 2, 0, 0);
  BackoffPolicy twice{.base_ms = 0, .cap_ms = 0, .max_attempts = 2, .jitter = 0};
  RunLease l1 = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l1.runs.size(), 1u);
  Schedule(*store_, "u1", 1, 0, 0);  // waits for run 2
  ASSERT_EQ(store_->FailJobRun(l1.token, Ref("u1"), "job rescore: 500", twice)->retried, 1);
  RunLease l2 = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l2.runs.size(), 1u);
  auto dead = store_->FailJobRun(l2.token, Ref("u1"), "job rescore: 500 again", twice);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  EXPECT_EQ(dead->dead, 1);
  auto listed = store_->ListDeadRuns(JobFilter{});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  const DeadRun& d = listed->front();
  EXPECT_EQ(d.ref, Ref("u1"));
  EXPECT_EQ(d.run, 1);
  EXPECT_EQ(d.events, 2);
  EXPECT_EQ(d.attempts, 2);
  EXPECT_EQ(d.last_error, "job rescore: 500 again");
  // The key is not blocked: run 2 (the event that arrived meanwhile) is due.
  RunLease l3 = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l3.runs.size(), 1u);
  EXPECT_EQ(l3.runs[0].run, 2);
  EXPECT_EQ(l3.runs[0].events, 1);
  // Requeued while run 2 is leased: the dead run's events wait for run 3.
  auto stats = store_->JobStatsByName();
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ(stats->front().dead, 1);
  EXPECT_EQ(stats->front().leased, 1);
  JobFilter by_id;
  by_id.ids = {d.id};
  ASSERT_EQ(*store_->RequeueDeadRuns(by_id), 1);
  EXPECT_TRUE(store_->ListDeadRuns(JobFilter{})->empty());
  ASSERT_TRUE(store_->CompleteJobRun(l3.token, Ref("u1")).ok());
  RunLease l4 = ClaimRuns(*store_, "r/0");
  ASSERT_EQ(l4.runs.size(), 1u);
  EXPECT_EQ(l4.runs[0].run, 3);
  EXPECT_EQ(l4.runs[0].events, 2);
  // Purge removes dead runs for good.
  BackoffPolicy once{.base_ms = 0, .cap_ms = 0, .max_attempts = 1, .jitter = 0};
  ASSERT_EQ(store_->FailJobRun(l4.token, Ref("u1"), "x", once)->dead, 1);
  JobFilter by_job;
  by_job.job = "rescore";
  EXPECT_EQ(*store_->PurgeDeadRuns(by_job), 1);
  EXPECT_TRUE(store_->ListDeadRuns(JobFilter{})->empty());
  EXPECT_EQ(Row(*store_, "u1").state, "idle");
}

TEST_P(StoreConformanceTest, RunTokensComeFromTheEventLeasesCounterAndClaimNamesOnlyItsJobs) {
  Schedule(*store_, "u1", 1, 0, 0);
  EnqueueOne(*store_, MakeEvents(1, "later-"));
  Lease events = ClaimOk(*store_, "w", 10);
  auto other = store_->ClaimJobRuns(JobClaimRequest{"r", {"other"}, 16, 30000});
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->runs.empty()) << "a claim takes only the jobs it names";
  EXPECT_EQ(other->token, 0) << "an empty claim burns no token";
  RunLease runs = ClaimRuns(*store_, "r");
  ASSERT_EQ(runs.runs.size(), 1u);
  EXPECT_GT(runs.token, events.token);
  Lease more = ClaimOk(*store_, "w", 10);
  EnqueueOne(*store_, MakeEvents(1, "last-"));
  more = ClaimOk(*store_, "w", 10);
  EXPECT_GT(more.token, runs.token);
}

TEST_P(StoreConformanceTest, ConcurrentRunClaimersNeverClaimTheSameRun) {
  for (int i = 0; i < 40; ++i) Schedule(*store_, "k" + std::to_string(i), 1, 0, 0);
  std::vector<StorePtr> handles;
  for (int i = 0; i < 4; ++i) handles.push_back(OpenWith({}));
  std::vector<std::vector<std::string>> got(handles.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < handles.size(); ++i) {
    threads.emplace_back([&, i] {
      while (true) {
        auto l = handles[i]->ClaimJobRuns(JobClaimRequest{"r" + std::to_string(i), kJobs, 3, 30000});
        if (!l.ok() || l->runs.empty()) return;
        for (const ClaimedRun& r : l->runs) got[i].push_back(r.ref.key);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> all;
  size_t total = 0;
  for (const auto& keys : got) {
    total += keys.size();
    all.insert(keys.begin(), keys.end());
  }
  EXPECT_EQ(total, 40u);
  EXPECT_EQ(all.size(), 40u);
}

}  // namespace
}  // namespace sluice
