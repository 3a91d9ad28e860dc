// Keyed jobs end to end: three `sluice serve` replicas on one SQLite file,
// a [[job]] keyed by user with delay = 1s and max_delay = 3s, and a local
// receiver as its handler that fails some first attempts (503, 429 with
// Retry-After) and holds each request a little, so that runs are in flight
// when one replica is killed with -9 (and restarted). Counted at the
// receiver: every user's job ran after its last event (the last run
// carried it, and the runs' events add up to the user's events exactly),
// runs per user stay within the debounce bound, and each run kept one
// Idempotency-Key and one content across all its retries and replicas.
#include <gtest/gtest.h>

#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "system/system_util.h"
#include "testing/process.h"
#include "testing/sink_servers.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kUsers = 50;
constexpr int kEvents = 20000;
constexpr int64_t kSendSeconds = 10;
constexpr int64_t kDelayMs = 1000;

struct Hit {
  std::string key;
  int64_t run = 0;
  std::string idempotency_key;
  int64_t attempt = 0;
  int64_t events = 0;
  int64_t first_event = 0;
  int64_t last_event = 0;
  int status = 0;
  int64_t at_ms = 0;  // wall clock at arrival
  bool parsed = false;
};

// The job handler: records every request, fails every third run's first
// attempt (alternately 503 and 429 + Retry-After: 1), holds each request
// 100 ms.
class JobReceiver {
 public:
  JobReceiver()
      : server_([this](const ReceivedRequest& r) { return Handle(r); }, /*keep_requests=*/false) {}

  std::string Url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/run"; }
  std::vector<Hit> hits() {
    std::lock_guard lock(mu_);
    return hits_;
  }
  int in_flight() const { return in_flight_.load(); }

 private:
  Reply Handle(const ReceivedRequest& r) {
    ++in_flight_;
    Hit h;
    h.at_ms = WallMs();
    auto header = [&](const char* name) {
      auto it = r.headers.find(name);
      return it == r.headers.end() ? std::string() : it->second;
    };
    h.idempotency_key = header("idempotency-key");
    h.attempt = std::atoll(header("x-sluice-attempt").c_str());
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc) == simdjson::SUCCESS) {
      std::string_view key;
      int64_t run = 0, events = 0, first = 0, last = 0;
      if (doc["key"].get(key) == simdjson::SUCCESS && doc["run"].get(run) == simdjson::SUCCESS &&
          doc["events_since_last_run"].get(events) == simdjson::SUCCESS &&
          doc["first_event"].get(first) == simdjson::SUCCESS &&
          doc["last_event"].get(last) == simdjson::SUCCESS) {
        h.key = std::string(key);
        h.run = run;
        h.events = events;
        h.first_event = first;
        h.last_event = last;
        h.parsed = true;
      }
    }
    Reply reply;
    const size_t digest = std::hash<std::string>{}(h.idempotency_key);
    if (h.attempt == 1 && digest % 3 == 0) {
      if ((digest / 3) % 2 == 0) {
        reply.status = 503;
      } else {
        reply.status = 429;
        reply.headers.push_back({"Retry-After", "1"});
      }
    }
    h.status = reply.status;
    std::this_thread::sleep_for(milliseconds(100));  // runs stay in flight a while
    {
      std::lock_guard lock(mu_);
      hits_.push_back(std::move(h));
    }
    --in_flight_;
    return reply;
  }

  static int64_t WallMs() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  std::mutex mu_;
  std::vector<Hit> hits_;  // GUARDED_BY(mu_)
  std::atomic<int> in_flight_{0};
  HttpReceiver server_;  // last: stopped first, before what its handler uses
};

Workload JobWorkload() {
  Workload w;
  for (int i = 0; i < kEvents; ++i) {
    WorkloadEvent e;
    e.insert_id = "e" + std::to_string(i);
    e.event = i % 2 == 0 ? "purchase" : "signup";
    e.user = "u" + std::to_string(i % kUsers);
    e.time_ms = 1'700'000'000'000 + i;  // distinct: a run's last_event names its last event
    w.unique.push_back(e);
  }
  return w;
}

std::string JobConfig(const std::string& url) {
  return "[watcher]\nloops = 2\nbatch = 200\n"
         "[[consumer]]\ntype = \"users\"\n"
         "[jobs]\nloops = 2\nbatch = 8\nlease_ttl = \"2s\"\n"
         "[[job]]\nname = \"rescore\"\nbit = 3\nkey = \"user\"\nevents = [\"purchase\", \"signup\"]\n"
         "delay = \"1s\"\nmax_delay = \"3s\"\nurl = \"" + url + "\"\ntimeout = \"1s\"\n"
         "backoff_base = \"100ms\"\nbackoff_cap = \"400ms\"\nmax_attempts = 50\n";
}

TEST(Jobs, ThreeReplicasRunEachUserAfterItsLastEventWithinTheDebounceBoundAndStableKeys) {
  TempDir dir;
  JobReceiver receiver;
  const std::string config = dir.File("sluice.toml");
  std::ofstream(config) << ReplicaConfig("sqlite:" + dir.File("sluice.db"), JobConfig(receiver.Url()));
  std::vector<std::unique_ptr<SluiceProcess>> replicas;
  std::vector<std::string> urls;
  for (int i = 0; i < 3; ++i) {
    SluiceProcessOptions o;
    o.dir = dir.path();
    o.args = {"--config", config, "--replica-id", "r" + std::to_string(i)};
    o.log_name = "replica-" + std::to_string(i) + ".log";
    replicas.push_back(std::make_unique<SluiceProcess>(o));
    ASSERT_TRUE(replicas.back()->Start()) << replicas.back()->error();
    urls.push_back(replicas.back()->url());
  }

  const Workload w = JobWorkload();
  std::map<std::string, int64_t> user_events, user_last;
  for (const WorkloadEvent& e : w.unique) {
    ++user_events[e.user];
    user_last[e.user] = std::max(user_last[e.user], e.time_ms);
  }
  // kill -9 of replica 1 half-way through, while runs are in flight at the
  // receiver; it comes back 2 s later (its senders retry meanwhile).
  std::atomic<int64_t> acked{0};
  int in_flight_at_kill = -1;
  std::thread chaos([&] {
    ASSERT_TRUE(WaitUntil([&] { return acked.load() >= kEvents / 2 && receiver.in_flight() > 0; },
                          seconds(60), milliseconds(5)));
    in_flight_at_kill = receiver.in_flight();
    replicas[1]->Kill();
    std::this_thread::sleep_for(seconds(2));  // the downtime itself, not a wait for a condition
    EXPECT_TRUE(replicas[1]->Restart()) << replicas[1]->error();
  });
  const SendStats sent =
      SendWorkload(w, urls, 100, 4, /*retry_for_ms=*/20000, &acked, kEvents / kSendSeconds);
  chaos.join();
  EXPECT_EQ(sent.failed_requests, 0);
  EXPECT_EQ(sent.accepted + sent.duplicates, kEvents);
  EXPECT_GT(in_flight_at_kill, 0);

  // Done: every user's events were carried by completed runs.
  auto completed = [&] {
    std::map<std::string, int64_t> carried;
    std::set<std::pair<std::string, int64_t>> seen;
    for (const Hit& h : receiver.hits()) {
      if (h.parsed && h.status == 200 && seen.insert({h.key, h.run}).second) {
        carried[h.key] += h.events;
      }
    }
    return carried == user_events;
  };
  ASSERT_TRUE(WaitUntil(completed, seconds(120), milliseconds(200)))
      << "the completed runs never carried every event";

  const std::vector<Hit> hits = receiver.hits();
  std::map<std::pair<std::string, int64_t>, std::vector<const Hit*>> by_run;
  std::map<std::string, std::set<std::string>> runs_of_key;  // idempotency keys
  int64_t retried = 0;
  for (const Hit& h : hits) {
    ASSERT_TRUE(h.parsed) << "malformed job request";
    by_run[{h.key, h.run}].push_back(&h);
  }
  std::map<std::string, int64_t> ok_events, ok_last, runs, first_at, last_at;
  std::set<std::string> keys_seen;
  for (const auto& [id, reqs] : by_run) {
    const Hit& first = *reqs.front();
    // One Idempotency-Key and one content per run, on every retry and replica.
    for (const Hit* h : reqs) {
      EXPECT_EQ(h->idempotency_key, first.idempotency_key) << id.first << " run " << id.second;
      EXPECT_EQ(h->events, first.events) << id.first << " run " << id.second;
      EXPECT_EQ(h->first_event, first.first_event);
      EXPECT_EQ(h->last_event, first.last_event);
    }
    EXPECT_TRUE(keys_seen.insert(first.idempotency_key).second)
        << "two runs share the Idempotency-Key " << first.idempotency_key;
    retried += static_cast<int64_t>(reqs.size()) - 1;
    const bool ok = std::any_of(reqs.begin(), reqs.end(), [](const Hit* h) { return h->status == 200; });
    EXPECT_TRUE(ok) << id.first << " run " << id.second << " never succeeded";
    ++runs[id.first];
    ok_events[id.first] += first.events;
    ok_last[id.first] = std::max(ok_last[id.first], first.last_event);
    int64_t at = first.at_ms;
    for (const Hit* h : reqs) at = std::min(at, h->at_ms);
    first_at[id.first] = first_at.count(id.first) ? std::min(first_at[id.first], at) : at;
    last_at[id.first] = std::max(last_at[id.first], at);
  }
  EXPECT_GT(retried, 0) << "the receiver's failures were never retried";
  int64_t total_runs = 0, max_runs = 0;
  for (const auto& [user, n] : user_events) {
    // Ran after its last event: the last event was carried by a completed run.
    EXPECT_EQ(ok_last[user], user_last[user]) << user;
    EXPECT_EQ(ok_events[user], n) << user << ": each event in exactly one run";
    // The debounce bound: a run is due no earlier than `delay` after its
    // first pending event, which came after the previous run's claim, so
    // first attempts are at least `delay` apart (less a little for the time
    // from claim to arrival).
    const int64_t span = last_at[user] - first_at[user];
    EXPECT_LE(runs[user], span / (kDelayMs - 100) + 1) << user << " span " << span << " ms";
    EXPECT_LT(runs[user], n / 10) << user << ": hardly coalesced";
    total_runs += runs[user];
    max_runs = std::max(max_runs, runs[user]);
  }
  std::printf("jobs: %d users, %zu requests, %lld runs (max %lld per user), %lld retries, "
              "%d in flight at kill\n",
              kUsers, hits.size(), static_cast<long long>(total_runs),
              static_cast<long long>(max_runs), static_cast<long long>(retried),
              in_flight_at_kill);

  // The store agrees: nothing dead, nothing left to run.
  HttpResult admin = HttpGet(replicas[0]->Url("/admin/jobs?job=rescore&limit=1000"));
  ASSERT_EQ(admin.status, 200) << admin.body;
  EXPECT_NE(admin.body.find("\"dead\":[]"), std::string::npos) << admin.body.substr(0, 400);
  EXPECT_EQ(admin.body.find("\"state\":\"leased\""), std::string::npos);
  for (auto& r : replicas) EXPECT_EQ(r->Terminate(), 0);

  // The operator's commands read the same from the store.
  const std::string store = "sqlite:" + dir.File("sluice.db");
  CommandResult list = RunSluice({"jobs", "list", "--store", store, "--job", "rescore"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("rescore"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("idle"), std::string::npos) << list.out;
  CommandResult show = RunSluice({"jobs", "show", "--store", store, "--job", "rescore", "--key", "u7"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("u7"), std::string::npos) << show.out;
  CommandResult status = RunSluice({"status", "--store", store});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("jobs:"), std::string::npos) << status.out;
}

}  // namespace
}  // namespace sluice::testing
