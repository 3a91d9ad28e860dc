// Several processes on one SQLite file are several replicas: fork N children
// that claim and complete until the queue is empty, and check that every
// event was claimed exactly once. The same harness with the naive two-step
// claim must see duplicates: proof that the checker can fail.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "queue/store.h"
#include "queue/open/open_store.h"
#include "testing/testing.h"
#include "testkit/testkit.h"

namespace sluice {
namespace {

constexpr int kChildren = 4;
constexpr int kEvents = 4000;

struct HarnessResult {
  std::map<int64_t, int> claims;  // seq -> times claimed
  std::vector<int> per_child;     // rows claimed by each child
  int children_ok = 0;
  int64_t left = -1;  // live rows after the run
};

// The store, or (naive) the test kit's two-step claim over it: the bug sluice
// exists to prevent, to show the duplicate check can fail.
Result<StorePtr> OpenClaimStore(const StoreOptions& options, bool naive) {
  SLUICE_ASSIGN_OR_RETURN(StorePtr store, OpenStore(options));
  if (!naive) return store;
  return ApplyTestOnlySettings(std::move(store), options, {{"store.claim_strategy", "naive"}});
}

// Child body: claim/complete until empty, append claimed seqs to `out_path`.
// Returns the process exit code.
int ChildMain(const StoreOptions& options, bool naive, int index, int start_fd,
              const std::string& out_path) {
  auto store = OpenClaimStore(options, naive);
  if (!store.ok()) return 11;
  char go;
  if (read(start_fd, &go, 1) < 0) return 10;  // returns 0 bytes at EOF: the start signal
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 12;
  const std::string owner = "child" + std::to_string(index) + "/0";
  int idle = 0;
  while (idle < 3) {  // a few empty claims in a row: the queue is drained
    auto lease = (*store)->Claim(ClaimRequest{owner, 25, 60000});
    if (!lease.ok()) return 13;
    if (lease->events.empty()) {
      ++idle;
      usleep(20000);
      continue;
    }
    idle = 0;
    std::string line;
    for (const auto& e : lease->events) line += std::to_string(e.seq) + "\n";
    if (write(out, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 14;
    usleep(2000);  // dispatch to consumers takes a while; other replicas run meanwhile
    auto done = (*store)->Complete(CompleteRequest{lease->token, lease->events, 0, 0, {}});
    // The naive strategy lets another claimer overwrite our lease: then our
    // fenced completion is refused, which is expected there.
    if (!done.ok() && done.status().code() != Code::kLeaseLost) return 15;
  }
  close(out);
  return 0;
}

HarnessResult RunHarness(bool naive) {
  testing::TempDir dir;
  StoreOptions options;
  options.url = "sqlite:" + dir.File("shared.db");
  options.pool_size = 2;
  options.sync = false;  // durability is not what this test is about
  {
    // The parent seeds the queue and closes every connection before forking:
    // SQLite connections must not cross fork().
    auto store = OpenStore(options);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return {};
    std::vector<NewEvent> events;
    for (int i = 0; i < kEvents; ++i) {
      events.push_back({"p", "id" + std::to_string(i), R"({"event":"e","user_id":"u"})"});
    }
    EnqueueBatch batch{events};
    auto r = (*store)->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
    EXPECT_TRUE(r.ok());
  }
  int start[2];
  EXPECT_EQ(pipe(start), 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) {
    const std::string out = dir.File("claims" + std::to_string(i));
    pid_t pid = fork();
    if (pid == 0) {
      close(start[1]);
      alarm(120);  // a wedged child must not hang the suite
      _exit(ChildMain(options, naive, i, start[0], out));
    }
    pids.push_back(pid);
  }
  close(start[0]);
  close(start[1]);  // all children start together
  HarnessResult result;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++result.children_ok;
    } else {
      ADD_FAILURE() << "child " << pid << " exited with status " << status;
    }
  }
  for (int i = 0; i < kChildren; ++i) {
    std::ifstream in(dir.File("claims" + std::to_string(i)));
    int64_t seq;
    int n = 0;
    while (in >> seq) {
      ++result.claims[seq];
      ++n;
    }
    result.per_child.push_back(n);
  }
  auto store = OpenStore(options);
  if (store.ok()) {
    auto stats = (*store)->Stats();
    if (stats.ok()) result.left = stats->pending + stats->leased;
  }
  return result;
}

TEST(SqliteMultiProcessTest, FourProcessesClaimEveryEventExactlyOnce) {
  HarnessResult r = RunHarness(/*naive=*/false);
  EXPECT_EQ(r.children_ok, kChildren);
  EXPECT_EQ(r.claims.size(), static_cast<size_t>(kEvents));
  int duplicates = 0;
  for (const auto& [seq, n] : r.claims) duplicates += n - 1;
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(r.left, 0);
  int busy_children = 0;
  for (int n : r.per_child) busy_children += n > 0 ? 1 : 0;
  EXPECT_GE(busy_children, 2) << "the children did not overlap; the test proves nothing";
}

TEST(SqliteMultiProcessTest, NaiveTwoStepClaimIsCaughtDispatchingTwice) {
  HarnessResult r = RunHarness(/*naive=*/true);
  EXPECT_EQ(r.children_ok, kChildren);
  EXPECT_EQ(r.claims.size(), static_cast<size_t>(kEvents));  // nothing lost...
  int duplicates = 0;
  for (const auto& [seq, n] : r.claims) duplicates += n - 1;
  EXPECT_GT(duplicates, 0);  // ...but dispatched more than once
  std::printf("[ naive    ] %d duplicate dispatches of %d events; per child:", duplicates, kEvents);
  for (int n : r.per_child) std::printf(" %d", n);
  std::printf("\n");
}

}  // namespace
}  // namespace sluice
