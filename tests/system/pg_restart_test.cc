// PostgreSQL restarts (fast shutdown + start) while replica processes ingest
// and process: every acknowledged event is counted exactly once afterwards,
// and the replicas recover without being restarted themselves (issue 3).
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
constexpr int64_t kEventsPerReplica = 15'000;
constexpr int kNames = 4;

TEST(PgRestartTest, EveryAcknowledgedEventIsCountedOnceAcrossAFastRestart) {
  testing::TempDir dir;
  // A private cluster: stopping it must not disturb tests running beside us.
  testing::PgCluster cluster;
  ASSERT_EQ(cluster.Start(), "");
  ASSERT_EQ(testing::PostgresExec(cluster.url(), "CREATE DATABASE restart"), "");
  const std::string url = testing::PostgresUrlWithDatabase(cluster.url(), "restart");

  // Replicas ingest their own streams (5% duplicate submissions; a batch is
  // retried until acknowledged) and process everyone's events.
  std::vector<int> pids;
  std::vector<PgReplicaOptions> replicas;
  const std::string stop = dir.File("stop");
  for (int r = 0; r < kReplicas; ++r) {
    PgReplicaOptions o;
    o.url = url;
    o.id = fmt::format("replica{}", r);
    o.loops = 2;
    o.batch = 200;
    o.lease_ttl_ms = 3000;  // work lost with a connection comes back soon
    o.busy_timeout_ms = 3000;
    o.stop_file = stop;
    o.ingest_events = kEventsPerReplica;
    o.ingest_batch = 50;
    o.ingest_users = 3000;
    o.ingest_names = kNames;
    o.ingest_start_ms = 1'767'225'600'000;
    o.ingest_done_file = dir.File(fmt::format("ingested{}", r));
    replicas.push_back(o);
    pids.push_back(testing::ForkPgReplica(o));
    ASSERT_GT(pids.back(), 0);
  }

  StoreOptions so;
  so.url = url;
  so.busy_timeout_ms = 3000;
  StorePtr store;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto s = OpenStore(so);
        if (s.ok()) store = std::move(s).value();
        return store != nullptr;
      },
      30s, 100ms));
  auto processed = [&] {
    CounterQuery q;
    q.project = "default";
    q.granularity = Granularity::kDay;
    q.from_ms = 0;
    q.to_ms = int64_t{1} << 50;
    int64_t n = 0;
    for (int k = 0; k < kNames; ++k) {
      q.event = fmt::format("e{}", k);
      auto points = store->QueryCounters(q);
      if (!points.ok()) return int64_t{-1};
      for (const auto& p : *points) n += p.count;
    }
    return n;
  };
  // Restart in the middle of the work: ingest and processing both under way.
  ASSERT_TRUE(testing::WaitUntil([&] { return processed() >= 5'000; }, 60s, 50ms));
  ASSERT_EQ(cluster.StopFast(), "");
  // While it is down every store call fails fast; the replicas keep retrying.
  EXPECT_EQ(store->NowMs().status().code(), Code::kUnavailable);
  ASSERT_EQ(cluster.StartAgain(), "");

  auto all_ingested = [&] {
    for (const auto& o : replicas) {
      if (!std::ifstream(o.ingest_done_file).good()) return false;
    }
    return true;
  };
  EXPECT_TRUE(testing::WaitUntil(all_ingested, 90s, 100ms)) << "ingest did not finish";
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto s = store->Stats();
        return s.ok() && s->pending == 0 && s->leased == 0;
      },
      90s, 100ms))
      << "queue did not drain";
  std::ofstream(stop) << "stop\n";
  for (int pid : pids) EXPECT_EQ(testing::WaitPid(pid), 0);

  std::vector<NewEvent> all;
  for (const auto& o : replicas) {
    auto events = testing::GeneratedEvents(o.id, o.ingest_events, o.ingest_users, o.ingest_names,
                                           o.ingest_start_ms, o.ingest_span_ms,
                                           o.ingest_duplicate_every);
    all.insert(all.end(), events.begin(), events.end());
  }
  const testing::ExpectedAggregates expected = testing::Expect(all);
  EXPECT_EQ(processed(), expected.distinct);
  EXPECT_EQ(testing::CheckAggregates(*store, expected, kNames), "");
  auto dead = store->Stats();
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->dead, 0);
}

}  // namespace
}  // namespace sluice
