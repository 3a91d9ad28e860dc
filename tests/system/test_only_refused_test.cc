// The shipped binary has no switch that weakens a guarantee: every test-only
// setting (a naive claim, fencing off, ingest fault injection, the "test"
// consumer) is refused at start-up with an error naming the key, and the
// code behind them is not in the binary at all. The test binary
// sluice-testkit takes the same settings (the controls of the other tests
// depend on it).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "testing/process.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using std::chrono::seconds;
using testing::kSluiceBinary;
using testing::kTestkitBinary;
using testing::RunSluice;

struct TestOnlyKey {
  const char* name;     // the key as the error must name it
  const char* store;    // lines for [store], or ""
  const char* ingest;   // lines for [ingest], or ""
  const char* consumer; // a [[consumer]] table, or ""
};

const TestOnlyKey kKeys[] = {
    {"store.claim_strategy", "claim_strategy = \"naive\"\n", "", ""},
    {"store.fencing", "fencing = false\n", "", ""},
    {"ingest.fail_first_requests", "", "fail_first_requests = 2\n", ""},
    {"ingest.fail_after_commit", "", "fail_after_commit = true\n", ""},
    {"consumer[0].type", "", "", "[[consumer]]\ntype = \"test\"\nname = \"t\"\nbit = 3\n"},
};

// A config file in `dir` that sets `key` and nothing else unusual.
std::string ConfigWith(const testing::TempDir& dir, const TestOnlyKey& key) {
  const std::string path = dir.File("sluice.toml");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite:"
                      << dir.File("sluice.db") << "\"\n"
                      << key.store << "[ingest]\n"
                      << key.ingest << key.consumer;
  return path;
}

TEST(TestOnlySettings, ShippedBinaryRefusesEachTestOnlyKeyNamingIt) {
  for (const TestOnlyKey& key : kKeys) {
    testing::TempDir dir;
    auto r = RunSluice({"serve", "--config", ConfigWith(dir, key)}, {}, seconds(30),
                       kSluiceBinary);
    EXPECT_EQ(r.exit_code, 2) << key.name << ": " << r.out << r.err;
    EXPECT_NE(r.err.find(key.name), std::string::npos) << key.name << ": " << r.err;
    EXPECT_NE(r.err.find("test-only"), std::string::npos) << key.name << ": " << r.err;
  }
}

TEST(TestOnlySettings, ShippedBenchHasNoTestOnlyFlags) {
  testing::TempDir dir;
  const std::string url = "sqlite:" + dir.File("b.db");
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--test-only", "store.claim_strategy=naive"},
        std::vector<std::string>{"--claim", "naive"}}) {
    std::vector<std::string> args = {"bench", "process", "--store", url, "--preload", "10"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto r = RunSluice(args, {}, seconds(30), kSluiceBinary);
    EXPECT_EQ(r.exit_code, 2) << flags[0] << ": " << r.out << r.err;
  }
}

TEST(TestOnlySettings, TestBinaryAcceptsThem) {
  for (const TestOnlyKey& key : kKeys) {
    testing::TempDir dir;
    testing::SluiceProcessOptions o;
    o.binary = kTestkitBinary;
    o.dir = dir.path();
    o.args = {"--config", ConfigWith(dir, key)};
    testing::SluiceProcess p(o);
    EXPECT_TRUE(p.Start()) << key.name << ": " << p.error();
    EXPECT_EQ(p.Terminate(), 0) << key.name;
  }
}

// The code of the test hooks is not in the shipped binary: none of the names
// and SQL that only the test kit has appear in it (they do in the test binary,
// which shows the check can fail).
TEST(TestOnlySettings, ShippedBinaryContainsNoTestHookCode) {
  auto read = [](const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string shipped = read(kSluiceBinary);
  const std::string testkit = read(kTestkitBinary);
  ASSERT_GT(shipped.size(), 100000u);
  for (const char* marker : {"NaiveClaimStore", "UnfencedStore", "IngestFaultStore",
                             "FlakyConsumer", "injected failure", "naive claim"}) {
    EXPECT_EQ(shipped.find(marker), std::string::npos) << marker;
    EXPECT_NE(testkit.find(marker), std::string::npos) << marker;
  }
}

}  // namespace
}  // namespace sluice
