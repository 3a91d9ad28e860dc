#include "ingest/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "queue/open/open_store.h"
#include "queue/store_wrapper.h"
#include "testing/fake_clock.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::WaitUntil;

// Forwards to a real SQLite store; Enqueue can be held at a gate so a test
// can pile requests up behind a commit in progress.
class GatedStore final : public StoreWrapper {
 public:
  explicit GatedStore(StorePtr inner) : StoreWrapper(std::move(inner)) {}

  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = false;
    }
    cv_.notify_all();
  }
  int enqueue_calls() const { return calls_.load(); }
  int waiting() const { return waiting_.load(); }

  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> b) override {
    calls_++;
    {
      std::unique_lock<std::mutex> lock(mu_);
      waiting_++;
      cv_.wait(lock, [this] { return !closed_; });
      waiting_--;
    }
    return StoreWrapper::Enqueue(b);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  std::atomic<int> calls_{0};
  std::atomic<int> waiting_{0};
};

std::vector<NewEvent> Rows(const std::string& prefix, int n) {
  std::vector<NewEvent> rows;
  for (int i = 0; i < n; ++i) {
    rows.push_back(
        {"default", prefix + std::to_string(i), R"({"event":"e","user_id":"u","time":1})"});
  }
  return rows;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto inner = OpenStore({.url = "sqlite:" + dir_.File("db")});
    ASSERT_TRUE(inner.ok()) << inner.status().ToString();
    store_ = std::make_unique<GatedStore>(std::move(inner).value());
  }

  testing::TempDir dir_;
  std::unique_ptr<GatedStore> store_;
  Metrics metrics_;
};

TEST_F(GroupCommitTest, RequestsQueuedBehindACommitShareOneTransaction) {
  std::atomic<int> commits{0};
  GroupCommitter gc(store_.get(), {}, &metrics_, [&] { commits++; });
  store_->Close();
  std::mutex mu;
  std::vector<EnqueueResult> results(6);
  std::atomic<int> done{0};
  ASSERT_TRUE(gc.Submit(Rows("first", 1), [&](Result<EnqueueResult> r) {
                  ASSERT_TRUE(r.ok());
                  results[0] = *r;
                  done++;
                }).ok());
  ASSERT_TRUE(WaitUntil([&] { return store_->waiting() == 1; }, std::chrono::seconds(5)));
  for (int i = 1; i < 6; ++i) {
    ASSERT_TRUE(gc.Submit(Rows("r" + std::to_string(i) + "-", i), [&, i](Result<EnqueueResult> r) {
                    ASSERT_TRUE(r.ok());
                    std::lock_guard<std::mutex> lock(mu);
                    results[i] = *r;
                    done++;
                  }).ok());
  }
  store_->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 6; }, std::chrono::seconds(5)));
  EXPECT_EQ(store_->enqueue_calls(), 2);  // the first alone, then the five together
  EXPECT_EQ(commits.load(), 2);
  for (int i = 1; i < 6; ++i) EXPECT_EQ(results[i].accepted, i);
}

TEST_F(GroupCommitTest, GroupsNeverExceedMaxEventsButNeverSplitARequest) {
  GroupCommitOptions o;
  o.max_group_events = 10;
  GroupCommitter gc(store_.get(), o, &metrics_, nullptr);
  store_->Close();
  std::atomic<int> done{0};
  auto count = [&](Result<EnqueueResult> r) {
    EXPECT_TRUE(r.ok());
    done++;
  };
  ASSERT_TRUE(gc.Submit(Rows("a", 1), count).ok());
  ASSERT_TRUE(WaitUntil([&] { return store_->waiting() == 1; }, std::chrono::seconds(5)));
  ASSERT_TRUE(gc.Submit(Rows("b", 6), count).ok());
  ASSERT_TRUE(gc.Submit(Rows("c", 6), count).ok());   // 12 > 10: next group
  ASSERT_TRUE(gc.Submit(Rows("d", 25), count).ok());  // alone, larger than the cap
  store_->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 4; }, std::chrono::seconds(5)));
  EXPECT_EQ(store_->enqueue_calls(), 4);
}

TEST_F(GroupCommitTest, FullQueueRefusesWithBusy) {
  GroupCommitOptions o;
  o.max_queued_events = 10;
  GroupCommitter gc(store_.get(), o, &metrics_, nullptr);
  store_->Close();
  std::atomic<int> done{0};
  auto count = [&](Result<EnqueueResult>) { done++; };
  ASSERT_TRUE(gc.Submit(Rows("a", 1), count).ok());
  ASSERT_TRUE(WaitUntil([&] { return store_->waiting() == 1; }, std::chrono::seconds(5)));
  ASSERT_TRUE(gc.Submit(Rows("b", 8), count).ok());
  Status st = gc.Submit(Rows("c", 5), count);
  EXPECT_EQ(st.code(), Code::kBusy);
  store_->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 2; }, std::chrono::seconds(5)));
  EXPECT_TRUE(gc.Submit(Rows("c", 5), count).ok());
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 3; }, std::chrono::seconds(5)));
}

TEST_F(GroupCommitTest, FailedCommitFailsEveryMemberAndStoresNothing) {
  ASSERT_EQ(testing::InjectEnqueueFailure("sqlite", "sqlite:" + dir_.File("db"), "poison"), "");
  std::atomic<int> commits{0};
  GroupCommitter gc(store_.get(), {}, &metrics_, [&] { commits++; });
  store_->Close();
  std::atomic<int> failed{0}, done{0};
  auto check = [&](Result<EnqueueResult> r) {
    if (!r.ok()) failed++;
    done++;
  };
  ASSERT_TRUE(gc.Submit(Rows("x", 1), check).ok());
  ASSERT_TRUE(WaitUntil([&] { return store_->waiting() == 1; }, std::chrono::seconds(5)));
  // One group: an innocent request and one carrying the poisoned row.
  ASSERT_TRUE(gc.Submit(Rows("innocent", 3), check).ok());
  std::vector<NewEvent> bad = Rows("y", 2);
  bad.push_back({"default", "poison", R"({"event":"e","user_id":"u","time":1})"});
  ASSERT_TRUE(gc.Submit(std::move(bad), check).ok());
  store_->Open();
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 3; }, std::chrono::seconds(5)));
  EXPECT_EQ(failed.load(), 2);
  EXPECT_EQ(commits.load(), 1);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 1);  // only the first group's row
}

// While slowed down, the committer gathers for slow_down_wait_ms on its
// clock: requests arriving meanwhile join the group, which commits only once
// that clock has moved on.
TEST_F(GroupCommitTest, SlowDownGathersOnTheClockThenCommitsOneGroup) {
  testing::FakeClock clock;
  GroupCommitOptions o;
  o.slow_down_wait_ms = 50;
  GroupCommitter gc(store_.get(), o, &metrics_, nullptr, {}, &clock);
  gc.SetSlowDown(true);
  std::atomic<int> done{0};
  auto count = [&](Result<EnqueueResult> r) {
    EXPECT_TRUE(r.ok());
    done++;
  };
  ASSERT_TRUE(gc.Submit(Rows("a", 1), count).ok());
  ASSERT_TRUE(WaitUntil([&] { return clock.waiters() == 1; }, std::chrono::seconds(5)));
  ASSERT_TRUE(gc.Submit(Rows("b", 2), count).ok());
  clock.Advance(49);
  EXPECT_EQ(store_->enqueue_calls(), 0);
  EXPECT_EQ(done.load(), 0);
  clock.Advance(1);
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(store_->enqueue_calls(), 1);  // both requests in one transaction
}

TEST_F(GroupCommitTest, SlowDownWaitEndsOnceAFullGroupIsQueued) {
  testing::FakeClock clock;
  GroupCommitOptions o;
  o.max_group_events = 10;
  o.slow_down_wait_ms = 3600 * 1000;  // never reached: the clock does not move
  GroupCommitter gc(store_.get(), o, &metrics_, nullptr, {}, &clock);
  gc.SetSlowDown(true);
  std::atomic<int> done{0};
  auto count = [&](Result<EnqueueResult>) { done++; };
  ASSERT_TRUE(gc.Submit(Rows("a", 4), count).ok());
  ASSERT_TRUE(WaitUntil([&] { return clock.waiters() == 1; }, std::chrono::seconds(5)));
  ASSERT_TRUE(gc.Submit(Rows("b", 6), count).ok());  // 10 events: a full group
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(store_->enqueue_calls(), 1);
}

TEST_F(GroupCommitTest, StopCommitsWhatIsQueuedThenRefuses) {
  auto gc =
      std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{}, &metrics_, nullptr);
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(gc->Submit(Rows("s" + std::to_string(i) + "-", 3), [&](Result<EnqueueResult> r) {
                    if (r.ok() && r->accepted == 3) ok++;
                  }).ok());
  }
  gc->Stop();
  EXPECT_EQ(ok.load(), 20);
  EXPECT_EQ(gc->Submit(Rows("late", 1), nullptr).code(), Code::kUnavailable);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 60);
}

TEST_F(GroupCommitTest, CommittedHookSeesTheGroupsEventsAfterTheyWereAnswered) {
  std::mutex mu;
  std::vector<std::string> seen;  // insert ids, in hook order
  std::vector<int64_t> accepted;
  std::atomic<int> answered{0};
  std::atomic<int> answered_before_hook{-1};
  GroupCommitter gc(store_.get(), {}, &metrics_, nullptr,
                    [&](std::span<const EnqueueBatch> batches,
                        std::span<const EnqueueResult> results) {
                      std::lock_guard<std::mutex> lock(mu);
                      answered_before_hook = answered.load();
                      for (const EnqueueBatch& b : batches) {
                        for (const NewEvent& e : b.events) seen.push_back(e.insert_id);
                      }
                      for (const EnqueueResult& r : results) accepted.push_back(r.accepted);
                    });
  ASSERT_TRUE(gc.Submit(Rows("h", 3), [&](Result<EnqueueResult> r) {
                  ASSERT_TRUE(r.ok());
                  answered++;
                }).ok());
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return seen.size() == 3;
      },
      std::chrono::seconds(5)));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(answered_before_hook.load(), 1);  // the request was answered first
  EXPECT_EQ(seen.front(), "h0");
  ASSERT_EQ(accepted.size(), 1u);
  EXPECT_EQ(accepted[0], 3);
}

}  // namespace
}  // namespace sluice
