// The Store conformance suite: written only against the Store interface, run
// for every store kind. sqlite is instantiated at the bottom of this file;
// postgres in store_conformance_pg_test.cc. The stale-effects part of the
// suite is in store_conformance_stale_test.cc, the dedup window's expiry in
// store_conformance_dedup_test.cc, its helpers in store_conformance_helpers.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/event.h"
#include "queue/store_conformance_fixture.h"
#include "queue/store_conformance_helpers.h"

namespace sluice {
namespace {

using namespace conformance;  // NOLINT(google-build-using-namespace): the suite's helpers

// ---- claim order, tokens ----

TEST_P(StoreConformanceTest, ClaimReturnsLowestSeqsFirstInOrder) {
  EXPECT_EQ(EnqueueOne(*store_, MakeEvents(10)).accepted, 10);
  Lease a = ClaimOk(*store_, "r1/0", 3);
  Lease b = ClaimOk(*store_, "r1/1", 4);
  ASSERT_EQ(a.events.size(), 3u);
  ASSERT_EQ(b.events.size(), 4u);
  auto sa = Seqs(a.events);
  auto sb = Seqs(b.events);
  EXPECT_TRUE(std::is_sorted(sa.begin(), sa.end()));
  EXPECT_TRUE(std::is_sorted(sb.begin(), sb.end()));
  EXPECT_LT(sa.back(), sb.front());
  EXPECT_EQ(a.events[0].insert_id, "id0");
  EXPECT_EQ(a.events[2].insert_id, "id2");
  EXPECT_EQ(b.events[0].insert_id, "id3");
  for (const auto& e : a.events) {
    EXPECT_EQ(e.attempts, 1);
    EXPECT_FALSE(e.reclaimed);
    EXPECT_EQ(e.done_mask, 0u);
    EXPECT_EQ(e.project, "p");
    EXPECT_FALSE(e.body.empty());
  }
  EXPECT_GT(a.token, 0);
  EXPECT_GT(b.token, a.token);
  EXPECT_GT(a.lease_until_ms, 0);
}

TEST_P(StoreConformanceTest, EmptyClaimReturnsTokenZeroAndNoRows) {
  Lease l = ClaimOk(*store_, "r1/0", 10);
  EXPECT_EQ(l.token, 0);
  EXPECT_TRUE(l.events.empty());
  EnqueueOne(*store_, MakeEvents(1));
  Lease a = ClaimOk(*store_, "r1/0", 10);
  Lease none = ClaimOk(*store_, "r1/1", 10);
  EXPECT_EQ(none.token, 0);
  EXPECT_TRUE(none.events.empty());
  EXPECT_EQ(a.events.size(), 1u);
}

TEST_P(StoreConformanceTest, TokensAreGloballyMonotonic) {
  EnqueueOne(*store_, MakeEvents(20));
  StorePtr other = OpenWith({});
  ASSERT_NE(other, nullptr);
  int64_t last = 0;
  for (int i = 0; i < 10; ++i) {
    Store& s = (i % 2 == 0) ? *store_ : *other;
    Lease l = ClaimOk(s, "r/" + std::to_string(i), 1);
    EXPECT_GT(l.token, last);
    last = l.token;
    auto named = s.AcquireNamedLease("duty" + std::to_string(i), "r", 10000);
    ASSERT_TRUE(named.ok());
    EXPECT_GT(*named, last);
    last = *named;
  }
}

TEST_P(StoreConformanceTest, ConcurrentClaimersNeverClaimTheSameRow) {
  constexpr int kEvents = 3000;
  std::vector<NewEvent> events = MakeEvents(kEvents);
  for (int off = 0; off < kEvents; off += 500) {
    EnqueueOne(*store_, std::vector<NewEvent>(events.begin() + off, events.begin() + off + 500));
  }
  StorePtr other = OpenWith({});
  ASSERT_NE(other, nullptr);
  std::mutex mu;
  std::map<int64_t, int> claimed;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Store& s = t % 2 == 0 ? *store_ : *other;
      const std::string owner = "r" + std::to_string(t % 2) + "/" + std::to_string(t);
      while (true) {
        auto lease = s.Claim(ClaimRequest{owner, 7 + t, 30000});
        if (!lease.ok()) {
          ++errors;
          continue;
        }
        if (lease->events.empty()) break;
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& e : lease->events) ++claimed[e.seq];
        }
        auto done = s.Complete(CompleteRequest{lease->token, lease->events, 0, 0, {}});
        if (!done.ok() || done->deleted.size() != lease->events.size()) ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(claimed.size(), static_cast<size_t>(kEvents));
  int dupes = 0;
  for (const auto& [seq, n] : claimed) dupes += n - 1;
  EXPECT_EQ(dupes, 0);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending + stats->leased + stats->dead, 0);
}

// ---- expiry, fencing ----

TEST_P(StoreConformanceTest, ExpiredLeaseIsReclaimedByTheNormalClaim) {
  EnqueueOne(*store_, MakeEvents(2));
  Lease a = ClaimOk(*store_, "r1/0", 10, 200);
  ASSERT_EQ(a.events.size(), 2u);
  EXPECT_TRUE(ClaimOk(*store_, "r2/0", 10).events.empty());  // live lease: skipped
  Lease b;
  ASSERT_TRUE(WaitUntil(
      [&] {
        b = ClaimOk(*store_, "r2/0", 10);
        return !b.events.empty();
      },
      kWait));
  EXPECT_GE(Now(*store_), a.lease_until_ms);
  ASSERT_EQ(b.events.size(), 2u);
  EXPECT_EQ(Seqs(b.events), Seqs(a.events));
  EXPECT_GT(b.token, a.token);
  for (const auto& e : b.events) {
    EXPECT_TRUE(e.reclaimed);
    EXPECT_EQ(e.attempts, 2);
  }
}

TEST_P(StoreConformanceTest, StaleTokenIsRefusedAfterTakeoverAndChangesNothing) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease a = ClaimOk(*store_, "r1/0", 10, 200);
  ASSERT_EQ(a.events.size(), 3u);
  WaitPast(*store_, a.lease_until_ms);
  Lease b = ClaimOk(*store_, "r2/0", 10, 30000);
  ASSERT_EQ(b.events.size(), 3u);

  std::atomic<int> calls{0};
  auto ext = store_->Extend(a.token, 30000);
  EXPECT_EQ(ext.status().code(), Code::kLeaseLost);
  auto md = MarkDoneBuilding(*store_, MarkDoneRequest{a.token, a.events, 4, {}},
                             {CounterWork(1, &calls)});
  EXPECT_EQ(md.status().code(), Code::kLeaseLost);
  auto cp = CompleteBuilding(*store_, CompleteRequest{a.token, a.events, 7, 4, {}},
                             {CounterWork(1, &calls)});
  EXPECT_EQ(cp.status().code(), Code::kLeaseLost);
  std::vector<int64_t> seqs = Seqs(a.events);
  auto fl = store_->Fail(FailRequest{a.token, seqs, "consumer x: boom", {}});
  EXPECT_EQ(fl.status().code(), Code::kLeaseLost);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 0);

  // B still holds every row, with no bit set by A.
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->leased, 3);
  auto bext = store_->Extend(b.token, 30000);
  EXPECT_TRUE(bext.ok()) << bext.status().ToString();
  auto bmd = store_->MarkDone(MarkDoneRequest{b.token, b.events, 4, {}});
  ASSERT_TRUE(bmd.ok());
  EXPECT_EQ(bmd->marked.size(), 3u);  // bit 4 was not set by A
  auto bcp = CompleteBuilding(*store_, CompleteRequest{b.token, b.events, 5, 0, {}},
                              {CounterWork(1, &calls)});
  ASSERT_TRUE(bcp.ok()) << bcp.status().ToString();
  EXPECT_EQ(bcp->deleted.size(), 3u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 3);
}

TEST_P(StoreConformanceTest, JustExpiredLeaseIsRefusedBeforeAnyTakeover) {
  EnqueueOne(*store_, MakeEvents(2));
  Lease a = ClaimOk(*store_, "r1/0", 10, 200);
  ASSERT_EQ(a.events.size(), 2u);
  WaitPast(*store_, a.lease_until_ms);
  EXPECT_EQ(store_->Extend(a.token, 30000).status().code(), Code::kLeaseLost);
  EXPECT_EQ(MarkDoneBuilding(*store_, MarkDoneRequest{a.token, a.events, 2, {}}, {CounterWork(1)})
                .status()
                .code(),
            Code::kLeaseLost);
  EXPECT_EQ(store_->Complete(CompleteRequest{a.token, a.events, 1, 1, {}}).status().code(),
            Code::kLeaseLost);
  std::vector<int64_t> seqs = Seqs(a.events);
  EXPECT_EQ(store_->Fail(FailRequest{a.token, seqs, "consumer x: late", {}}).status().code(),
            Code::kLeaseLost);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 0);
  // The rows are exactly as A left them: the next claim sees no bits and
  // counts this as the second attempt.
  Lease b = ClaimOk(*store_, "r2/0", 10);
  ASSERT_EQ(b.events.size(), 2u);
  for (const auto& e : b.events) {
    EXPECT_EQ(e.done_mask, 0u);
    EXPECT_EQ(e.attempts, 2);
    EXPECT_TRUE(e.reclaimed);
  }
}

TEST_P(StoreConformanceTest, ExtendKeepsTheLeaseAlive) {
  EnqueueOne(*store_, MakeEvents(1));
  Lease a = ClaimOk(*store_, "r1/0", 10, 300);
  auto until = store_->Extend(a.token, 60000);
  ASSERT_TRUE(until.ok()) << until.status().ToString();
  EXPECT_GT(*until, a.lease_until_ms);
  WaitPast(*store_, a.lease_until_ms);
  EXPECT_TRUE(ClaimOk(*store_, "r2/0", 10).events.empty());
  auto done = store_->Complete(CompleteRequest{a.token, a.events, 0, 0, {}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->deleted.size(), 1u);
}

TEST_P(StoreConformanceTest, AttemptsCountEveryClaimIncludingExpiryReclaims) {
  EnqueueOne(*store_, MakeEvents(1));
  for (int i = 1; i <= 3; ++i) {
    Lease l;
    ASSERT_TRUE(WaitUntil(
        [&] {
          l = ClaimOk(*store_, "r/" + std::to_string(i), 1, 150);
          return !l.events.empty();
        },
        kWait));
    EXPECT_EQ(l.events[0].attempts, i);
    EXPECT_EQ(l.events[0].reclaimed, i > 1);
  }
}

// ---- fail, backoff, dead letters ----

TEST_P(StoreConformanceTest, FailedRowIsInvisibleUntilItsBackoffPasses) {
  EnqueueOne(*store_, MakeEvents(2));
  Lease a = ClaimOk(*store_, "r1/0", 1);
  ASSERT_EQ(a.events.size(), 1u);
  std::vector<int64_t> seqs = Seqs(a.events);
  const int64_t before = Now(*store_);
  auto f = store_->Fail(
      FailRequest{a.token, seqs, "consumer users: boom", BackoffPolicy{300, 10000, 10, 0.0, 0}});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->retried, 1);
  EXPECT_EQ(f->dead, 0);
  // The other row is claimable at once; the failed one is not.
  Lease b = ClaimOk(*store_, "r1/0", 10);
  ASSERT_EQ(b.events.size(), 1u);
  EXPECT_NE(b.events[0].seq, seqs[0]);
  Lease c;
  ASSERT_TRUE(WaitUntil(
      [&] {
        c = ClaimOk(*store_, "r1/0", 10);
        return !c.events.empty();
      },
      kWait));
  EXPECT_GE(Now(*store_) - before, 300);
  ASSERT_EQ(c.events.size(), 1u);
  EXPECT_EQ(c.events[0].seq, seqs[0]);
  EXPECT_EQ(c.events[0].attempts, 2);
  EXPECT_FALSE(c.events[0].reclaimed);
}

TEST_P(StoreConformanceTest, BackoffGrowsExponentiallyAndIsCapped) {
  EnqueueOne(*store_, MakeEvents(1));
  const BackoffPolicy policy{100, 250, 10, 0.0, 0};
  const int64_t expected[] = {100, 200, 250};  // attempt 3 would be 400: capped
  Lease l = ClaimOk(*store_, "r/0", 1);
  ASSERT_EQ(l.events.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(l.events[0].attempts, i + 1);
    std::vector<int64_t> seqs = Seqs(l.events);
    const int64_t t0 = Now(*store_);
    ASSERT_TRUE(store_->Fail(FailRequest{l.token, seqs, "consumer c: e", policy}).ok());
    ASSERT_TRUE(WaitUntil(
        [&] {
          l = ClaimOk(*store_, "r/0", 1);
          return !l.events.empty();
        },
        kWait, milliseconds(2)));
    const int64_t waited = Now(*store_) - t0;
    EXPECT_GE(waited, expected[i]);
    EXPECT_LT(waited, expected[i] + 1500);
  }
}

TEST_P(StoreConformanceTest, RowGoesDeadAfterMaxAttemptsWithItsError) {
  EnqueueOne(*store_, MakeEvents(2));
  const BackoffPolicy policy{0, 0, 3, 0.0, 0};  // retry at once: no race with the clock
  int64_t seq = 0;
  for (int i = 1; i <= 3; ++i) {
    Lease l;
    ASSERT_TRUE(WaitUntil(
        [&] {
          l = ClaimOk(*store_, "r/0", 1);
          return !l.events.empty();
        },
        kWait));
    seq = l.events[0].seq;
    EXPECT_EQ(l.events[0].attempts, i);
    std::vector<int64_t> seqs = Seqs(l.events);
    auto f = store_->Fail(
        FailRequest{l.token, seqs, "consumer users: bad #" + std::to_string(i), policy});
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->dead, i == 3 ? 1 : 0);
    EXPECT_EQ(f->retried, i == 3 ? 0 : 1);
  }
  auto dead = store_->ListDead({});
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ((*dead)[0].seq, seq);
  EXPECT_EQ((*dead)[0].attempts, 3);
  EXPECT_EQ((*dead)[0].last_error, "consumer users: bad #3");
  EXPECT_EQ((*dead)[0].insert_id, "id0");
  EXPECT_GT((*dead)[0].died_at_ms, 0);
  // The rest flows on; the dead row is never claimed again.
  Lease rest = ClaimOk(*store_, "r/0", 10);
  ASSERT_EQ(rest.events.size(), 1u);
  EXPECT_EQ(rest.events[0].insert_id, "id1");
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dead, 1);
  EXPECT_EQ(stats->leased, 1);
  EXPECT_EQ(stats->pending, 0);
}

// Kills `events` (claimed under one lease) with `error`.
void KillAll(Store& s, const Lease& l, const std::string& error) {
  std::vector<int64_t> seqs = Seqs(l.events);
  auto f = s.Fail(FailRequest{l.token, seqs, error, BackoffPolicy{1, 1, 1, 0.0, 0}});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->dead, static_cast<int64_t>(seqs.size()));
}

// The watcher names every consumer that failed a row: "consumer a: ..; consumer b: ..".
TEST_P(StoreConformanceTest, DeadLetterFailedByTwoConsumersIsFoundUnderEach) {
  EnqueueOne(*store_, MakeEvents(2, "a", "p1"));
  Lease l = ClaimOk(*store_, "r/0", 2);
  KillAll(*store_, l, "consumer webhook: 500; consumer archive: timeout");
  for (const char* name : {"webhook", "archive"}) {
    auto found = store_->ListDead(DeadFilter{{}, "", name, 0});
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(found->size(), 2u) << name;
  }
  EXPECT_TRUE(store_->ListDead(DeadFilter{{}, "", "arch", 0})->empty());  // whole name only
  EXPECT_TRUE(store_->ListDead(DeadFilter{{}, "", "timeout", 0})->empty());
  auto requeued = store_->RequeueDead(DeadFilter{{}, "", "archive", 0});
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(*requeued, 2);
}

TEST_P(StoreConformanceTest, DeadLettersListRequeueAndPurgeByFilter) {
  EnqueueOne(*store_, MakeEvents(3, "a", "p1"));
  EnqueueOne(*store_, MakeEvents(3, "b", "p2"));
  Lease l1 = ClaimOk(*store_, "r/0", 3);  // p1
  // One consumer finished on p1's rows before they died: its bit is kept.
  ASSERT_TRUE(store_->MarkDone(MarkDoneRequest{l1.token, l1.events, 2, {}}).ok());
  KillAll(*store_, l1, "consumer webhook: 500");
  Lease l2 = ClaimOk(*store_, "r/0", 3);  // p2
  KillAll(*store_, l2, "consumer users: bad json");

  auto all = store_->ListDead({});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 6u);
  auto by_project = store_->ListDead(DeadFilter{{}, "p2", "", 0});
  ASSERT_TRUE(by_project.ok());
  ASSERT_EQ(by_project->size(), 3u);
  EXPECT_EQ((*by_project)[0].project, "p2");
  auto by_consumer = store_->ListDead(DeadFilter{{}, "", "webhook", 0});
  ASSERT_TRUE(by_consumer.ok());
  ASSERT_EQ(by_consumer->size(), 3u);
  EXPECT_EQ((*by_consumer)[0].done_mask, 2u);
  EXPECT_TRUE(store_->ListDead(DeadFilter{{}, "", "web", 0})->empty());  // whole name only
  auto limited = store_->ListDead(DeadFilter{{}, "", "", 2});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 2u);
  auto by_id = store_->ListDead(DeadFilter{{l2.events[1].seq}, "", "", 0});
  ASSERT_TRUE(by_id.ok());
  ASSERT_EQ(by_id->size(), 1u);
  EXPECT_EQ((*by_id)[0].seq, l2.events[1].seq);

  // Requeue by id, then by consumer.
  auto r1 = store_->RequeueDead(DeadFilter{{l2.events[0].seq}, "", "", 0});
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(*r1, 1);
  auto r2 = store_->RequeueDead(DeadFilter{{}, "", "webhook", 0});
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, 3);
  Lease again = ClaimOk(*store_, "r/1", 10);
  ASSERT_EQ(again.events.size(), 4u);
  for (const auto& e : again.events) {
    EXPECT_EQ(e.attempts, 1);  // reset to 0 by the requeue, +1 by this claim
    EXPECT_EQ(e.done_mask, e.project == "p1" ? 2u : 0u);
  }
  // Purge by project removes only that project's dead rows.
  auto p = store_->PurgeDead(DeadFilter{{}, "p1", "", 0});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, 0);  // p1's rows are live again
  auto p2 = store_->PurgeDead(DeadFilter{{}, "p2", "", 0});
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p2, 2);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dead, 0);
  EXPECT_EQ(stats->leased, 4);
}

// ---- mark done, complete, effects ----

TEST_P(StoreConformanceTest, CompleteAppliesEffectsOnceAndDeletesTheRows) {
  EnqueueOne(*store_, MakeEvents(5));
  Lease l = ClaimOk(*store_, "r/0", 10);
  std::atomic<int> calls{0};
  std::atomic<int> seen{0};
  auto c = CompleteBuilding(*store_, CompleteRequest{l.token, l.events, 1, 0, {}},
                            {CounterWork(1, &calls, &seen)});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->deleted.size(), 5u);
  EXPECT_TRUE(c->remaining.empty());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), 5);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 5);
  // The same request again: the rows are gone, nothing is applied twice.
  auto again = CompleteBuilding(*store_, CompleteRequest{l.token, l.events, 1, 0, {}},
                                {CounterWork(1, &calls, &seen)});
  EXPECT_EQ(again.status().code(), Code::kLeaseLost);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 5);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending + stats->leased, 0);
}

TEST_P(StoreConformanceTest, MarkDoneTwiceAppliesEffectsOnlyForNewlySetBits) {
  EnqueueOne(*store_, MakeEvents(4));
  Lease l = ClaimOk(*store_, "r/0", 10);
  std::atomic<int> calls{0};
  auto m1 = MarkDoneBuilding(*store_, MarkDoneRequest{l.token, l.events, 0, {}},
                             {CounterWork(1, &calls)});
  ASSERT_TRUE(m1.ok());
  EXPECT_EQ(m1->marked.size(), 4u);
  auto m2 = MarkDoneBuilding(*store_, MarkDoneRequest{l.token, l.events, 0, {}},
                             {CounterWork(1, &calls)});
  ASSERT_TRUE(m2.ok());
  EXPECT_TRUE(m2->marked.empty());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 4);
}

TEST_P(StoreConformanceTest, MarkDoneOfOneBitThenCompleteOfTheRest) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease l = ClaimOk(*store_, "r/0", 10);
  // External consumer (bit 4) succeeded; users (1) and counters (2) not yet.
  auto m = store_->MarkDone(MarkDoneRequest{l.token, l.events, 4, {}});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->marked.size(), 3u);
  // Complete with only bit 1: rows stay (bit 2 missing).
  auto c1 = CompleteBuilding(*store_, CompleteRequest{l.token, l.events, 7, 0, {}}, {UserWork(1)});
  ASSERT_TRUE(c1.ok()) << c1.status().ToString();
  EXPECT_TRUE(c1->deleted.empty());
  EXPECT_EQ(c1->remaining.size(), 3u);
  // Then the rest.
  std::atomic<int> calls{0};
  auto c2 = CompleteBuilding(*store_, CompleteRequest{l.token, l.events, 7, 0, {}},
                             {UserWork(1), CounterWork(2, &calls)});
  ASSERT_TRUE(c2.ok()) << c2.status().ToString();
  EXPECT_EQ(c2->deleted.size(), 3u);
  EXPECT_EQ(calls.load(), 1);
  auto u = store_->GetUser("p", "u0");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->events, 1);  // users applied once although passed twice
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 3);
}

TEST_P(StoreConformanceTest, RedeliveryAfterFailSkipsConsumersThatFinished) {
  EnqueueOne(*store_, MakeEvents(2));
  Lease l = ClaimOk(*store_, "r/0", 10);
  ASSERT_TRUE(
      MarkDoneBuilding(*store_, MarkDoneRequest{l.token, l.events, 0, {}}, {CounterWork(1)}).ok());
  std::vector<int64_t> seqs = Seqs(l.events);
  ASSERT_TRUE(
      store_
          ->Fail(FailRequest{l.token, seqs, "consumer archive: down", BackoffPolicy{1, 1, 10, 0.0, 0}})
          .ok());
  Lease r;
  ASSERT_TRUE(WaitUntil(
      [&] {
        r = ClaimOk(*store_, "r/1", 10);
        return !r.events.empty();
      },
      kWait));
  ASSERT_EQ(r.events.size(), 2u);
  for (const auto& e : r.events) EXPECT_EQ(e.done_mask, 1u);
  std::atomic<int> calls{0};
  auto c = CompleteBuilding(*store_, CompleteRequest{r.token, r.events, 3, 2, {}},
                            {CounterWork(1, &calls)});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->deleted.size(), 2u);
  EXPECT_EQ(calls.load(), 0);  // bit 1 was already set: no second application
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 2);
}

TEST_P(StoreConformanceTest, CompleteWithStaleTokenAppliesNothing) {
  EnqueueOne(*store_, MakeEvents(4));
  Lease a = ClaimOk(*store_, "r1/0", 10, 200);
  WaitPast(*store_, a.lease_until_ms);
  Lease b = ClaimOk(*store_, "r2/0", 10);
  ASSERT_EQ(b.events.size(), 4u);
  std::atomic<int> calls{0};
  auto stale = CompleteBuilding(*store_, CompleteRequest{a.token, a.events, 3, 0, {}},
                                {UserWork(2), CounterWork(1, &calls)});
  EXPECT_EQ(stale.status().code(), Code::kLeaseLost);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(store_->GetUser("p", "u0").status().code(), Code::kNotFound);
  auto ok = CompleteBuilding(*store_, CompleteRequest{b.token, b.events, 3, 0, {}},
                             {UserWork(2), CounterWork(1, &calls)});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->deleted.size(), 4u);
  EXPECT_EQ(CountTotal(*store_, "p", "view"), 4);
}

TEST_P(StoreConformanceTest, PartlyHeldBatchMarksOnlyTheHeldRows) {
  EnqueueOne(*store_, MakeEvents(3));
  Lease a = ClaimOk(*store_, "r1/0", 10);
  // Complete one row; then the full batch: that row is simply not held.
  std::vector<ClaimedEvent> first(a.events.begin(), a.events.begin() + 1);
  ASSERT_TRUE(store_->Complete(CompleteRequest{a.token, first, 0, 0, {}}).ok());
  std::atomic<int> seen{0};
  auto c = CompleteBuilding(*store_, CompleteRequest{a.token, a.events, 1, 0, {}},
                            {CounterWork(1, nullptr, &seen)});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->deleted.size(), 2u);
  EXPECT_EQ(seen.load(), 2);
}

// ---- enqueue, dedup ----

TEST_P(StoreConformanceTest, DuplicatesWithinTheWindowAreStoredOnce) {
  std::vector<NewEvent> events = MakeEvents(5);
  EXPECT_EQ(EnqueueOne(*store_, events).accepted, 5);
  EnqueueResult again = EnqueueOne(*store_, events);
  EXPECT_EQ(again.accepted, 0);
  EXPECT_EQ(again.duplicates, 5);
  // Same insert_id in another project is another event.
  EXPECT_EQ(EnqueueOne(*store_, MakeEvents(2, "id", "q")).accepted, 2);
  // Duplicates inside one batch and across batches of one group.
  std::vector<NewEvent> twice = {{"p", "x", Body("e", "u", kT0)}, {"p", "x", Body("e", "u", kT0)}};
  std::vector<NewEvent> third = {{"p", "x", Body("e", "u", kT0)}, {"p", "y", Body("e", "u", kT0)}};
  EnqueueBatch batches[] = {{twice}, {third}};
  auto r = store_->Enqueue(batches);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].accepted, 1);
  EXPECT_EQ((*r)[0].duplicates, 1);
  EXPECT_EQ((*r)[1].accepted, 1);
  EXPECT_EQ((*r)[1].duplicates, 1);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 9);
}

TEST_P(StoreConformanceTest, EnqueueStoresAllBatchesOrNothing) {
  ASSERT_EQ(testing::InjectEnqueueFailure(GetParam(), url_, "poison"), "");
  std::vector<NewEvent> good = MakeEvents(3, "g");
  std::vector<NewEvent> bad = MakeEvents(2, "b");
  bad.push_back({"p", "poison", Body("e", "u", kT0)});
  EnqueueBatch batches[] = {{good}, {bad}};
  auto r = store_->Enqueue(batches);
  EXPECT_FALSE(r.ok());
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 0);
  // The dedup entries were rolled back too: the good events are new.
  EXPECT_EQ(EnqueueOne(*store_, good).accepted, 3);
  EXPECT_EQ(EnqueueOne(*store_, MakeEvents(2, "b")).accepted, 2);
}

// ---- named leases ----

TEST_P(StoreConformanceTest, NamedLeaseIsExclusiveUntilItExpires) {
  auto a = store_->AcquireNamedLease("prune", "r1", 250);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(store_->AcquireNamedLease("prune", "r2", 250).status().code(), Code::kBusy);
  auto renew = store_->AcquireNamedLease("prune", "r1", 250);
  ASSERT_TRUE(renew.ok());
  EXPECT_EQ(*renew, *a);                                         // renewal keeps the token
  auto other = store_->AcquireNamedLease("compact", "r2", 250);  // other names are independent
  ASSERT_TRUE(other.ok());
  Result<int64_t> b = Status::Busy("");
  ASSERT_TRUE(WaitUntil(
      [&] {
        b = store_->AcquireNamedLease("prune", "r2", 30000);
        return b.ok();
      },
      kWait));
  EXPECT_GT(*b, *a);
  EXPECT_EQ(store_->MaintainDedup(*a).status().code(), Code::kLeaseLost);
  EXPECT_TRUE(store_->MaintainDedup(*b).ok());
  EXPECT_EQ(store_->ReleaseNamedLease("prune", *a).code(), Code::kLeaseLost);
  EXPECT_TRUE(store_->ReleaseNamedLease("prune", *b).ok());
  auto c = store_->AcquireNamedLease("prune", "r1", 30000);
  ASSERT_TRUE(c.ok());
  EXPECT_GT(*c, *b);
}

// ---- aggregates ----

TEST_P(StoreConformanceTest, GetUserReturnsExactMergedProfile) {
  EXPECT_EQ(store_->GetUser("p", "alice").status().code(), Code::kNotFound);
  std::vector<NewEvent> first = {
      {"p", "1", Body("login", "alice", kT0 + 5000, R"({"plan":"free","n":1})", R"({"src":"ad"})")},
      {"p", "2", Body("view", "alice", kT0 + 1000, "", R"({"src":"seo","ref":"x"})")},
  };
  std::vector<NewEvent> second = {
      {"p", "3", Body("view", "alice", kT0 + 9000, R"({"plan":"pro"})", R"({"src":"late"})")},
      {"q", "4", Body("view", "alice", kT0, R"({"other":"project"})")},
  };
  EnqueueOne(*store_, first);
  Lease l1 = ClaimOk(*store_, "r/0", 10);
  ASSERT_TRUE(
      CompleteBuilding(*store_, CompleteRequest{l1.token, l1.events, 1, 0, {}}, {UserWork(1)})
          .ok());
  EnqueueOne(*store_, second);
  Lease l2 = ClaimOk(*store_, "r/0", 10);
  ASSERT_TRUE(
      CompleteBuilding(*store_, CompleteRequest{l2.token, l2.events, 1, 0, {}}, {UserWork(1)})
          .ok());

  auto u = store_->GetUser("p", "alice");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->project, "p");
  EXPECT_EQ(u->user_id, "alice");
  EXPECT_EQ(u->first_seen_ms, kT0 + 1000);
  EXPECT_EQ(u->last_seen_ms, kT0 + 9000);
  EXPECT_EQ(u->events, 3);
  ASSERT_EQ(u->event_counts.size(), 2u);
  EXPECT_EQ(u->event_counts[0], (std::pair<std::string, int64_t>{"login", 1}));
  EXPECT_EQ(u->event_counts[1], (std::pair<std::string, int64_t>{"view", 2}));
  // $set: the latest event time wins; $set_once: the earliest event time
  // (event 2, in the first batch but older than event 1); keys sorted.
  EXPECT_EQ(u->properties, R"({"n":1,"plan":"pro","ref":"x","src":"seo"})");
  EXPECT_EQ(u->ids, std::vector<std::string>{"alice"});
  EXPECT_TRUE(u->merges_refused.empty());
  auto q = store_->GetUser("q", "alice");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->events, 1);
  EXPECT_EQ(q->properties, R"({"other":"project"})");
}

TEST_P(StoreConformanceTest, QueryCountersReturnsExactCountsAndDistinctUsers) {
  const int64_t m0 = BucketStartMs(Granularity::kMinute, kT0);
  std::vector<NewEvent> a = {
      {"p", "1", Body("buy", "u1", m0 + 1000)},  {"p", "2", Body("buy", "u2", m0 + 2000)},
      {"p", "3", Body("buy", "u1", m0 + 3000)},  {"p", "4", Body("buy", "u1", m0 + 61000)},
      {"p", "5", Body("view", "u1", m0 + 1000)},
  };
  std::vector<NewEvent> b = {
      {"p", "6", Body("buy", "u2", m0 + 4000)},
      {"p", "7", Body("buy", "u3", m0 + 5000)},
      {"q", "8", Body("buy", "u1", m0 + 6000)},
  };
  for (const auto* batch : {&a, &b}) {
    EnqueueOne(*store_, *batch);
    Lease l = ClaimOk(*store_, "r/0", 100);
    auto c =
        CompleteBuilding(*store_, CompleteRequest{l.token, l.events, 1, 0, {}}, {CounterWork(1)});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }
  auto minute =
      store_->QueryCounters(CounterQuery{"p", "buy", Granularity::kMinute, m0, m0 + 120000});
  ASSERT_TRUE(minute.ok());
  ASSERT_EQ(minute->size(), 2u);
  EXPECT_EQ((*minute)[0].bucket_ms, m0);
  EXPECT_EQ((*minute)[0].count, 5);
  EXPECT_EQ((*minute)[0].users, 3);  // u1, u2, u3 across two batches
  EXPECT_EQ((*minute)[1].bucket_ms, m0 + 60000);
  EXPECT_EQ((*minute)[1].count, 1);
  EXPECT_EQ((*minute)[1].users, 1);
  // [from, to): the second minute is excluded.
  auto first_only =
      store_->QueryCounters(CounterQuery{"p", "buy", Granularity::kMinute, m0, m0 + 60000});
  ASSERT_TRUE(first_only.ok());
  EXPECT_EQ(first_only->size(), 1u);
  // All projects summed.
  auto all = store_->QueryCounters(CounterQuery{"", "buy", Granularity::kMinute, m0, m0 + 60000});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].count, 6);
  EXPECT_EQ((*all)[0].users, 4);  // per-project distinct users, summed
  const int64_t d0 = BucketStartMs(Granularity::kDay, kT0);
  auto day = store_->QueryCounters(CounterQuery{"p", "buy", Granularity::kDay, d0, d0 + 1});
  ASSERT_TRUE(day.ok());
  ASSERT_EQ(day->size(), 1u);
  EXPECT_EQ((*day)[0].count, 6);
  EXPECT_EQ((*day)[0].users, 3);
  auto hour = store_->QueryCounters(CounterQuery{"p", "view", Granularity::kHour, 0, kT0 * 2});
  ASSERT_TRUE(hour.ok());
  ASSERT_EQ(hour->size(), 1u);
  EXPECT_EQ((*hour)[0].count, 1);
}

// ---- replicas, stats ----

TEST_P(StoreConformanceTest, ReplicasShowHeartbeatAndLeasesHeld) {
  ReplicaInfo r1{"r1", "host-a", 101, "0.1.0", 0, 0, 0};
  ReplicaInfo r10{"r10", "host-b", 102, "0.1.0", 0, 0, 0};
  ASSERT_TRUE(store_->RegisterReplica(r1).ok());
  ASSERT_TRUE(store_->RegisterReplica(r10).ok());
  EnqueueOne(*store_, MakeEvents(5));
  ClaimOk(*store_, "r1/0", 2);
  ClaimOk(*store_, "r1/1", 1);
  ClaimOk(*store_, "r10/0", 1);
  ASSERT_TRUE(store_->HeartbeatReplica("r1").ok());
  EXPECT_EQ(store_->HeartbeatReplica("nope").code(), Code::kNotFound);
  auto list = store_->ListReplicas(60000);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "r1");
  EXPECT_EQ((*list)[0].host, "host-a");
  EXPECT_EQ((*list)[0].pid, 101);
  EXPECT_EQ((*list)[0].leases_held, 3);
  EXPECT_GT((*list)[0].heartbeat_ms, 0);
  EXPECT_GT((*list)[0].started_ms, 0);
  EXPECT_EQ((*list)[1].id, "r10");
  EXPECT_EQ((*list)[1].leases_held, 1);
  ASSERT_TRUE(store_->RemoveReplica("r10").ok());
  list = store_->ListReplicas(60000);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  // A replica whose heartbeat is older than the window is not listed.
  const int64_t t = Now(*store_);
  ASSERT_TRUE(WaitUntil([&] { return Now(*store_) > t + 50; }, kWait));
  list = store_->ListReplicas(20);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(StoreConformanceTest, StatsCountStatesAndOldestPendingAge) {
  auto empty = store_->Stats();
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->pending + empty->leased + empty->dead, 0);
  EXPECT_EQ(empty->oldest_pending_age_ms, 0);
  EnqueueOne(*store_, MakeEvents(6));
  const int64_t t = Now(*store_);
  Lease l = ClaimOk(*store_, "r/0", 2);
  Lease d = ClaimOk(*store_, "r/0", 1);
  KillAll(*store_, d, "consumer x: y");
  ASSERT_TRUE(WaitUntil([&] { return Now(*store_) > t + 30; }, kWait));
  auto s = store_->Stats();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->pending, 3);
  EXPECT_EQ(s->leased, 2);
  EXPECT_EQ(s->dead, 1);
  EXPECT_GT(s->oldest_pending_age_ms, 30);
  EXPECT_LT(s->oldest_pending_age_ms, 60000);
}

TEST_P(StoreConformanceTest, StoreClockIsEpochMilliseconds) {
  auto now = store_->NowMs();
  ASSERT_TRUE(now.ok());
  const int64_t wall =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_LT(std::llabs(*now - wall), 60000);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreConformanceTest, ::testing::Values("sqlite"));

}  // namespace sluice
