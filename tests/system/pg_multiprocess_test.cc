// Replicas in separate processes on one PostgreSQL database (issue 3):
// 4 replica processes, 200,000 events with 5% duplicate submissions -> exact
// counters and users, zero duplicate dispatch; the same harness with the
// naive two-step claim must show duplicates (proof the checker can fail).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "fmt/format.h"
#include "queue/open/open_store.h"
#include "testing/pg_fixture.h"
#include "testing/pg_replica.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::PgReplicaOptions;

constexpr int kReplicas = 4;
constexpr int kUsers = 10000;
constexpr int kNames = 5;
constexpr int64_t kStartMs = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

double Seconds(std::chrono::steady_clock::time_point from) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
}

struct RunResult {
  int64_t accepted = 0;
  int64_t duplicates = 0;
  testing::DispatchCount dispatch;
  std::string aggregates_error;
};

// Forks the replicas (before this process starts any thread), enqueues
// `events` from this process in batches of 100 over 2 threads while they
// process, waits for the queue to drain, stops them and counts.
RunResult RunReplicas(const std::string& url, const testing::TempDir& dir,
                      bool naive_claim, const std::vector<NewEvent>& events,
                      bool check_aggregates) {
  RunResult out;
  std::vector<int> pids;
  std::vector<std::string> logs;
  const std::string stop = dir.File("stop");
  for (int r = 0; r < kReplicas; ++r) {
    PgReplicaOptions o;
    o.url = url;
    o.id = fmt::format("replica{}", r);
    o.naive_claim = naive_claim;
    o.loops = 2;
    o.batch = 500;
    o.dispatch_log = dir.File(fmt::format("dispatch{}.log", r));
    o.stop_file = stop;
    logs.push_back(o.dispatch_log);
    pids.push_back(testing::ForkPgReplica(o));
    EXPECT_GT(pids.back(), 0);
  }

  StoreOptions so;
  so.url = url;
  auto opened = OpenStore(so);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  if (!opened.ok()) {
    std::ofstream(stop) << "stop\n";
    for (int pid : pids) testing::WaitPid(pid);
    return out;
  }
  StorePtr store = std::move(opened).value();

  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int64_t> accepted{0}, duplicates{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> ingest;
  for (int t = 0; t < 2; ++t) {
    ingest.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t) * 100; i < events.size(); i += 200) {
        const size_t n = std::min<size_t>(100, events.size() - i);
        EnqueueBatch b{std::span<const NewEvent>(events.data() + i, n)};
        auto r = store->Enqueue(std::span<const EnqueueBatch>(&b, 1));
        if (!r.ok()) {
          failed = true;
          return;
        }
        accepted += (*r)[0].accepted;
        duplicates += (*r)[0].duplicates;
      }
    });
  }
  for (auto& t : ingest) t.join();
  const double ingest_s = Seconds(t0);
  EXPECT_FALSE(failed.load());
  out.accepted = accepted.load();
  out.duplicates = duplicates.load();

  const bool drained = testing::WaitUntil(
      [&] {
        auto s = store->Stats();
        return s.ok() && s->pending == 0 && s->leased == 0;
      },
      120s, 50ms);
  const double total_s = Seconds(t0);
  EXPECT_TRUE(drained) << "queue did not drain";
  std::ofstream(stop) << "stop\n";
  for (int pid : pids) EXPECT_EQ(testing::WaitPid(pid), 0);
  out.dispatch = testing::CountDispatches(logs);
  std::printf(
      "[ MEASURED ] %zu submitted, %lld accepted: ingest %.2f s (%.0f events/s, 2 threads, "
      "batches of 100, while processing); drained after %.2f s (%.0f events/s end to end, "
      "%d replicas x 2 loops)\n",
      events.size(), static_cast<long long>(out.accepted), ingest_s,
      static_cast<double>(events.size()) / ingest_s, total_s,
      static_cast<double>(out.accepted) / total_s, kReplicas);
  if (check_aggregates) {
    out.aggregates_error = testing::CheckAggregates(*store, testing::Expect(events), kNames);
  }
  return out;
}

TEST(PgMultiProcessTest, FourReplicasDispatchEveryEventOnceWithExactAggregates) {
  testing::TempDir dir;
  std::string error;
  const std::string url = testing::FreshPostgresUrl(&error);
  ASSERT_FALSE(url.empty()) << error;
  const auto events =
      testing::GeneratedEvents("mp", 200'000, kUsers, kNames, kStartMs, 6 * 3600 * 1000, 20);
  const int64_t distinct = testing::Expect(events).distinct;
  ASSERT_EQ(distinct, 190'000);

  RunResult r = RunReplicas(url, dir, /*naive_claim=*/false, events, true);
  EXPECT_EQ(r.accepted, distinct);
  EXPECT_EQ(r.duplicates, 10'000);
  EXPECT_EQ(r.dispatch.total, distinct) << "events dispatched, summed over replicas";
  EXPECT_EQ(r.dispatch.duplicated, 0) << "events dispatched more than once";
  EXPECT_EQ(r.aggregates_error, "");
}

TEST(PgMultiProcessTest, NaiveTwoStepClaimDispatchesDuplicates) {
  testing::TempDir dir;
  std::string error;
  const std::string url = testing::FreshPostgresUrl(&error);
  ASSERT_FALSE(url.empty()) << error;
  const auto events =
      testing::GeneratedEvents("naive", 20'000, kUsers, kNames, kStartMs, 3600 * 1000, 0);

  RunResult r = RunReplicas(url, dir, /*naive_claim=*/true, events, false);
  EXPECT_EQ(r.accepted, 20'000);
  // The checker that passes above must fail here: the same rows were
  // handed to several replicas.
  EXPECT_GT(r.dispatch.duplicated, 0);
  EXPECT_GT(r.dispatch.total, r.accepted);
  std::printf("[ MEASURED ] naive two-step claim: %lld dispatches for %lld events, %lld events "
              "dispatched more than once\n",
              static_cast<long long>(r.dispatch.total), static_cast<long long>(r.accepted),
              static_cast<long long>(r.dispatch.duplicated));
}

}  // namespace
}  // namespace sluice
