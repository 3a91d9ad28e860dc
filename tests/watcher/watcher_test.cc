// Watcher against the real SQLite store: claim loops, per-consumer progress,
// failure isolation, dead letters, lease loss (fencing), drain and wake.
#include "watcher/watcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/metrics.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/users/users_consumer.h"
#include "queue/open/open_store.h"
#include "queue/store_wrapper.h"
#include "testing/decoded.h"
#include "testing/testing.h"
#include "testkit/flaky_consumer.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::WaitUntil;

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z
constexpr int64_t kHourMs = 3'600'000;
constexpr uint64_t kUsersBit = 1;
constexpr uint64_t kCountersBit = 2;

// Forwards every call to a real store; tests inject claim errors and stalls.
class HookedStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  std::atomic<int> fail_claims{0};                // the next N claims return kUnavailable
  std::function<void()> before_complete;          // runs before each Complete is forwarded

  Result<Lease> Claim(const ClaimRequest& req) override {
    if (fail_claims.load() > 0) {
      fail_claims.fetch_sub(1);
      return Status::Unavailable("injected: store restarting");
    }
    return StoreWrapper::Claim(req);
  }
  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    if (before_complete) before_complete();
    return StoreWrapper::Complete(req);
  }
};

// Hands the store every in-store consumer's effects merged into the first
// one's, as a store that applies their union in one go does (the PostgreSQL
// store's set-based statements): exactly-once must not depend on which part
// carries which delta.
class SharedEffectsStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    CompleteRequest forwarded = req;
    for (size_t i = 1; i < forwarded.in_store.size(); ++i) {
      Effects& from = forwarded.in_store[i].effects;
      Effects& to = forwarded.in_store[0].effects;
      to.users.insert(to.users.end(), from.users.begin(), from.users.end());
      to.counters.insert(to.counters.end(), from.counters.begin(), from.counters.end());
      from = Effects{};
    }
    return StoreWrapper::Complete(forwarded);
  }
};

// Before the first Complete that carries in-store effects, applies the users
// and counters effects of the first half of its rows itself (as a Complete
// whose answer was lost would have), so that the watcher's effects are stale.
class StaleOnceStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  std::atomic<int> stale_answers{0};

  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    if (!req.in_store.empty() && !done_.exchange(true)) {
      std::vector<ClaimedEvent> half(req.events.begin(),
                                     req.events.begin() + (req.events.size() + 1) / 2);
      UsersConsumer users("users", kUsersBit);
      CountersConsumer counters("counters", kCountersBit);
      std::vector<InStoreEffects> parts(2);
      parts[0].bit = kUsersBit;
      users.BuildEffects(testing::Decoded(half), &parts[0].effects);
      parts[1].bit = kCountersBit;
      counters.BuildEffects(testing::Decoded(half), &parts[1].effects);
      auto m = StoreWrapper::MarkDone(MarkDoneRequest{req.token, half, 0, std::move(parts)});
      EXPECT_TRUE(m.ok() && !m->stale) << m.status().ToString();
    }
    Result<CompleteResult> r = StoreWrapper::Complete(req);
    if (r.ok() && r->stale) stale_answers.fetch_add(1);
    return r;
  }

 private:
  std::atomic<bool> done_{false};
};

struct Expected {
  std::map<std::string, int64_t> user_events;
  std::map<std::string, std::map<std::string, int64_t>> user_counts;
  std::map<std::pair<std::string, int64_t>, int64_t> hourly;  // (event, hour) -> count
};

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = OpenStore(); }

  StorePtr OpenStore() {
    StoreOptions o;
    o.url = "sqlite:" + dir_.File("db");
    o.sync = false;
    Result<StorePtr> s = ::sluice::OpenStore(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Enqueues `n` events spread over `users` users, 3 names and 2 hours.
  void Enqueue(int n, int users = 20, const std::string& poison_every = "") {
    std::vector<NewEvent> events;
    static const char* kNames[] = {"open", "click", "close"};
    for (int i = 0; i < n; ++i, ++next_) {
      Event e;
      e.event = kNames[next_ % 3];
      if (!poison_every.empty() && next_ % 10 == 0) e.event = poison_every;
      e.user_id = "u" + std::to_string(next_ % users);
      e.time_ms = kT0 + (next_ * 7919) % (2 * kHourMs);
      e.set = "{\"n\":" + std::to_string(next_) + "}";
      events.push_back(NewEvent{"p", "id-" + std::to_string(next_), ToBody(e)});
      expected_.user_events[e.user_id]++;
      expected_.user_counts[e.user_id][e.event]++;
      expected_.hourly[{e.event, e.time_ms / kHourMs * kHourMs}]++;
    }
    EnqueueBatch batch{events};
    auto r = store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ((*r)[0].accepted, n);
  }

  WatcherOptions Options() {
    WatcherOptions o;
    o.loops = 2;
    o.batch = 100;
    o.lease_ttl_ms = 5000;
    o.idle_poll_min_ms = 5;
    o.idle_poll_max_ms = 50;
    o.backoff.base_ms = 10;
    o.backoff.cap_ms = 20;
    o.backoff.jitter = 0;
    o.backoff.max_attempts = 10;
    o.drain_timeout_ms = 5000;
    return o;
  }

  static std::vector<ConsumerPtr> InStore() {
    std::vector<ConsumerPtr> c;
    c.push_back(std::make_unique<UsersConsumer>("users", kUsersBit));
    c.push_back(std::make_unique<CountersConsumer>("counters", kCountersBit));
    return c;
  }

  QueueStats Stats(Store* store = nullptr) {
    auto s = (store ? store : store_.get())->Stats();
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : QueueStats{};
  }
  bool QueueEmpty() {
    QueueStats s = Stats();
    return s.pending == 0 && s.leased == 0 && s.dead == 0;
  }

  // Users and hourly counters equal what was enqueued, exactly.
  void ExpectAggregatesExact() {
    for (const auto& [user, events] : expected_.user_events) {
      auto u = store_->GetUser("p", user);
      ASSERT_TRUE(u.ok()) << user << ": " << u.status().ToString();
      EXPECT_EQ(u->events, events) << user;
      std::map<std::string, int64_t> counts(u->event_counts.begin(), u->event_counts.end());
      EXPECT_EQ(counts, expected_.user_counts[user]) << user;
    }
    std::map<std::pair<std::string, int64_t>, int64_t> got;
    for (const char* name : {"open", "click", "close", "boom"}) {
      CounterQuery q;
      q.project = "p";
      q.event = name;
      q.granularity = Granularity::kHour;
      q.from_ms = kT0 - kHourMs;
      q.to_ms = kT0 + 3 * kHourMs;
      auto points = store_->QueryCounters(q);
      ASSERT_TRUE(points.ok()) << points.status().ToString();
      for (const CounterPoint& p : *points) {
        if (p.count != 0) got[{name, p.bucket_ms}] = p.count;
      }
    }
    EXPECT_EQ(got, expected_.hourly);
  }

  int64_t CounterValue(Metrics& m, const std::string& name, const std::string& consumer = "") {
    return m.GetCounter(name, "", consumer.empty() ? "" : Labels({{"consumer", consumer}})).value();
  }

  testing::TempDir dir_;
  Metrics metrics_;
  StorePtr store_;
  Expected expected_;
  int next_ = 0;
};

TEST_F(WatcherTest, DrainsTheQueueAndUsersAndCountersAreExact) {
  ASSERT_NE(store_, nullptr);
  Enqueue(1000);
  Watcher w(store_.get(), InStore(), Options(), "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(30000)));
  w.Drain();
  ExpectAggregatesExact();
  EXPECT_EQ(CounterValue(metrics_, "sluice_deliveries_total", "users"), 1000);
  EXPECT_EQ(CounterValue(metrics_, "sluice_deliveries_total", "counters"), 1000);
  EXPECT_EQ(CounterValue(metrics_, "sluice_claimed_events_total"), 1000);
  EXPECT_EQ(CounterValue(metrics_, "sluice_fenced_total"), 0);
  EXPECT_GE(CounterValue(metrics_, "sluice_claims_total"), 10);
}

TEST_F(WatcherTest, InStoreEffectsSurviveAStoreThatSharesOneEffectsAcrossConsumers) {
  ASSERT_NE(store_, nullptr);
  Enqueue(500);
  SharedEffectsStore shared(store_.get());
  Watcher w(&shared, InStore(), Options(), "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(30000)));
  w.Drain();
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, StaleEffectsAreRebuiltFromTheCurrentMasksAndApplyOnce) {
  ASSERT_NE(store_, nullptr);
  Enqueue(60);
  StaleOnceStore stale(store_.get());
  WatcherOptions o = Options();
  o.loops = 1;
  Watcher w(&stale, InStore(), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(30000)));
  w.Drain();
  EXPECT_EQ(stale.stale_answers.load(), 1);
  EXPECT_EQ(CounterValue(metrics_, "sluice_stale_effects_total"), 1);
  EXPECT_EQ(CounterValue(metrics_, "sluice_fenced_total"), 0);
  ExpectAggregatesExact();  // the half applied beforehand was not applied again
}

TEST_F(WatcherTest, ConsumerFailingFirstNIsTheOnlyOneCalledAgain) {
  ASSERT_NE(store_, nullptr);
  Enqueue(100);
  FlakyConsumerOptions flaky_opts;
  flaky_opts.fail_first_n = 2;
  auto consumers = InStore();
  auto flaky = std::make_unique<FlakyConsumer>("flaky", uint64_t{1} << 4, flaky_opts);
  auto steady = std::make_unique<FlakyConsumer>("steady", uint64_t{1} << 5, FlakyConsumerOptions{});
  FlakyConsumer* f = flaky.get();
  FlakyConsumer* s = steady.get();
  consumers.push_back(std::move(flaky));
  consumers.push_back(std::move(steady));
  WatcherOptions o = Options();
  o.loops = 1;
  o.batch = 100;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(20000)));
  w.Drain();
  // Call 1 fails (attempt 1); call 2 fails on the retry, which then splits the
  // batch to isolate poison: calls 3 and 4 deliver the two halves.
  EXPECT_EQ(f->calls(), 4);
  EXPECT_EQ(f->delivered(), 100);
  EXPECT_EQ(s->calls(), 1);  // its bit was recorded on the first attempt
  EXPECT_EQ(s->seen_seqs().size(), 100u);
  EXPECT_EQ(CounterValue(metrics_, "sluice_failures_total", "flaky"), 100);
  EXPECT_EQ(CounterValue(metrics_, "sluice_failures_total", "steady"), 0);
  EXPECT_EQ(CounterValue(metrics_, "sluice_deliveries_total", "flaky"), 300);
  EXPECT_EQ(CounterValue(metrics_, "sluice_deliveries_total", "steady"), 100);
  // The in-store consumers completed on the first attempt and were not redone.
  EXPECT_EQ(CounterValue(metrics_, "sluice_deliveries_total", "users"), 100);
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, AlwaysFailingConsumerSendsEventsDeadWithItsName) {
  ASSERT_NE(store_, nullptr);
  Enqueue(60);
  FlakyConsumerOptions broken_opts;
  broken_opts.fail_rate = 1.0;
  auto consumers = InStore();
  auto broken = std::make_unique<FlakyConsumer>("hook", uint64_t{1} << 3, broken_opts);
  auto steady = std::make_unique<FlakyConsumer>("archive", uint64_t{1} << 6, FlakyConsumerOptions{});
  FlakyConsumer* b = broken.get();
  FlakyConsumer* s = steady.get();
  consumers.push_back(std::move(broken));
  consumers.push_back(std::move(steady));
  WatcherOptions o = Options();
  o.backoff.max_attempts = 3;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return Stats().dead == 60; }, milliseconds(20000)))
      << "dead=" << Stats().dead;
  w.Drain();
  QueueStats st = Stats();
  EXPECT_EQ(st.pending, 0);
  EXPECT_EQ(st.leased, 0);
  DeadFilter all;
  all.limit = 1000;
  auto dead = store_->ListDead(all);
  ASSERT_TRUE(dead.ok()) << dead.status().ToString();
  ASSERT_EQ(dead->size(), 60u);
  for (const DeadEvent& d : *dead) {
    EXPECT_EQ(d.last_error.rfind("consumer hook: ", 0), 0u) << d.last_error;
    EXPECT_EQ(d.attempts, 3);
    EXPECT_EQ(d.done_mask & (kUsersBit | kCountersBit | (uint64_t{1} << 6)),
              kUsersBit | kCountersBit | (uint64_t{1} << 6));
  }
  EXPECT_EQ(CounterValue(metrics_, "sluice_dead_events_total"), 60);
  EXPECT_EQ(b->delivered(), 0);
  EXPECT_EQ(s->seen_seqs().size(), 60u);  // delivered once, never again
  ExpectAggregatesExact();                // final while the hook's events are dead
}

TEST_F(WatcherTest, OnlyPoisonEventsGoDeadAndTheRestOfTheirBatchesFlowOn) {
  ASSERT_NE(store_, nullptr);
  Enqueue(100, 20, "boom");  // every 10th event is "boom"
  FlakyConsumerOptions opts;
  opts.poison_event = "boom";
  auto consumers = InStore();
  auto picky = std::make_unique<FlakyConsumer>("picky", uint64_t{1} << 2, opts);
  FlakyConsumer* picky_ptr = picky.get();
  consumers.push_back(std::move(picky));
  WatcherOptions o = Options();
  o.batch = 7;  // batches mix poison and healthy events
  o.backoff.max_attempts = 3;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil(
      [&] {
        QueueStats s = Stats();
        return s.pending == 0 && s.leased == 0;
      },
      milliseconds(20000)));
  w.Drain();
  // A retried batch that fails again is split until the poison events stand
  // alone: exactly the 10 poison events are dead, with the consumer's name.
  EXPECT_EQ(Stats().dead, 10);
  auto dead = store_->ListDead(DeadFilter{});
  ASSERT_TRUE(dead.ok());
  for (const DeadEvent& d : *dead) {
    EXPECT_NE(d.body.find("\"boom\""), std::string::npos) << d.body;
    EXPECT_NE(d.last_error.find("consumer picky:"), std::string::npos) << d.last_error;
  }
  // Every healthy event reached the picky consumer.
  std::vector<int64_t> delivered = picky_ptr->delivered_seqs();
  std::sort(delivered.begin(), delivered.end());
  delivered.erase(std::unique(delivered.begin(), delivered.end()), delivered.end());
  EXPECT_EQ(delivered.size(), 90u);
  ExpectAggregatesExact();
}

// The stalled watcher's late write while the rows are held by the replica that
// took them over: tests/watcher/fencing_test.cc.

TEST_F(WatcherTest, StalledCompleteIsFencedAndInStoreEffectsApplyOnce) {
  ASSERT_NE(store_, nullptr);
  Enqueue(40);
  // Watcher A stalls right before its Complete (in-store effects + delete)
  // until B has reclaimed and finished the batch: A's Complete must be refused.
  HookedStore hooked(store_.get());
  std::atomic<bool> stalled{false};
  std::atomic<bool> release{false};
  hooked.before_complete = [&] {
    if (stalled.exchange(true)) return;  // only the first Complete stalls
    WaitUntil([&] { return release.load(); }, milliseconds(20000));
  };
  WatcherOptions oa = Options();
  oa.loops = 1;
  oa.lease_ttl_ms = 300;
  oa.heartbeat_ms = 60000;  // the stalled replica cannot extend (as if SIGSTOPped)
  Metrics metrics_a;
  Watcher a(&hooked, InStore(), oa, "A", &metrics_a);
  a.Start();
  ASSERT_TRUE(WaitUntil([&] { return stalled.load(); }, milliseconds(10000)));

  StorePtr store_b = OpenStore();
  ASSERT_NE(store_b, nullptr);
  WatcherOptions ob = Options();
  ob.loops = 1;
  Metrics metrics_b;
  Watcher b(store_b.get(), InStore(), ob, "B", &metrics_b);
  b.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(20000)));
  release = true;
  ASSERT_TRUE(WaitUntil([&] { return CounterValue(metrics_a, "sluice_fenced_total") > 0; },
                        milliseconds(10000)));
  a.Drain();
  b.Drain();
  EXPECT_EQ(CounterValue(metrics_b, "sluice_lease_reclaims_total"), 40);
  // Both replicas handed the batch to the in-store consumers (a dispatch
  // after lease expiry), yet the effects landed once.
  EXPECT_EQ(CounterValue(metrics_a, "sluice_deliveries_total", "users"), 40);
  EXPECT_EQ(CounterValue(metrics_b, "sluice_deliveries_total", "users"), 40);
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, ClaimErrorsBackOffAndProcessingResumes) {
  ASSERT_NE(store_, nullptr);
  Enqueue(30);
  HookedStore hooked(store_.get());
  hooked.fail_claims = 4;
  WatcherOptions o = Options();
  o.loops = 1;
  Watcher w(&hooked, InStore(), o, "r1", &metrics_);
  const int64_t t0 = Clock::Real().MonoMs();
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(10000)));
  // Backed off 50 + 100 + 200 + 400 ms rather than spinning.
  EXPECT_GE(Clock::Real().MonoMs() - t0, 700);
  w.Drain();
  EXPECT_EQ(CounterValue(metrics_, "sluice_claim_errors_total"), 4);
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, HeartbeatKeepsALongBatchLeased) {
  ASSERT_NE(store_, nullptr);
  Enqueue(20);
  FlakyConsumerOptions slow;
  slow.sleep_ms = 1200;  // four lease lengths
  auto consumers = InStore();
  auto sink = std::make_unique<FlakyConsumer>("sink", uint64_t{1} << 3, slow);
  FlakyConsumer* s = sink.get();
  consumers.push_back(std::move(sink));
  WatcherOptions o = Options();
  o.loops = 1;
  o.lease_ttl_ms = 300;
  o.consumer_timeout_ms = 5000;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return s->calls() >= 1; }, milliseconds(10000)));
  // A second replica polling meanwhile must find nothing to reclaim.
  StorePtr other = OpenStore();
  ASSERT_NE(other, nullptr);
  int64_t stolen = 0;
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto l = other->Claim(ClaimRequest{.owner = "thief", .max_events = 100,
                                           .lease_ttl_ms = 60000});
        if (l.ok()) stolen += static_cast<int64_t>(l->events.size());
        return QueueEmpty() || stolen > 0;
      },
      milliseconds(10000), milliseconds(50)));
  w.Drain();
  EXPECT_EQ(stolen, 0);
  EXPECT_EQ(s->calls(), 1);
  EXPECT_EQ(CounterValue(metrics_, "sluice_fenced_total"), 0);
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, ExternalConsumersOfOneBatchRunConcurrently) {
  ASSERT_NE(store_, nullptr);
  Enqueue(10);
  auto consumers = InStore();
  auto x = std::make_unique<FlakyConsumer>("x", uint64_t{1} << 3, FlakyConsumerOptions{});
  auto y = std::make_unique<FlakyConsumer>("y", uint64_t{1} << 4, FlakyConsumerOptions{});
  // Each waits (bounded) for the other to have started: only concurrent
  // deliveries both see the other.
  std::atomic<bool> x_in{false}, y_in{false}, x_saw_y{false}, y_saw_x{false};
  x->set_hook([&](const Delivery&) {
    x_in = true;
    x_saw_y = WaitUntil([&] { return y_in.load(); }, milliseconds(3000), milliseconds(1));
  });
  y->set_hook([&](const Delivery&) {
    y_in = true;
    y_saw_x = WaitUntil([&] { return x_in.load(); }, milliseconds(3000), milliseconds(1));
  });
  consumers.push_back(std::move(x));
  consumers.push_back(std::move(y));
  WatcherOptions o = Options();
  o.loops = 1;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(15000)));
  w.Drain();
  EXPECT_TRUE(x_saw_y);
  EXPECT_TRUE(y_saw_x);
}

TEST_F(WatcherTest, DrainFinishesTheInFlightBatchThenStopsClaiming) {
  ASSERT_NE(store_, nullptr);
  Enqueue(50);
  FlakyConsumerOptions slow;
  slow.sleep_ms = 400;
  auto consumers = InStore();
  auto sink = std::make_unique<FlakyConsumer>("sink", uint64_t{1} << 3, slow);
  FlakyConsumer* s = sink.get();
  consumers.push_back(std::move(sink));
  WatcherOptions o = Options();
  o.loops = 1;
  o.batch = 50;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return s->calls() >= 1; }, milliseconds(10000)));
  w.Drain();
  EXPECT_EQ(s->delivered(), 50);  // the in-flight batch finished
  EXPECT_TRUE(QueueEmpty());
  Enqueue(10);
  w.Wake();
  // Nothing claims any more: the new events stay pending, unleased.
  QueueStats st = Stats();
  EXPECT_EQ(st.pending, 10);
  EXPECT_EQ(st.leased, 0);
  EXPECT_EQ(CounterValue(metrics_, "sluice_claimed_events_total"), 50);
}

TEST_F(WatcherTest, DrainDeadlineFailsTheRestForImmediateRetryElsewhere) {
  ASSERT_NE(store_, nullptr);
  Enqueue(30);
  FlakyConsumerOptions hang;
  hang.hang_ms = 30000;  // honours cancel
  auto consumers = InStore();
  auto sink = std::make_unique<FlakyConsumer>("sink", uint64_t{1} << 3, hang);
  FlakyConsumer* s = sink.get();
  consumers.push_back(std::move(sink));
  WatcherOptions o = Options();
  o.loops = 1;
  o.lease_ttl_ms = 60000;
  o.consumer_timeout_ms = 60000;
  o.drain_timeout_ms = 200;
  o.backoff.base_ms = 60000;  // a drain must not use the failure backoff
  o.backoff.cap_ms = 60000;
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return s->calls() >= 1; }, milliseconds(10000)));
  const int64_t t0 = Clock::Real().MonoMs();
  w.Drain();
  EXPECT_LT(Clock::Real().MonoMs() - t0, 5000);
  QueueStats st = Stats();
  EXPECT_EQ(st.pending, 30);
  EXPECT_EQ(st.leased, 0);
  EXPECT_EQ(st.dead, 0);
  EXPECT_EQ(s->delivered(), 0);

  // Another replica takes the batch at once; in-store effects were already
  // applied by the drained replica and are not applied again.
  auto consumers2 = InStore();
  auto sink2 = std::make_unique<FlakyConsumer>("sink", uint64_t{1} << 3, FlakyConsumerOptions{});
  FlakyConsumer* s2 = sink2.get();
  consumers2.push_back(std::move(sink2));
  Metrics metrics2;
  Watcher w2(store_.get(), std::move(consumers2), Options(), "r2", &metrics2);
  w2.Start();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(3000)));
  w2.Drain();
  EXPECT_EQ(s2->delivered(), 30);
  EXPECT_EQ(CounterValue(metrics2, "sluice_deliveries_total", "users"), 0);
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, WakeMakesAnIdleLoopClaimAtOnce) {
  ASSERT_NE(store_, nullptr);
  WatcherOptions o = Options();
  o.loops = 1;
  o.idle_poll_min_ms = 20000;  // without Wake the loop would sleep this long
  o.idle_poll_max_ms = 20000;
  Watcher w(store_.get(), InStore(), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return CounterValue(metrics_, "sluice_claims_empty_total") >= 1; },
                        milliseconds(5000)));
  Enqueue(20);
  const int64_t t0 = Clock::Real().MonoMs();
  w.Wake();
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(5000)));
  EXPECT_LT(Clock::Real().MonoMs() - t0, 5000);
  w.Drain();
  ExpectAggregatesExact();
}

TEST_F(WatcherTest, DrainOfAnIdleWatcherReturnsPromptly) {
  ASSERT_NE(store_, nullptr);
  WatcherOptions o = Options();
  o.idle_poll_min_ms = 20000;
  o.idle_poll_max_ms = 20000;
  Watcher w(store_.get(), InStore(), o, "r1", &metrics_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return CounterValue(metrics_, "sluice_claims_empty_total") >= 2; },
                        milliseconds(5000)));
  const int64_t t0 = Clock::Real().MonoMs();
  w.Drain();
  EXPECT_LT(Clock::Real().MonoMs() - t0, 2000);
}

}  // namespace
}  // namespace sluice
