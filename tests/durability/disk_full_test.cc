// A full disk under a running replica (the composition of `sluice serve`, in
// this process, its SQLite file behind testing/fault_vfs.h): from the N-th
// write on, every write answers SQLITE_FULL, as the unix VFS does on ENOSPC,
// until space returns. What must hold:
//  - ingest answers 503 with Retry-After (never a 500): the commit failed and
//    nothing of the request is stored, so the client must retry;
//  - /readyz answers 503 and says why (the store's write error), while /healthz
//    stays 200: the process is fine, its disk is not;
//  - claims and completes fail cleanly (the watcher counts the errors and backs
//    off; an interrupted Complete leaves its rows to lease expiry);
//  - when space returns everything resumes: /readyz 200 again, the clients'
//    retries are acknowledged, the queue drains, and every acknowledged event
//    is stored and counted exactly once.
#include <gtest/gtest.h>

#include <cstdio>

#include "durability/durability_util.h"
#include "testing/fault_vfs.h"
#include "testing/process.h"
#include "testing/testing.h"
#include "testkit/testkit.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

int64_t Metric(Replica& r, const char* name) {
  return r.metrics()->GetCounter(name, "", "").value();
}

TEST(DiskFull, IngestAnswers503ReadyzSaysWhyAndEverythingResumesWhenSpaceReturns) {
  FaultVfs& vfs = FaultVfs::Install();
  TempDir dir;
  const std::string db = dir.File("sluice.db");
  // A slow external consumer keeps a backlog, so claims and completes are
  // under way when the disk fills up.
  Result<Config> config = ParseConfig(
      DurabilityConfig(db, /*sync=*/true,
                       "[[consumer]]\ntype = \"users\"\n[[consumer]]\ntype = \"counters\"\n"
                       "[[consumer]]\ntype = \"test\"\nname = \"slow\"\nbit = 2\nsleep_ms = 40\n"),
      [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<std::unique_ptr<Replica>> started = Replica::Start(*config, TestkitHooks());
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  Replica& r = **started;
  const std::string url = "http://127.0.0.1:" + std::to_string(r.port());

  Ingester clients(url, "df", 2, 20, /*retry=*/true);  // retry until acknowledged, as SDKs do
  ASSERT_TRUE(WaitUntil([&] { return clients.acked() >= 400 && Metric(r, "sluice_claims_total") > 0; },
                        milliseconds(30000)));
  ASSERT_EQ(HttpGet(url + "/readyz").status, 200);
  const int64_t claim_errors = Metric(r, "sluice_claim_errors_total");
  const int64_t store_errors = Metric(r, "sluice_watcher_store_errors_total");
  const int64_t acked_before = clients.acked();

  vfs.FailWritesFrom(5);  // the disk fills up a few writes from now, mid-transaction maybe
  HttpResult ready;
  ASSERT_TRUE(WaitUntil(
      [&] {
        ready = HttpGet(url + "/readyz");
        return ready.status == 503;
      },
      milliseconds(10000)))
      << "readyz stayed " << ready.status << " with the disk full";
  EXPECT_NE(ready.body.find("disk is full"), std::string::npos) << ready.body;
  EXPECT_EQ(HttpGet(url + "/healthz").status, 200);
  // Clients are refused, claims and completes fail: give every path time to meet the full disk.
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto s = clients.statuses();
        return s[503] >= 10 && Metric(r, "sluice_claim_errors_total") +
                                       Metric(r, "sluice_watcher_store_errors_total") >
                                   claim_errors + store_errors;
      },
      milliseconds(20000)))
      << "503s: " << clients.statuses()[503];
  const int64_t acked_while_full = clients.acked() - acked_before;
  const int64_t refused_writes = vfs.full_refusals();

  vfs.SpaceReturns();
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(url + "/readyz").status == 200; }, milliseconds(10000)))
      << HttpGet(url + "/readyz").body;
  const int64_t acked_after_full = clients.acked();
  ASSERT_TRUE(WaitUntil([&] { return clients.acked() >= acked_after_full + 400; },
                        milliseconds(30000)));
  clients.Stop();
  ASSERT_TRUE(WaitQueueEmpty(*r.store(), 60000));

  const std::map<int, int64_t> statuses = clients.statuses();
  std::string answers;
  for (const auto& [code, n] : statuses) answers += " " + std::to_string(code) + ":" + std::to_string(n);
  std::printf(
      "disk full: %lld writes refused with SQLITE_FULL; answers%s; %lld events acknowledged "
      "while full (commits that finished before the N-th write); claim errors +%lld, "
      "watcher store errors +%lld; readyz said: %s\n",
      static_cast<long long>(refused_writes), answers.c_str(),
      static_cast<long long>(acked_while_full),
      static_cast<long long>(Metric(r, "sluice_claim_errors_total") - claim_errors),
      static_cast<long long>(Metric(r, "sluice_watcher_store_errors_total") - store_errors),
      ready.body.c_str());
  EXPECT_GT(refused_writes, 0);
  EXPECT_EQ(clients.bad_refusals(), 0) << "a refusal that was not 503 with Retry-After";
  EXPECT_EQ(statuses.count(500), 0u);

  // Nothing acknowledged is lost, and every stored event is counted once.
  const std::vector<ClientEvent> sent = clients.events();
  const std::set<std::string> stored = StoredIds(db, sent);
  std::vector<const ClientEvent*> stored_events;
  int64_t lost = 0;
  for (const ClientEvent& e : sent) {
    if (stored.count(e.insert_id)) {
      stored_events.push_back(&e);
    } else if (e.acked_ms > 0) {
      ++lost;
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(static_cast<int64_t>(stored.size()), static_cast<int64_t>(stored_events.size()))
      << "stored events nobody sent";
  EXPECT_EQ(CheckAggregates(*r.store(), stored_events), "");
  r.Shutdown();
}

}  // namespace
}  // namespace sluice::testing
