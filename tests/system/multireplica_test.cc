// Several `sluice serve` replicas on one SQLite file: exact aggregates, zero
// duplicate dispatch, crash recovery through lease expiry — and the same
// checker failing against the naive two-step claim. Dispatches are counted
// twice: independently, by a webhook receiver in this process that records
// every insert_id a replica posts (testing/dispatch_receiver.h), and by
// sluice's own sluice_deliveries_total; the two must agree.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>

#include "system/system_util.h"
#include "testing/dispatch_receiver.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kInStore[] = "[[consumer]]\ntype = \"users\"\n[[consumer]]\ntype = \"counters\"\n";

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += " " + s;
  return out;
}

class Cluster {
 public:
  // `store_toml` goes into the [store] table, `extra_toml` after it.
  Cluster(const TempDir& dir, int replicas, const std::string& extra_toml,
          const std::string& store_toml = "") {
    procs_ = MakeReplicas(
        dir, replicas,
        ReplicaConfig("sqlite:" + dir.File("sluice.db"), store_toml + extra_toml));
  }
  bool StartAll() {
    for (auto& p : procs_) {
      if (!p->Start()) {
        ADD_FAILURE() << p->error();
        return false;
      }
    }
    return true;
  }
  std::vector<std::string> Urls() const {
    std::vector<std::string> urls;
    for (const auto& p : procs_) urls.push_back(p->url());
    return urls;
  }
  SluiceProcess& at(size_t i) { return *procs_[i]; }
  size_t size() const { return procs_.size(); }
  // Sum of a metric over the live replicas.
  int64_t Sum(const std::string& name, const std::string& filter = "") {
    int64_t sum = 0;
    for (auto& p : procs_) {
      if (!p->Running()) continue;
      HttpResult r = HttpGet(p->Url("/metrics"));
      EXPECT_EQ(r.status, 200);
      sum += MetricSum(r.body, name, filter);
    }
    return sum;
  }
  bool WaitDrained(const std::string& url, milliseconds timeout) {
    return WaitUntil([&] { return QueueBacklog(url) == 0; }, timeout, milliseconds(100));
  }

 private:
  std::vector<std::unique_ptr<SluiceProcess>> procs_;
};

TEST(MultiReplica, FourReplicasCountEveryEventExactlyOnceWithZeroDuplicateDispatch) {
  TempDir dir;
  DispatchReceiver receiver;
  Cluster cluster(dir, 4,
                  std::string("[watcher]\nloops = 2\nbatch = 500\n") + kInStore +
                      receiver.ConsumerToml("hook", 2));
  ASSERT_TRUE(cluster.StartAll());

  const Workload w = MakeWorkload(200000, 2000, 12, 0.05, 42);
  const SendStats sent = SendWorkload(w, cluster.Urls(), 500, 4);
  EXPECT_EQ(sent.failed_requests, 0);
  EXPECT_EQ(sent.accepted, static_cast<int64_t>(w.unique.size()));
  EXPECT_EQ(sent.duplicates, static_cast<int64_t>(w.duplicate_of.size()));

  ASSERT_TRUE(cluster.WaitDrained(cluster.at(0).url(), seconds(300)));
  EXPECT_EQ(CheckAggregates(w, cluster.at(1).url()), "");
  // Zero duplicate dispatch, counted at the receiver: every accepted event
  // arrived, and none twice.
  const DispatchReceiver::Counts got = receiver.counts();
  EXPECT_EQ(got.distinct, sent.accepted);
  EXPECT_EQ(got.deliveries, sent.accepted) << "received twice:" << Join(receiver.Duplicated(10));
  EXPECT_EQ(got.malformed, 0);
  // sluice's own count agrees with the receiver's, and each consumer was handed
  // each event once in all.
  EXPECT_EQ(cluster.Sum("sluice_deliveries_total", "consumer=\"hook\""), got.deliveries);
  EXPECT_EQ(cluster.Sum("sluice_deliveries_total", "consumer=\"users\""), sent.accepted);
  EXPECT_EQ(cluster.Sum("sluice_deliveries_total", "consumer=\"counters\""), sent.accepted);
  EXPECT_EQ(cluster.Sum("sluice_ingest_events_total", "result=\"accepted\""), sent.accepted);
  // Work was spread: every replica claimed something.
  for (size_t i = 0; i < cluster.size(); ++i) {
    HttpResult r = HttpGet(cluster.at(i).Url("/metrics"));
    EXPECT_GT(MetricSum(r.body, "sluice_claimed_events_total"), 0) << "replica " << i;
  }
  for (size_t i = 0; i < cluster.size(); ++i) EXPECT_EQ(cluster.at(i).Terminate(), 0);
}

// The control experiment: the same harness with the two-step claim that
// sluice exists to replace (the test binary's NaiveClaimStore) must show
// duplicate dispatch at the receiver. Proof that the checker above can fail.
TEST(MultiReplica, NaiveTwoStepClaimIsCaughtDispatchingTwiceAtTheReceiver) {
  TempDir dir;
  DispatchReceiver receiver;
  Cluster cluster(dir, 4,
                  std::string("[watcher]\nloops = 2\nbatch = 100\n") + kInStore +
                      "[[consumer]]\ntype = \"test\"\nname = \"sink\"\nbit = 2\nsleep_ms = 5\n" +
                      receiver.ConsumerToml("hook", 3),
                  "claim_strategy = \"naive\"\n");
  ASSERT_TRUE(cluster.StartAll());

  const Workload w = MakeWorkload(20000, 200, 4, 0.0, 7);
  const SendStats sent = SendWorkload(w, cluster.Urls(), 500, 4);
  EXPECT_EQ(sent.accepted, static_cast<int64_t>(w.unique.size()));
  ASSERT_TRUE(cluster.WaitDrained(cluster.at(0).url(), seconds(300)));

  const DispatchReceiver::Counts got = receiver.counts();
  EXPECT_EQ(got.distinct, sent.accepted);
  EXPECT_GT(got.duplicated, 0) << "the naive claim must show duplicates at the receiver";
  const int64_t metric = cluster.Sum("sluice_deliveries_total", "consumer=\"hook\"");
  const int64_t sink = cluster.Sum("sluice_deliveries_total", "consumer=\"sink\"");
  std::printf(
      "naive two-step claim: the receiver got %lld deliveries for %lld accepted events "
      "(%lld events more than once, %lld repeats); sluice_deliveries_total: hook %lld, "
      "sink %lld\n",
      static_cast<long long>(got.deliveries), static_cast<long long>(sent.accepted),
      static_cast<long long>(got.duplicated), static_cast<long long>(got.repeats),
      static_cast<long long>(metric), static_cast<long long>(sink));
  for (size_t i = 0; i < cluster.size(); ++i) cluster.at(i).Kill();
}

TEST(MultiReplica, KilledReplicaBatchIsRedeliveredAfterLeaseExpiryAndCountedOnce) {
  TempDir dir;
  // A slow external sink keeps batches in flight long enough to kill a replica
  // while it holds leases; the lease is short so the test need not wait long.
  DispatchReceiver receiver;
  Cluster cluster(dir, 2,
                  std::string("[watcher]\nloops = 2\nbatch = 200\nlease_ttl = \"2s\"\n") +
                      kInStore +
                      "[[consumer]]\ntype = \"test\"\nname = \"slow\"\nbit = 2\nsleep_ms = 300\n" +
                      receiver.ConsumerToml("hook", 3));
  ASSERT_TRUE(cluster.StartAll());

  const Workload w = MakeWorkload(6000, 100, 5, 0.02, 9);
  const SendStats sent = SendWorkload(w, {cluster.at(1).url()}, 500, 2);
  ASSERT_EQ(sent.accepted, static_cast<int64_t>(w.unique.size()));

  // Wait until replica 0 holds leases, then kill -9 it mid-batch.
  ASSERT_TRUE(WaitUntil(
      [&] {
        HttpResult r = HttpGet(cluster.at(0).Url("/admin/status"));
        return r.status == 200 && r.body.find("\"id\":\"r0\"") != std::string::npos &&
               r.body.find("\"leases_held\":0") == std::string::npos;
      },
      seconds(30), milliseconds(20)));
  const int64_t killed_at = SteadyNowMs();
  EXPECT_EQ(cluster.at(0).Kill(), -9);

  ASSERT_TRUE(cluster.WaitDrained(cluster.at(1).url(), seconds(120)));
  EXPECT_EQ(CheckAggregates(w, cluster.at(1).url()), "");
  // Every event reached the receiver; any event it got twice was in flight in
  // the killed replica (the only fault of this test).
  EXPECT_EQ(receiver.counts().distinct, sent.accepted);
  const RedeliveryExplanation why = ExplainRedeliveries(
      receiver.deliveries(), {FaultWindow{"kill -9", killed_at, killed_at}}, 4000);
  EXPECT_EQ(why.unexplained, 0) << Join(why.examples);
  std::printf("kill -9 mid-batch: redeliveries at the receiver %s\n", why.Summary().c_str());
  // The survivor took the dead replica's expired leases with the ordinary claim.
  HttpResult m = HttpGet(cluster.at(1).Url("/metrics"));
  EXPECT_GT(MetricSum(m.body, "sluice_lease_reclaims_total"), 0);

  // A restarted replica joins again and finds nothing left to do.
  ASSERT_TRUE(cluster.at(0).Restart());
  EXPECT_EQ(QueueBacklog(cluster.at(0).url()), 0);
  EXPECT_EQ(cluster.at(0).Terminate(), 0);
  EXPECT_EQ(cluster.at(1).Terminate(), 0);
}

}  // namespace
}  // namespace sluice::testing
