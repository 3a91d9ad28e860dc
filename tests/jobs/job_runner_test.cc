// JobRunner against a real SQLite store and a receiver on loopback: a run is
// POSTed with its Idempotency-Key and completed; a 429's Retry-After floors
// the retry; a run whose lease was lost during the handler call is not
// recorded (its late success changes nothing) and stays its new holder's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "jobs/job_runner.h"
#include "queue/open/open_store.h"
#include "queue/store_wrapper.h"
#include "testing/sink_servers.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::WaitUntil;

constexpr uint64_t kBit = uint64_t{1} << 3;

// Refuses to extend run leases: they run out while the handler works.
class NoRunHeartbeatStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<int64_t> ExtendJobRuns(int64_t, int64_t) override {
    return Status::Unavailable("test: no run heartbeat");
  }
};

class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions o;
    o.url = "sqlite:" + dir_.File("jobs.db");
    o.sync = false;
    auto s = OpenStore(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // One due run of job "j" for key k (scheduled as the job consumer does).
  void Schedule(const std::string& key) {
    NewEvent e{"p", "i-" + key, "{}"};
    EnqueueBatch batch{std::span<const NewEvent>(&e, 1)};
    ASSERT_TRUE(store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1)).ok());
    auto lease = store_->Claim(ClaimRequest{"w", 10, 30000});
    ASSERT_TRUE(lease.ok());
    CompleteRequest req{lease->token, lease->events, kBit, 0, {}};
    InStoreEffects part{.bit = kBit, .effects = {}};
    part.effects.jobs.push_back(JobDelta{"j", "p", key, 1, 5, 5, 0, 0});
    req.in_store.push_back(std::move(part));
    ASSERT_TRUE(store_->Complete(req).ok());
  }

  JobOptions Job(const std::string& url) {
    JobOptions j;
    j.name = "j";
    j.bit = 3;
    j.key = "project";
    j.url = url;
    j.timeout_ms = 5000;
    j.backoff = BackoffPolicy{.base_ms = 10, .cap_ms = 10, .max_attempts = 5, .jitter = 0};
    EXPECT_TRUE(ValidateJobOptions("job", &j).ok());
    return j;
  }

  JobRow Row(const std::string& key) {
    JobFilter f;
    f.key = key;
    auto rows = store_->ListJobs(f);
    EXPECT_TRUE(rows.ok() && rows->size() == 1);
    return rows.ok() && rows->size() == 1 ? rows->front() : JobRow{};
  }

  testing::TempDir dir_;
  StorePtr store_;
  Metrics metrics_;
};

int64_t Runs(Metrics& m, const char* result) {
  return m.GetCounter("sluice_job_runs_total", "Job runs by outcome",
                      Labels({{"job", "j"}, {"result", result}}))
      .value();
}

TEST_F(JobRunnerTest, RunIsPostedWithItsKeyRetriedAfterRetryAfterAndCompleted) {
  std::atomic<int> calls{0};
  testing::HttpReceiver receiver([&](const testing::ReceivedRequest&) {
    testing::Reply r;
    if (calls.fetch_add(1) == 0) {
      r.status = 429;
      r.headers.push_back({"Retry-After", "1"});
    }
    return r;
  });
  Schedule("u1");
  JobRunnerOptions ro;
  ro.idle_poll_min_ms = 5;
  ro.idle_poll_max_ms = 20;
  JobRunner runner(store_.get(), {Job(receiver.url("/run"))}, ro, "r", &metrics_);
  const auto start = std::chrono::steady_clock::now();
  runner.Start();
  ASSERT_TRUE(WaitUntil([&] { return Row("u1").state == "idle"; }, std::chrono::seconds(10)));
  const auto took = std::chrono::steady_clock::now() - start;
  runner.Drain();
  const std::vector<testing::ReceivedRequest> got = receiver.requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].headers.at("idempotency-key"), JobIdempotencyKey(JobRef{"j", "p", "u1"}, 1));
  EXPECT_EQ(got[1].headers.at("idempotency-key"), got[0].headers.at("idempotency-key"));
  EXPECT_EQ(got[0].headers.at("x-sluice-attempt"), "1");
  EXPECT_EQ(got[1].headers.at("x-sluice-attempt"), "2");
  EXPECT_EQ(got[0].body, got[1].body);
  EXPECT_GE(took, milliseconds(1000)) << "Retry-After: 1 was not the floor of the delay";
  EXPECT_EQ(Runs(metrics_, "retry"), 1);
  EXPECT_EQ(Runs(metrics_, "ok"), 1);
  EXPECT_EQ(Row("u1").runs_done, 1);
}

TEST_F(JobRunnerTest, LateSuccessAfterTheLeaseWasTakenOverChangesNothing) {
  std::atomic<bool> taken_over{false};
  RunLease takeover;
  Store* raw = store_.get();
  // The handler holds the call until the run's lease (300 ms, never
  // extended) ran out and another worker claimed the run, then answers 200.
  testing::HttpReceiver receiver([&](const testing::ReceivedRequest&) {
    WaitUntil(
        [&] {
          auto l = raw->ClaimJobRuns(JobClaimRequest{"other", {"j"}, 1, 30000});
          if (l.ok() && !l->runs.empty()) {
            takeover = *l;
            taken_over = true;
          }
          return taken_over.load();
        },
        std::chrono::seconds(10), milliseconds(20));
    return testing::Reply{};
  });
  Schedule("u1");
  NoRunHeartbeatStore no_heartbeat(store_.get());
  JobRunnerOptions ro;
  ro.lease_ttl_ms = 300;
  ro.heartbeat_ms = 100;
  JobRunner runner(&no_heartbeat, {Job(receiver.url("/run"))}, ro, "r", &metrics_);
  runner.Start();
  ASSERT_TRUE(WaitUntil([&] { return Runs(metrics_, "fenced") == 1; }, std::chrono::seconds(15)));
  runner.Drain();
  ASSERT_TRUE(taken_over.load());
  EXPECT_EQ(Runs(metrics_, "ok"), 0);
  const JobRow r = Row("u1");
  EXPECT_EQ(r.state, "leased");
  EXPECT_EQ(r.lease_owner, "other");
  EXPECT_EQ(r.runs_done, 0) << "the late success was recorded";
  EXPECT_TRUE(store_->CompleteJobRun(takeover.token, JobRef{"j", "p", "u1"}).ok());
}

}  // namespace
}  // namespace sluice
