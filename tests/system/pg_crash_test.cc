// PostgreSQL crashes under running replicas: three `sluice serve` processes on
// a private cluster ingest (clients retrying until acknowledged, as SDKs do)
// and process (users, counters, and a webhook to a receiver in this process);
// in the middle of the load the server is stopped with `pg_ctl stop -m
// immediate` — no shutdown checkpoint, and the commits that did not wait for
// the WAL flush (the lease writes) are lost — and later its postmaster is
// killed with -9; each time it is started again (crash recovery). The
// replicas are not restarted. After the queue drains:
//  - every acknowledged event is counted exactly once (users, hourly counters);
//  - every event reached the webhook receiver, and every event it received
//    twice was in flight at a crash (a lease whose done bits or Complete the
//    crash lost, or that could not be written while the server was down, is
//    taken over after it expires and delivered again);
//  - the receiver's count agrees with sluice_deliveries_total.
// (Every earlier PostgreSQL restart test was a clean `-m fast` shutdown.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "system/system_util.h"
#include "testing/dispatch_receiver.h"
#include "testing/pg_fixture.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kReplicas = 3;
constexpr int64_t kEvents = 30000;
constexpr int64_t kLeaseTtlMs = 2000;

TEST(PgCrash, EveryAcknowledgedEventIsCountedOnceAcrossAnImmediateStopAndAKilledPostmaster) {
  TempDir dir;
  PgCluster pg;
  ASSERT_EQ(pg.Start(), "");
  ASSERT_EQ(PostgresExec(pg.url(), "CREATE DATABASE crash"), "");
  const std::string store_url = PostgresUrlWithDatabase(pg.url(), "crash");

  DispatchReceiver receiver;
  const std::string config = dir.File("sluice.toml");
  std::ofstream(config) << ReplicaConfig(
      store_url,
      "busy_timeout = \"3s\"\n[watcher]\nloops = 2\nbatch = 100\nlease_ttl = \"2s\"\n"
      "backoff_base = \"50ms\"\nbackoff_cap = \"500ms\"\n"
      "[[consumer]]\ntype = \"users\"\n[[consumer]]\ntype = \"counters\"\n" +
          receiver.ConsumerToml("hook", 2));
  std::vector<std::unique_ptr<SluiceProcess>> replicas;
  std::vector<std::string> urls;
  for (int i = 0; i < kReplicas; ++i) {
    SluiceProcessOptions o;
    o.dir = dir.path();
    o.args = {"--config", config, "--replica-id", "r" + std::to_string(i)};
    o.log_name = "replica-" + std::to_string(i) + ".log";
    replicas.push_back(std::make_unique<SluiceProcess>(o));
    ASSERT_TRUE(replicas.back()->Start()) << replicas.back()->error();
    urls.push_back(replicas.back()->url());
  }

  // Paced clients (2,000 events/s): the load lasts long enough to crash the
  // server twice inside it, and resumes at the same pace after each crash.
  const Workload w = MakeWorkload(kEvents, 300, 4, 0.05, 21);
  std::atomic<int64_t> acked{0};
  SendStats sent;
  std::thread sender(
      [&] { sent = SendWorkload(w, urls, 50, 4, /*retry_for_ms=*/90000, &acked, 2000); });

  // The crashes, each once the load is under way: acknowledgements still
  // coming in and the webhook receiving.
  std::vector<FaultWindow> crashes;
  auto crash = [&](const char* cause, int64_t after_acked, bool kill9) {
    const int64_t received = receiver.counts().deliveries;
    ASSERT_TRUE(WaitUntil(
        [&] { return acked.load() >= after_acked && receiver.counts().deliveries > received; },
        seconds(120)))
        << cause << ": acked " << acked.load();
    FaultWindow f{cause, SteadyNowMs(), 0};
    ASSERT_EQ(kill9 ? pg.KillPostmaster() : pg.StopImmediate(), "");
    EXPECT_LT(acked.load(), static_cast<int64_t>(w.unique.size() + w.duplicate_of.size()))
        << cause << " came after the load";
    std::this_thread::sleep_for(milliseconds(500));  // down for a moment
    ASSERT_EQ(pg.StartAgain(), "");
    f.end_ms = SteadyNowMs();
    std::printf("%s at %lld acknowledged events, down %lld ms\n", cause,
                static_cast<long long>(acked.load()), static_cast<long long>(f.end_ms - f.start_ms));
    crashes.push_back(f);
  };
  crash("pg immediate", kEvents / 4, false);
  // Soon after the first: once the server is back, ingest catches up fast.
  crash("pg kill -9", acked.load() + 2000, true);
  sender.join();

  EXPECT_EQ(sent.failed_requests, 0) << "batches never acknowledged";
  // Every batch was acknowledged in the end. A batch whose COMMIT reached the
  // server but whose answer the crash cut (libpq reports the connection lost,
  // so sluice answered 503) is committed all the same; its retry, the same
  // insert_ids, is answered as duplicates. So accepted + duplicates is every
  // event sent, accepted alone may fall short of the uniques by such batches,
  // and the receiver must see every unique.
  const int64_t sent_events = static_cast<int64_t>(w.unique.size() + w.duplicate_of.size());
  EXPECT_EQ(sent.accepted + sent.duplicates, sent_events);
  EXPECT_LE(sent.accepted, static_cast<int64_t>(w.unique.size()));
  const int64_t ambiguous =
      static_cast<int64_t>(w.unique.size()) - sent.accepted;  // committed, answer lost
  ASSERT_TRUE(WaitUntil([&] { return QueueBacklog(urls[0]) == 0; }, seconds(180), milliseconds(200)));
  EXPECT_EQ(CheckAggregates(w, urls[1]), "");

  // At the receiver: everything arrived; each repeat was in flight at a crash.
  const DispatchReceiver::Counts got = receiver.counts();
  EXPECT_EQ(got.distinct, static_cast<int64_t>(w.unique.size()));
  const RedeliveryExplanation why =
      ExplainRedeliveries(receiver.deliveries(), crashes, 2 * kLeaseTtlMs + 2000);
  std::string examples;
  for (const std::string& e : why.examples) examples += "\n  " + e;
  EXPECT_EQ(why.unexplained, 0) << examples;
  int64_t metric = 0, skipped = 0;
  for (auto& r : replicas) {
    EXPECT_TRUE(r->Running()) << "a replica exited: " << r->ReadLog().substr(0, 2000);
    const std::string m = HttpGet(r->Url("/metrics")).body;
    metric += MetricSum(m, "sluice_deliveries_total", "consumer=\"hook\"");
    skipped += MetricSum(m, "sluice_webhook_skipped_total");
  }
  // sluice counts every event it handed the webhook consumer; the receiver
  // those that arrived. A redelivery to the replica whose webhook already had
  // the batch acknowledged is skipped without a request (per batch:
  // sluice_webhook_skipped_total); a POST cut by a crash is counted by sluice only.
  EXPECT_GE(metric, got.deliveries);
  std::printf(
      "pg crash: %lld events acknowledged as accepted (%lld more committed before an answer the "
      "crash cut, acknowledged as duplicates on retry), %lld received by the webhook (%lld distinct), "
      "redeliveries %s; sluice_deliveries_total{hook} %lld, batches skipped as already "
      "acknowledged %lld\n",
      static_cast<long long>(sent.accepted), static_cast<long long>(ambiguous),
      static_cast<long long>(got.deliveries), static_cast<long long>(got.distinct), why.Summary().c_str(), static_cast<long long>(metric),
      static_cast<long long>(skipped));
  for (auto& r : replicas) EXPECT_EQ(r->Terminate(), 0);
}

}  // namespace
}  // namespace sluice::testing
