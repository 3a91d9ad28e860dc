// Failure isolation through the real binary: a webhook that fails 100% must
// not hold back `users`, `counters` or `archive`; its events wait in retry
// (or go dead past max_attempts, naming it) and reach it when it recovers,
// without the in-store consumers counting anything twice.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <string>

#include "testing/sink_servers.h"
#include "system/system_util.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kHook[] = "hook";

// Every `"insert_id":"..."` value in `text` (insert ids of the workload need
// no JSON escaping).
void CollectInsertIds(const std::string& text, std::set<std::string>* out) {
  static const std::string kKey = "\"insert_id\":\"";
  for (size_t at = text.find(kKey); at != std::string::npos; at = text.find(kKey, at)) {
    at += kKey.size();
    const size_t end = text.find('"', at);
    if (end == std::string::npos) return;
    out->insert(text.substr(at, end - at));
    at = end;
  }
}

// The insert ids in every archived object under `dir` (decompressed by the zstd CLI).
std::set<std::string> ArchivedIds(const std::string& dir) {
  int rc = 0;
  const std::string text =
      RunCommand("find '" + dir + "' -name '*.ndjson.zst' -exec zstd -dcq {} + 2>/dev/null", &rc);
  std::set<std::string> ids;
  CollectInsertIds(text, &ids);
  return ids;
}

std::set<std::string> UniqueIds(const Workload& w) {
  std::set<std::string> ids;
  for (const WorkloadEvent& e : w.unique) ids.insert(e.insert_id);
  return ids;
}

// Ids of `want` missing from `have`, at most a few, for failure messages.
std::string Missing(const std::set<std::string>& want, const std::set<std::string>& have) {
  std::string out;
  size_t n = 0;
  for (const std::string& id : want) {
    if (have.count(id)) continue;
    if (++n <= 5) out += id + " ";
  }
  return n == 0 ? "" : std::to_string(n) + " missing, e.g. " + out;
}

// queue.dead from GET /admin/status; -1 on error.
int64_t DeadCount(const std::string& base_url) {
  HttpResult r = HttpGet(base_url + "/admin/status");
  if (r.status != 200) return -1;
  simdjson::dom::parser p;
  simdjson::dom::element el;
  int64_t dead = -1;
  if (p.parse(r.body).get(el) != simdjson::SUCCESS) return -1;
  if (el["queue"]["dead"].get_int64().get(dead) != simdjson::SUCCESS) return -1;
  return dead;
}

// A webhook receiver that answers 500 until healthy() is set, and remembers
// the insert ids of the events it acknowledged.
class SwitchableReceiver {
 public:
  SwitchableReceiver()
      : server_([this](const ReceivedRequest& req) {
          if (!healthy_.load()) {
            ++refused_;
            return Reply{500, {}, "down"};
          }
          std::lock_guard<std::mutex> lock(mu_);
          CollectInsertIds(req.body, &acked_);
          return Reply{};
        }) {}

  void set_healthy(bool h) { healthy_ = h; }
  int64_t refused() const { return refused_.load(); }
  std::set<std::string> acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  std::string url() const { return server_.url(); }

 private:
  std::atomic<bool> healthy_{false};
  std::atomic<int64_t> refused_{0};
  mutable std::mutex mu_;
  std::set<std::string> acked_;  // GUARDED_BY(mu_)
  HttpReceiver server_;          // last: its threads use the members above
};

// One replica on SQLite with users, counters, archive (bit 2) and the webhook (bit 3).
std::string IsolationConfig(const TempDir& dir, const std::string& hook_url, int max_attempts) {
  return ReplicaConfig(
      "sqlite:" + dir.File("sluice.db"),
      "[watcher]\nloops = 2\nbatch = 200\nbackoff_base = \"100ms\"\nbackoff_cap = \"300ms\"\n"
      "max_attempts = " +
          std::to_string(max_attempts) +
          "\n"
          "[[consumer]]\ntype = \"users\"\n"
          "[[consumer]]\ntype = \"counters\"\n"
          "[[consumer]]\ntype = \"archive\"\nname = \"archive\"\nbit = 2\n"
          "dir = \"" +
          dir.File("archive") +
          "\"\nfsync = false\n"
          "[[consumer]]\ntype = \"webhook\"\nname = \"" +
          kHook + "\"\nbit = 3\nurl = \"" + hook_url +
          "\"\n"
          "template = '{\"insert_id\":\"{{insert_id}}\"}'\n");
}

std::unique_ptr<SluiceProcess> StartReplica(const TempDir& dir, const std::string& config_text) {
  const std::string config = dir.File("sluice.toml");
  std::ofstream(config) << config_text;
  SluiceProcessOptions o;
  o.binary = BinaryFor(config_text);
  o.dir = dir.path();
  o.args = {"--config", config};
  auto proc = std::make_unique<SluiceProcess>(o);
  if (!proc->Start()) {
    ADD_FAILURE() << proc->error();
    return nullptr;
  }
  return proc;
}

int64_t Metric(SluiceProcess& proc, const std::string& name, const std::string& filter = "") {
  HttpResult r = HttpGet(proc.Url("/metrics"));
  EXPECT_EQ(r.status, 200);
  return MetricSum(r.body, name, filter);
}

TEST(FailureIsolation, WebhookOutageLeavesUsersAndCountersExactAndDrainsOnRecovery) {
  TempDir dir;
  SwitchableReceiver receiver;
  auto sluice = StartReplica(dir, IsolationConfig(dir, receiver.url(), 1000000));
  ASSERT_NE(sluice, nullptr);

  const Workload w = MakeWorkload(3000, 60, 5, 0.02, 11);
  const std::set<std::string> want = UniqueIds(w);
  const SendStats sent = SendWorkload(w, {sluice->url()}, 250, 2);
  ASSERT_EQ(sent.failed_requests, 0);
  ASSERT_EQ(sent.accepted, static_cast<int64_t>(w.unique.size()));

  // users, counters and archive finish while every webhook delivery fails.
  std::string mismatch = "not checked";
  ASSERT_TRUE(WaitUntil([&] { return (mismatch = CheckAggregates(w, sluice->url())).empty(); },
                        seconds(30), milliseconds(200)))
      << mismatch;
  std::set<std::string> archived;
  ASSERT_TRUE(WaitUntil([&] { return (archived = ArchivedIds(dir.File("archive"))) == want; },
                        seconds(20), milliseconds(200)))
      << Missing(want, archived);
  EXPECT_GT(QueueBacklog(sluice->url()), 0) << "the webhook's events must still be waiting";
  EXPECT_EQ(DeadCount(sluice->url()), 0);
  EXPECT_GT(receiver.refused(), 0);
  EXPECT_TRUE(receiver.acked().empty());
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"users\""), sent.accepted);
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"counters\""), sent.accepted);

  // Let a few more retry rounds pass: still exact, still waiting.
  const int64_t refused_before = receiver.refused();
  ASSERT_TRUE(WaitUntil([&] { return receiver.refused() >= refused_before + 5; }, seconds(10)));
  EXPECT_EQ(CheckAggregates(w, sluice->url()), "");
  EXPECT_GT(QueueBacklog(sluice->url()), 0);

  // Recovery: the backlog drains into the receiver alone.
  receiver.set_healthy(true);
  ASSERT_TRUE(
      WaitUntil([&] { return QueueBacklog(sluice->url()) == 0; }, seconds(30), milliseconds(100)));
  EXPECT_EQ(DeadCount(sluice->url()), 0);
  EXPECT_EQ(Missing(want, receiver.acked()), "");
  EXPECT_EQ(CheckAggregates(w, sluice->url()), "");
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"users\""), sent.accepted);
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"counters\""), sent.accepted);
  EXPECT_EQ(ArchivedIds(dir.File("archive")), want);
  EXPECT_GT(Metric(*sluice, "sluice_webhook_failures_total"), 0);
  EXPECT_EQ(sluice->Terminate(), 0);
}

TEST(FailureIsolation, WebhookDownPastMaxAttemptsGoesDeadNamingItAndDlqRequeueDeliversLater) {
  TempDir dir;
  SwitchableReceiver receiver;
  auto sluice = StartReplica(dir, IsolationConfig(dir, receiver.url(), 3));
  ASSERT_NE(sluice, nullptr);
  const std::string store = "sqlite:" + dir.File("sluice.db");

  const Workload w = MakeWorkload(400, 20, 4, 0.0, 12);
  const std::set<std::string> want = UniqueIds(w);
  const SendStats sent = SendWorkload(w, {sluice->url()}, 100, 2);
  ASSERT_EQ(sent.failed_requests, 0);
  ASSERT_EQ(sent.accepted, static_cast<int64_t>(w.unique.size()));

  // Every event goes dead, for the webhook only.
  ASSERT_TRUE(WaitUntil([&] { return DeadCount(sluice->url()) == sent.accepted; }, seconds(30),
                        milliseconds(100)))
      << "dead: " << DeadCount(sluice->url());
  EXPECT_EQ(QueueBacklog(sluice->url()), 0);
  CommandResult list = RunSluice({"dlq", "list", "--store", store, "--json", "--limit", "1000"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  {
    simdjson::dom::parser p;
    simdjson::dom::element el;
    ASSERT_EQ(p.parse(list.out).get(el), simdjson::SUCCESS) << list.out;
    int64_t count = 0;
    ASSERT_EQ(el["count"].get_int64().get(count), simdjson::SUCCESS);
    EXPECT_EQ(count, sent.accepted);
    simdjson::dom::array dead;
    ASSERT_EQ(el["dead"].get_array().get(dead), simdjson::SUCCESS);
    for (simdjson::dom::element d : dead) {
      std::string_view last_error;
      ASSERT_EQ(d["last_error"].get_string().get(last_error), simdjson::SUCCESS);
      EXPECT_EQ(last_error.rfind(std::string("consumer ") + kHook + ":", 0), 0u) << last_error;
    }
  }
  HttpResult admin = HttpGet(sluice->Url("/admin/dlq?consumer=" + std::string(kHook)));
  EXPECT_EQ(admin.status, 200);
  EXPECT_NE(admin.body.find(std::string("\"last_error\":\"consumer ") + kHook + ":"),
            std::string::npos)
      << admin.body.substr(0, 500);
  EXPECT_EQ(CheckAggregates(w, sluice->url()), "");
  EXPECT_EQ(ArchivedIds(dir.File("archive")), want);
  EXPECT_TRUE(receiver.acked().empty());

  // The receiver is back; the operator requeues the webhook's dead events.
  receiver.set_healthy(true);
  CommandResult requeue = RunSluice({"dlq", "requeue", "--store", store, "--consumer", kHook});
  ASSERT_EQ(requeue.exit_code, 0) << requeue.err;
  EXPECT_NE(requeue.out.find("requeued " + std::to_string(sent.accepted) + " dead event"),
            std::string::npos)
      << requeue.out;
  ASSERT_TRUE(WaitUntil([&] { return Missing(want, receiver.acked()).empty(); }, seconds(30),
                        milliseconds(100)))
      << Missing(want, receiver.acked());
  ASSERT_TRUE(
      WaitUntil([&] { return QueueBacklog(sluice->url()) == 0 && DeadCount(sluice->url()) == 0; },
                seconds(30), milliseconds(100)));
  EXPECT_EQ(CheckAggregates(w, sluice->url()), "");
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"users\""), sent.accepted);
  EXPECT_EQ(Metric(*sluice, "sluice_deliveries_total", "consumer=\"counters\""), sent.accepted);
  EXPECT_EQ(sluice->Terminate(), 0);
}

}  // namespace
}  // namespace sluice::testing
