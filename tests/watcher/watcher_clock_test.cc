// Watcher on an injected clock (FakeClock: time moves only by Advance) and
// its delivery threads: idle polling, the Complete retry backoff and the
// delivery timeout follow the injected clock; a consumer stuck in calls that
// ignore their deadline holds a bounded number of threads and cannot starve
// the other consumers. Real SQLite store underneath; lease expiry stays on
// its clock (leases here are long).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/metrics.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/users/users_consumer.h"
#include "queue/open/open_store.h"
#include "queue/store_wrapper.h"
#include "testing/fake_clock.h"
#include "testing/testing.h"
#include "watcher/watcher.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::FakeClock;
using testing::WaitUntil;

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z

// An external consumer whose calls block until `release` is set or, when
// `cooperative`, until the delivery is cancelled. It never looks at the
// deadline (its clock is the watcher's, which the test moves).
class BlockingConsumer final : public Consumer {
 public:
  BlockingConsumer(std::string name, uint64_t bit, bool cooperative)
      : Consumer(std::move(name), bit), cooperative_(cooperative) {}

  bool in_store() const override { return false; }
  Status Deliver(const Delivery& d) override {
    calls_.fetch_add(1);
    running_.fetch_add(1);
    while (!release.load() && !(cooperative_ && d.Cancelled())) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    running_.fetch_sub(1);
    if (!release.load()) {
      cancelled_.fetch_add(1);
      return Status::Unavailable("cancelled while blocked");
    }
    delivered_.fetch_add(static_cast<int64_t>(d.events.size()));
    return Status::Ok();
  }

  std::atomic<bool> release{false};
  int calls() const { return calls_.load(); }
  int running() const { return running_.load(); }
  int cancelled() const { return cancelled_.load(); }
  int64_t delivered() const { return delivered_.load(); }

 private:
  const bool cooperative_;
  std::atomic<int> calls_{0};
  std::atomic<int> running_{0};
  std::atomic<int> cancelled_{0};
  std::atomic<int64_t> delivered_{0};
};

// An external consumer that counts what it is handed and succeeds.
class CountingConsumer final : public Consumer {
 public:
  CountingConsumer(std::string name, uint64_t bit) : Consumer(std::move(name), bit) {}
  bool in_store() const override { return false; }
  Status Deliver(const Delivery& d) override {
    delivered_.fetch_add(static_cast<int64_t>(d.events.size()));
    return Status::Ok();
  }
  int64_t delivered() const { return delivered_.load(); }

 private:
  std::atomic<int64_t> delivered_{0};
};

// Fails the first `fail_completes` Completes with kUnavailable (nothing
// forwarded) and counts every Complete.
class FlakyCompleteStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  std::atomic<int> fail_completes{0};
  std::atomic<int> completes{0};

  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    completes.fetch_add(1);
    if (fail_completes.load() > 0) {
      fail_completes.fetch_sub(1);
      return Status::Unavailable("injected: store restarting");
    }
    return StoreWrapper::Complete(req);
  }
};

class WatcherClockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite:" + dir_.File("db");
    o.sync = false;
    Result<StorePtr> s = OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  void Enqueue(int n) {
    std::vector<NewEvent> events;
    for (int i = 0; i < n; ++i, ++next_) {
      Event e;
      e.event = "open";
      e.user_id = "u" + std::to_string(next_ % 7);
      e.time_ms = kT0 + next_;
      events.push_back(NewEvent{"p", "id-" + std::to_string(next_), ToBody(e)});
    }
    EnqueueBatch batch{events};
    auto r = store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  WatcherOptions Options() {
    WatcherOptions o;
    o.loops = 1;
    o.batch = 100;
    o.lease_ttl_ms = 60000;  // the store's clock: never expires in these tests
    o.idle_poll_min_ms = 5;
    o.idle_poll_max_ms = 5;
    o.backoff.base_ms = 1;
    o.backoff.cap_ms = 1;
    o.backoff.jitter = 0;
    o.drain_timeout_ms = 5000;
    return o;
  }

  static std::vector<ConsumerPtr> InStore() {
    std::vector<ConsumerPtr> c;
    c.push_back(std::make_unique<UsersConsumer>("users", 1));
    c.push_back(std::make_unique<CountersConsumer>("counters", 2));
    return c;
  }

  bool QueueEmpty() {
    auto s = store_->Stats();
    return s.ok() && s->pending == 0 && s->leased == 0 && s->dead == 0;
  }
  int64_t Pending() {
    auto s = store_->Stats();
    return s.ok() ? s->pending : -1;
  }
  int64_t Users(const std::string& user) {
    auto u = store_->GetUser("p", user);
    return u.ok() ? u->events : 0;
  }
  static int64_t CounterValue(Metrics& m, const std::string& name,
                              const std::string& consumer = "") {
    return m.GetCounter(name, "", consumer.empty() ? "" : Labels({{"consumer", consumer}})).value();
  }

  testing::TempDir dir_;
  StorePtr store_;
  Metrics metrics_;
  FakeClock clock_;
  int next_ = 0;
};

TEST_F(WatcherClockTest, IdlePollWaitsOnTheInjectedClockUntilAdvanced) {
  WatcherOptions o = Options();
  o.idle_poll_min_ms = 3'600'000;  // an hour of fake time between idle polls
  o.idle_poll_max_ms = 3'600'000;
  Watcher w(store_.get(), InStore(), o, "r1", &metrics_, &clock_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return CounterValue(metrics_, "sluice_claims_empty_total") == 1; },
                        milliseconds(5000)));
  // Work arrives from "another replica": no Wake(). The loop is asleep on
  // the fake clock (with the heartbeat), so nothing is claimed.
  Enqueue(10);
  ASSERT_TRUE(WaitUntil([&] { return clock_.waiters() >= 2; }, milliseconds(5000)));
  EXPECT_EQ(Pending(), 10);
  EXPECT_EQ(CounterValue(metrics_, "sluice_claims_total"), 0);
  clock_.Advance(3'600'000);
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(10000)));
  EXPECT_EQ(CounterValue(metrics_, "sluice_claims_total"), 1);
  w.Drain();
}

TEST_F(WatcherClockTest, CompleteRetriesSleepOnTheInjectedClock) {
  Enqueue(20);
  FlakyCompleteStore flaky(store_.get());
  flaky.fail_completes = 2;
  Watcher w(&flaky, InStore(), Options(), "r1", &metrics_, &clock_);
  w.Start();
  // Attempt 1 fails; the loop sleeps 100 ms of fake time (the heartbeat
  // waits too), so attempt 2 waits for the Advance.
  ASSERT_TRUE(WaitUntil([&] { return flaky.completes.load() == 1 && clock_.waiters() >= 2; },
                        milliseconds(5000)));
  EXPECT_EQ(flaky.completes.load(), 1);
  clock_.Advance(100);
  ASSERT_TRUE(WaitUntil([&] { return flaky.completes.load() == 2 && clock_.waiters() >= 2; },
                        milliseconds(5000)));
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->leased, 20);  // still this lease's: the loop is waiting to retry
  clock_.Advance(200);
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(10000)));
  EXPECT_EQ(flaky.completes.load(), 3);
  EXPECT_EQ(Users("u0"), 3);  // 20 events over 7 users: u0 has seq 0, 7, 14
  w.Drain();
}

TEST_F(WatcherClockTest, DeliveryTimeoutFollowsTheInjectedClock) {
  Enqueue(10);
  auto consumers = InStore();
  auto blocking =
      std::make_unique<BlockingConsumer>("sink", uint64_t{1} << 3, /*cooperative=*/true);
  BlockingConsumer* sink = blocking.get();
  consumers.push_back(std::move(blocking));
  WatcherOptions o = Options();
  o.consumer_timeout_ms = 60'000;  // a minute of fake time
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_, &clock_);
  w.Start();
  ASSERT_TRUE(WaitUntil([&] { return sink->running() == 1; }, milliseconds(5000)));
  // Real time passes, fake time does not: the call is not cut short.
  ASSERT_TRUE(WaitUntil([&] { return clock_.waiters() >= 2; }, milliseconds(5000)));
  EXPECT_EQ(CounterValue(metrics_, "sluice_failures_total", "sink"), 0);
  // Past timeout + 1 s grace on the fake clock: the watcher gives up, cancels
  // the call and fails the batch (users and counters complete regardless).
  clock_.Advance(61'000);
  ASSERT_TRUE(
      WaitUntil([&] { return CounterValue(metrics_, "sluice_failures_total", "sink") >= 10; },
                milliseconds(5000)));
  ASSERT_TRUE(WaitUntil([&] { return sink->cancelled() == 1; }, milliseconds(5000)));
  // The failure is counted when the call is given up, before the batch's
  // Complete of users and counters: wait for that, do not assume it.
  EXPECT_TRUE(WaitUntil([&] { return Users("u0") == 2; }, milliseconds(5000)));  // seq 0, 7
  // The retry (its backoff is on the store's clock; idle polls on ours, so
  // keep waking the loop) delivers the events once the consumer is released.
  sink->release = true;
  ASSERT_TRUE(WaitUntil(
      [&] {
        w.Wake();
        return QueueEmpty();
      },
      milliseconds(10000)));
  EXPECT_EQ(sink->delivered(), 10);
  EXPECT_EQ(Users("u0"), 2);  // in-store effects were not applied twice
  w.Drain();
}

TEST_F(WatcherClockTest, StuckConsumerHoldsBoundedThreadsAndTheOthersKeepDelivering) {
  auto consumers = InStore();
  auto stuck_ptr = std::make_unique<BlockingConsumer>("stuck", uint64_t{1} << 3,
                                                      /*cooperative=*/false);
  auto steady_ptr = std::make_unique<CountingConsumer>("steady", uint64_t{1} << 4);
  BlockingConsumer* stuck = stuck_ptr.get();
  CountingConsumer* steady = steady_ptr.get();
  consumers.push_back(std::move(stuck_ptr));
  consumers.push_back(std::move(steady_ptr));
  WatcherOptions o = Options();
  o.loops = 2;
  o.batch = 10;
  o.consumer_timeout_ms = 50;  // real clock: abandoned after 50 ms + 1 s grace
  // Failed batches stay away long enough for the fresh ones to be claimed
  // (claims take the lowest seqs), and never go dead.
  o.backoff.base_ms = 1000;
  o.backoff.cap_ms = 1000;
  o.backoff.max_attempts = 1'000'000;
  Enqueue(200);
  Watcher w(store_.get(), std::move(consumers), o, "r1", &metrics_);
  // Drain waits for the stuck calls: release them on every way out.
  struct Release {
    BlockingConsumer* c;
    ~Release() { c->release = true; }
  } release{stuck};
  w.Start();
  // The stuck consumer ignores deadline and cancel: each of its calls is
  // abandoned and keeps its thread. After `loops` such calls its deliveries
  // fail at once, so the other consumer still gets every event, soon.
  ASSERT_TRUE(WaitUntil([&] { return steady->delivered() >= 200; }, milliseconds(30000)));
  // At most loops - 1 abandoned calls when a loop checked, plus one in flight
  // per loop: 2 x loops - 1.
  EXPECT_LE(stuck->calls(), 3);
  EXPECT_LE(w.delivery_threads(), 2u * 2u * 2u);  // 2 x loops x external consumers
  stuck->release = true;
  ASSERT_TRUE(WaitUntil(
      [&] {
        w.Wake();
        return QueueEmpty();
      },
      milliseconds(60000)));
  w.Drain();
  EXPECT_EQ(stuck->running(), 0);
  EXPECT_GE(stuck->delivered(), 200);
  EXPECT_EQ(Users("u0"), 200 / 7 + 1);  // seq 0, 7, ..., 196: in-store effects once
}

}  // namespace
}  // namespace sluice
