// Smoke runs of every benchmark at a tiny size: `sluice bench ingest|claim|
// process` against real SQLite, PostgreSQL and a real `sluice serve`, and each
// bench/ script with SIZE=smoke. They prove the benches work; the figures come
// from `make bench` (BENCHMARKS.md), never from CI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "testing/pg_fixture.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::kTestkitBinary;
using testing::RunSluice;
using testing::TempDir;

// The number after "key": in a flat JSON text; -1 when absent.
double JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtod(json.c_str() + at + needle.size(), nullptr);
}

class ServeFixture {
 public:
  ServeFixture() {
    testing::SluiceProcessOptions o;
    o.dir = dir_.path();
    o.args = {"--store", "sqlite:" + dir_.File("sluice.db")};
    proc_ = std::make_unique<testing::SluiceProcess>(o);
  }
  testing::SluiceProcess& proc() { return *proc_; }

 private:
  TempDir dir_;
  std::unique_ptr<testing::SluiceProcess> proc_;
};

TEST(BenchIngest, EveryEventIsAcknowledgedAndDuplicatesAreDropped) {
  ServeFixture serve;
  ASSERT_TRUE(serve.proc().Start()) << serve.proc().error();
  auto r =
      RunSluice({"bench", "ingest", "--url", serve.proc().Url("/v1/events"), "--events", "2000",
                 "--batch", "100", "--connections", "4", "--dup-frac", "0.1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "requests_failed"), 0) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "events_ok"), 2000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "accepted") + JsonNumber(r.out, "duplicates"), 2000) << r.out;
  EXPECT_GT(JsonNumber(r.out, "duplicates"), 0) << r.out;
  EXPECT_GT(JsonNumber(r.out, "events_per_s"), 0) << r.out;
}

TEST(BenchIngest, RandomIdsAreStillDistinctSoEveryEventIsAccepted) {
  ServeFixture serve;
  ASSERT_TRUE(serve.proc().Start()) << serve.proc().error();
  auto r = RunSluice({"bench", "ingest", "--url", serve.proc().Url("/v1/events"), "--events",
                      "3000", "--batch", "100", "--connections", "4", "--random-ids", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "events_ok"), 3000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "accepted"), 3000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "duplicates"), 0) << r.out;
}

TEST(BenchIngest, GzipBodiesAtATargetRateAreAccepted) {
  ServeFixture serve;
  ASSERT_TRUE(serve.proc().Start()) << serve.proc().error();
  auto r = RunSluice({"bench", "ingest", "--url", serve.proc().url(), "--events", "1000", "--batch",
                      "50", "--connections", "2", "--gzip", "--rate", "5000"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("events/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("accepted 1000"), std::string::npos) << r.out;
}

TEST(BenchIngest, RateRunReportsAckLatencyPerWindowOfSendTimes) {
  ServeFixture serve;
  ASSERT_TRUE(serve.proc().Start()) << serve.proc().error();
  // 2,000 events at 2,000/s: sends due over 1 s, so two windows of 0.5 s.
  auto r = RunSluice({"bench", "ingest", "--url", serve.proc().url(), "--events", "2000", "--batch",
                      "50", "--connections", "2", "--rate", "2000", "--window", "0.5", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const size_t windows = r.out.find("\"windows\":[");
  ASSERT_NE(windows, std::string::npos) << r.out;
  int64_t events = 0;
  int n = 0;
  for (size_t at = r.out.find("\"start_s\":", windows); at != std::string::npos;
       at = r.out.find("\"start_s\":", at + 1)) {
    ++n;
    events += static_cast<int64_t>(JsonNumber(r.out.substr(at), "events_ok"));
  }
  EXPECT_EQ(n, 2) << r.out;
  EXPECT_EQ(events, 2000) << r.out;
}

TEST(BenchIngest, UnreachableServerIsAnError) {
  const int port = testing::FreePort();
  auto r = RunSluice({"bench", "ingest", "--url",
                      "http://127.0.0.1:" + std::to_string(port) + "/v1/events", "--events", "100",
                      "--connections", "1"});
  EXPECT_NE(r.exit_code, 0) << r.out;
}

TEST(BenchClaim, SqliteClaimRoundsAreTimed) {
  TempDir dir;
  auto r = RunSluice({"bench", "claim", "--store", "sqlite:" + dir.File("s.db"), "--preload",
                      "3000", "--claims", "3", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "rounds"), 3) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "claimed"), 1500) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "pending_before"), 3000) << r.out;
}

TEST(BenchClaim, PostgresClaimRoundsAreTimed) {
  std::string error;
  const std::string url = testing::FreshPostgresUrl(&error);
  ASSERT_FALSE(url.empty()) << error;
  auto r =
      RunSluice({"bench", "claim", "--store", url, "--preload", "2000", "--claims", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "rounds"), 2) << r.out;
}

TEST(BenchProcess, SqliteUsersAndCountersDrainWithoutDuplicates) {
  TempDir dir;
  auto r = RunSluice({"bench", "process", "--store", "sqlite:" + dir.File("s.db"), "--preload",
                      "1000", "--consumers", "users,counters", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "completed"), 1000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "duplicate_dispatches"), 0) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "pending_after"), 0) << r.out;
}

TEST(BenchProcess, PostgresTestConsumerReplicasDrainWithoutDuplicates) {
  std::string error;
  const std::string url = testing::FreshPostgresUrl(&error);
  ASSERT_FALSE(url.empty()) << error;
  auto r =
      RunSluice({"bench", "process", "--store", url, "--preload", "1000", "--consumers", "test",
                 "--consumer-opt", "sleep_ms=1", "--replicas", "2", "--batch", "50", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "completed"), 1000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "duplicate_dispatches"), 0) << r.out;
}

TEST(BenchProcess, NaiveClaimRunsForTheDuration) {
  TempDir dir;
  auto r = RunSluice({"bench", "process", "--store", "sqlite:" + dir.File("s.db"), "--preload",
                      "2000", "--test-only", "store.claim_strategy=naive", "--consumers", "test",
                      "--consumer-opt", "sleep_ms=2", "--replicas", "2", "--batch", "20",
                      "--duration", "1", "--json"},
                     {}, std::chrono::seconds(60), kTestkitBinary);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_GT(JsonNumber(r.out, "completed"), 0) << r.out;
  EXPECT_NE(r.out.find("\"claim_strategy\":\"naive\""), std::string::npos) << r.out;
}

TEST(BenchCeiling, SqliteWritesEveryRowAndDeletesTheQueueRows) {
  TempDir dir;
  auto r = RunSluice({"bench", "ceiling", "--store", "sqlite:" + dir.File("s.db"), "--events",
                      "2000", "--txn-events", "1000", "--template-events", "600", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "events"), 2000) << r.out;
  // Two transactions of rows, one more deleting the last one's queue rows.
  EXPECT_EQ(JsonNumber(r.out, "transactions"), 3) << r.out;
  // Queue row, dedup row, delete, and at least the user and counter rows.
  EXPECT_GE(JsonNumber(r.out, "rows_per_event"), 4) << r.out;
  // The ceiling refuses a store holding events: a second run succeeds only
  // because the first deleted every queue row it wrote.
  auto again = RunSluice({"bench", "ceiling", "--store", "sqlite:" + dir.File("s.db"), "--events",
                          "500", "--txn-events", "500", "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
}

TEST(BenchCeiling, PostgresWritesEveryRowAndDeletesTheQueueRows) {
  std::string error;
  const std::string url = testing::FreshPostgresUrl(&error);
  ASSERT_FALSE(url.empty()) << error;
  auto r = RunSluice({"bench", "ceiling", "--store", url, "--events", "2000", "--txn-events",
                      "1000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(JsonNumber(r.out, "events"), 2000) << r.out;
  EXPECT_EQ(JsonNumber(r.out, "transactions"), 3) << r.out;
  EXPECT_GE(JsonNumber(r.out, "rows_per_event"), 4) << r.out;
}

// Runs bench/NAME.sh at SIZE=smoke; its results go to a temp dir.
void RunScript(const std::string& name) {
  TempDir results;
  const std::string bin = SLUICE_BINARY;
  const std::string build_dir = std::filesystem::path(bin).parent_path().string();
  const std::string cmd = "SIZE=smoke SLUICE='" + bin + "' SLUICE_TESTKIT='" + kTestkitBinary +
                          "' RESULTS='" + results.path() +
                          "' bash '" SLUICE_SOURCE_DIR "/bench/" + name + ".sh' '" + build_dir +
                          "' >'" + results.File("out.log") + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream log(results.File("out.log"));
  const std::string out((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << "\n" << out;
  EXPECT_TRUE(std::filesystem::exists(results.File(name + ".json"))) << out;
}

TEST(BenchScripts, IngestRunsAtSmokeSize) { RunScript("ingest"); }
TEST(BenchScripts, ProcessRunsAtSmokeSize) { RunScript("process"); }
TEST(BenchScripts, ClaimRunsAtSmokeSize) { RunScript("claim"); }
TEST(BenchScripts, ScalingRunsAtSmokeSize) { RunScript("scaling"); }
TEST(BenchScripts, PeersRunsAtSmokeSize) { RunScript("peers"); }
TEST(BenchScripts, SustainedRunsAtSmokeSize) { RunScript("sustained"); }

}  // namespace
}  // namespace sluice
