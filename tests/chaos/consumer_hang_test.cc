// Fault: a consumer call that hangs longer than the lease TTL while its
// replica is healthy (heartbeat running) — unlike SIGSTOP, which stalls the
// whole process. Real watchers on one real SQLite store, one consumer that
// hangs on its first call. What must hold, and what sluice does:
//  - a hang shorter than the per-call consumer timeout but longer than the
//    lease: the heartbeat extends the lease, nobody else gets the batch, the
//    call's success is recorded — nothing lost, nothing delivered twice;
//  - a hang past the consumer timeout, consumer honouring its deadline: the
//    call ends at the deadline as a failure and the batch is retried;
//  - a hang past the consumer timeout, consumer ignoring deadline and cancel
//    (a stuck syscall): in tests/watcher/fencing_test.cc, where the late
//    "success" arrives while the retry holds the rows and must be refused.
// Users and counters stay exact throughout.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/users/users_consumer.h"
#include "queue/open/open_store.h"
#include "queue/store.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"
#include "watcher/watcher.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::WaitUntil;

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z
constexpr uint64_t kHangBit = 1 << 2;

int64_t Mono() { return Clock::Real().MonoMs(); }

// External consumer whose first call hangs for `hang_ms`, honouring the
// delivery deadline and cancel flag when `cooperative`, ignoring both when not.
class HangingConsumer final : public Consumer {
 public:
  HangingConsumer(int64_t hang_ms, bool cooperative)
      : Consumer("hanging", kHangBit), hang_ms_(hang_ms), cooperative_(cooperative) {}

  bool in_store() const override { return false; }

  Status Deliver(const Delivery& d) override {
    const int call = calls_.fetch_add(1);
    const int64_t t0 = Mono();
    if (call == 0) {
      const int64_t end = t0 + hang_ms_;
      while (Mono() < end) {
        if (cooperative_ && (d.Cancelled() || Mono() >= d.deadline_mono_ms)) {
          first_call_ms_.store(Mono() - t0);
          return Status::Unavailable("deadline or cancel while hung");
        }
        std::this_thread::sleep_for(milliseconds(5));
      }
      first_call_ms_.store(Mono() - t0);
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const DecodedEvent& e : d.events) ++succeeded_[e.row->seq];
    return Status::Ok();
  }

  int calls() const { return calls_.load(); }
  int64_t first_call_ms() const { return first_call_ms_.load(); }
  // seq -> calls that returned Ok with it.
  std::map<int64_t, int> succeeded() const {
    std::lock_guard<std::mutex> lock(mu_);
    return succeeded_;
  }

 private:
  const int64_t hang_ms_;
  const bool cooperative_;
  std::atomic<int> calls_{0};
  std::atomic<int64_t> first_call_ms_{-1};
  mutable std::mutex mu_;
  std::map<int64_t, int> succeeded_;
};

class ConsumerHangTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite:" + dir_.File("db");
    o.sync = false;
    Result<StorePtr> s = ::sluice::OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  void Enqueue(int n) { ASSERT_EQ(testing::EnqueueOpenEvents(*store_, n, kT0), ""); }

  WatcherOptions Options(int64_t ttl_ms, int64_t consumer_timeout_ms) {
    WatcherOptions o;
    o.loops = 1;
    o.batch = 100;
    o.lease_ttl_ms = ttl_ms;
    o.heartbeat_ms = ttl_ms / 4;
    o.consumer_timeout_ms = consumer_timeout_ms;
    o.idle_poll_min_ms = 5;
    o.idle_poll_max_ms = 50;
    o.backoff.base_ms = 10;
    o.backoff.cap_ms = 20;
    o.backoff.jitter = 0;
    o.backoff.max_attempts = 10;
    o.drain_timeout_ms = 10000;
    return o;
  }

  // Two replicas (watchers) on the store; the first owns the hanging consumer
  // object, the second a fresh one that does not hang. Both share the users
  // and counters consumers' bits, so each event is counted by one of them.
  void StartReplicas(const WatcherOptions& o, std::unique_ptr<HangingConsumer> hanging) {
    hanging_ = hanging.get();
    std::vector<ConsumerPtr> a;
    a.push_back(std::make_unique<UsersConsumer>("users", 1));
    a.push_back(std::make_unique<CountersConsumer>("counters", 2));
    a.push_back(std::move(hanging));
    auto other = std::make_unique<HangingConsumer>(0, true);
    other_ = other.get();
    std::vector<ConsumerPtr> b;
    b.push_back(std::make_unique<UsersConsumer>("users", 1));
    b.push_back(std::make_unique<CountersConsumer>("counters", 2));
    b.push_back(std::move(other));
    watcher_a_ = std::make_unique<Watcher>(store_.get(), std::move(a), o, "ra", &metrics_a_);
    watcher_b_ = std::make_unique<Watcher>(store_.get(), std::move(b), o, "rb", &metrics_b_);
    watcher_a_->Start();
    // The hanging replica claims the batch first; the other starts once the
    // hang is under way, polling for anything a lost lease would release.
    ASSERT_TRUE(WaitUntil([&] { return hanging_->calls() > 0; }, milliseconds(10000)));
    watcher_b_->Start();
  }

  bool QueueEmpty() {
    auto s = store_->Stats();
    return s.ok() && s->pending == 0 && s->leased == 0 && s->dead == 0;
  }

  int64_t Metric(Metrics& m, const std::string& name, const std::string& consumer = "") {
    const std::string labels = consumer.empty() ? "" : Labels({{"consumer", consumer}});
    return m.GetCounter(name, "", labels).value();
  }
  int64_t Both(const std::string& name, const std::string& consumer = "") {
    return Metric(metrics_a_, name, consumer) + Metric(metrics_b_, name, consumer);
  }

  // Users and the hourly counter count each of the `n` events exactly once.
  void ExpectCountedOnce(int n) { EXPECT_EQ(testing::OpenEventsCountedOnce(*store_, n, kT0), ""); }

  void TearDown() override {
    if (watcher_b_) watcher_b_->Drain();
    if (watcher_a_) watcher_a_->Drain();
  }

  testing::TempDir dir_;
  StorePtr store_;
  Metrics metrics_a_, metrics_b_;
  HangingConsumer* hanging_ = nullptr;
  HangingConsumer* other_ = nullptr;
  std::unique_ptr<Watcher> watcher_a_, watcher_b_;
};

TEST_F(ConsumerHangTest, HangLongerThanTheLeaseKeepsTheLeaseAndDeliversEachEventOnce) {
  constexpr int kEvents = 40;
  constexpr int64_t kTtl = 1000, kHang = 2500;  // the call outlives 2.5 leases
  Enqueue(kEvents);
  StartReplicas(Options(kTtl, /*consumer_timeout_ms=*/6000),
                std::make_unique<HangingConsumer>(kHang, /*cooperative=*/true));
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(20000)));
  std::printf("hang %lld ms > lease %lld ms: first call took %lld ms\n",
              static_cast<long long>(kHang), static_cast<long long>(kTtl),
              static_cast<long long>(hanging_->first_call_ms()));
  EXPECT_GE(hanging_->first_call_ms(), kHang);
  // The heartbeat kept the lease: the hung call's success counted, nobody
  // else was handed the batch, nothing was fenced or reclaimed.
  EXPECT_EQ(hanging_->calls(), 1);
  EXPECT_EQ(other_->calls(), 0);
  const auto ok = hanging_->succeeded();
  EXPECT_EQ(ok.size(), static_cast<size_t>(kEvents));
  for (const auto& [seq, n] : ok) EXPECT_EQ(n, 1) << "seq " << seq;
  EXPECT_EQ(Both("sluice_fenced_total"), 0);
  EXPECT_EQ(Both("sluice_lease_reclaims_total"), 0);
  EXPECT_EQ(Both("sluice_failures_total", "hanging"), 0);
  ExpectCountedOnce(kEvents);
}

TEST_F(ConsumerHangTest, HangPastTheConsumerTimeoutEndsAtTheDeadlineAndTheBatchIsRetried) {
  constexpr int kEvents = 40;
  constexpr int64_t kTtl = 1000, kTimeout = 1500, kHang = 30000;
  Enqueue(kEvents);
  const int64_t t0 = Mono();
  StartReplicas(Options(kTtl, kTimeout),
                std::make_unique<HangingConsumer>(kHang, /*cooperative=*/true));
  ASSERT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(20000)));
  const int64_t took = Mono() - t0;
  std::printf(
      "hang %lld ms, consumer timeout %lld ms: first call cut after %lld ms, "
      "all delivered after %lld ms\n",
      static_cast<long long>(kHang), static_cast<long long>(kTimeout),
      static_cast<long long>(hanging_->first_call_ms()), static_cast<long long>(took));
  EXPECT_GE(hanging_->first_call_ms(), kTimeout - 50);
  EXPECT_LT(hanging_->first_call_ms(), kTimeout + 1000);
  EXPECT_LT(took, kHang);
  EXPECT_EQ(Both("sluice_failures_total", "hanging"), kEvents);
  // Each event reached the consumer successfully exactly once (the retry).
  std::map<int64_t, int> ok = hanging_->succeeded();
  for (const auto& [seq, n] : other_->succeeded()) ok[seq] += n;
  EXPECT_EQ(ok.size(), static_cast<size_t>(kEvents));
  for (const auto& [seq, n] : ok) EXPECT_EQ(n, 1) << "seq " << seq;
  EXPECT_EQ(Both("sluice_lease_reclaims_total"), 0);
  ExpectCountedOnce(kEvents);
}

// A hang past the consumer timeout in a consumer that ignores its deadline (a
// stuck syscall), and the refusal of its late "success" while the retry holds
// the rows: tests/watcher/fencing_test.cc (FencingTest.StuckCall...).

}  // namespace
}  // namespace sluice
