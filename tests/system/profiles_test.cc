// Per-person profiles do not depend on processing order (docs/users.md): the
// same 20,000 events — identifies, aliases (some refused), conflicting
// $set / $set_once / $unset / $add at colliding times — through one real
// `sluice serve` in time order, and through four replicas on one store
// shuffled into random batches, give every id the same GET /v1/users JSON
// (and the profile library's model of the whole set). The control: the merge
// before per-property state (last batch wins, computed here over the same two
// sendings) gives different properties, so the comparison can fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <thread>
#include <tuple>
#include <vector>

#include "http_client/http_client.h"
#include "ingest/formats/native.h"
#include "system/system_util.h"
#include "testing/process.h"
#include "testing/profile_events.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Profiles = std::map<std::string, std::string>;  // id -> GET /v1/users/{id} body
using Batches = std::vector<std::vector<Event>>;

struct RunResult {
  Profiles profiles;
  int64_t links_applied = -1;
  int64_t links_refused = -1;
};

// Starts `replicas` replicas of `sluice serve` on one SQLite file with the
// users consumer, posts `batches` over `threads` threads (round-robin over
// the replicas, each batch retried until acknowledged), waits until the
// queue is empty and reads every id's person back.
RunResult RunReplicas(const TempDir& dir, int replicas, const std::string& watcher_toml,
                      const Batches& batches, int threads, const std::vector<std::string>& ids) {
  RunResult out;
  std::vector<std::unique_ptr<SluiceProcess>> procs =
      MakeReplicas(dir, replicas,
                   ReplicaConfig("sqlite:" + dir.File("sluice.db"),
                                 watcher_toml + "[[consumer]]\ntype = \"users\"\n"));
  std::vector<std::string> urls;
  for (auto& p : procs) {
    if (!p->Start()) {
      ADD_FAILURE() << p->error();
      return out;
    }
    urls.push_back(p->url());
  }
  std::atomic<size_t> next{0};
  std::atomic<int64_t> failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      size_t req = static_cast<size_t>(t);
      for (size_t b = next++; b < batches.size(); b = next++) {
        const std::string body = EncodeNativeBody(std::span<const Event>(batches[b]));
        const auto give_up = std::chrono::steady_clock::now() + seconds(60);
        bool ok = false;
        while (!ok && std::chrono::steady_clock::now() < give_up) {
          HttpResult r = HttpPost(urls[req++ % urls.size()] + "/v1/events", body,
                                  {{"Content-Type", "application/json"}});
          ok = r.status == 200;
          if (!ok) std::this_thread::sleep_for(milliseconds(50));  // backpressure: retry
        }
        if (!ok) ++failed;
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_TRUE(
      WaitUntil([&] { return QueueBacklog(urls[0]) == 0; }, seconds(300), milliseconds(100)));
  for (const std::string& id : ids) {
    HttpResult r =
        HttpGet(urls[static_cast<size_t>(id.size()) % urls.size()] + "/v1/users/" + UriEncode(id));
    EXPECT_EQ(r.status, 200) << id << ": " << r.body;
    out.profiles[id] = r.body;
  }
  HttpResult m = HttpGet(urls[0] + "/metrics");
  out.links_applied = MetricSum(m.body, "sluice_identity_links", "state=\"applied\"");
  out.links_refused = MetricSum(m.body, "sluice_identity_links", "state=\"refused\"");
  for (auto& p : procs) EXPECT_EQ(p->Terminate(), 0);
  return out;
}

size_t CountDifferent(const Profiles& a, const Profiles& b) {
  size_t n = 0;
  for (const auto& [id, json] : a) {
    auto it = b.find(id);
    n += (it == b.end() || it->second != json) ? 1 : 0;
  }
  return n + (b.size() > a.size() ? b.size() - a.size() : 0);
}

TEST(Profiles, TimeOrderedOnOneReplicaAndShuffledOnFourGiveIdenticalProfiles) {
  ProfileEventsOptions o;
  o.events = 20000;
  o.users = 300;
  o.anonymous = 900;
  o.keys = 6;
  o.times = 3000;  // ~7 events per time: many equal times
  const std::vector<Event> events = RandomProfileEvents(12, "default", o);
  const std::vector<std::string> ids = IdsOf(events);

  // 1 replica, time order, batches of 250.
  std::vector<Event> ordered = events;
  std::sort(ordered.begin(), ordered.end(), [](const Event& a, const Event& b) {
    return std::tie(a.time_ms, a.insert_id) < std::tie(b.time_ms, b.insert_id);
  });
  Batches in_order;
  for (size_t i = 0; i < ordered.size(); i += 250) {
    in_order.emplace_back(
        ordered.begin() + static_cast<ptrdiff_t>(i),
        ordered.begin() + static_cast<ptrdiff_t>(std::min(i + 250, ordered.size())));
  }
  // 4 replicas, shuffled, random batch sizes 1..400.
  std::vector<Event> shuffled = events;
  std::mt19937_64 rng(99);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  Batches random_batches;
  for (size_t i = 0; i < shuffled.size();) {
    const size_t n = std::min<size_t>(shuffled.size() - i, 1 + rng() % 400);
    random_batches.emplace_back(shuffled.begin() + static_cast<ptrdiff_t>(i),
                                shuffled.begin() + static_cast<ptrdiff_t>(i + n));
    i += n;
  }

  TempDir one_dir, four_dir;
  const RunResult one =
      RunReplicas(one_dir, 1, "[watcher]\nloops = 1\nbatch = 500\n", in_order, 1, ids);
  const RunResult four =
      RunReplicas(four_dir, 4, "[watcher]\nloops = 2\nbatch = 37\n", random_batches, 4, ids);
  ASSERT_EQ(one.profiles.size(), ids.size());
  ASSERT_EQ(four.profiles.size(), ids.size());

  EXPECT_EQ(CountDifferent(one.profiles, four.profiles), 0u);
  for (const auto& [id, json] : one.profiles) {
    ASSERT_EQ(json, four.profiles.at(id)) << id;
  }
  // Both equal the profile library's model of the whole set.
  const Profiles model = ModelProfiles("default", events);
  EXPECT_EQ(CountDifferent(model, one.profiles), 0u);
  // The merge counts agree, and the set really has merges of both kinds.
  EXPECT_EQ(one.links_applied, four.links_applied);
  EXPECT_EQ(one.links_refused, four.links_refused);
  EXPECT_GT(one.links_applied, 0);
  EXPECT_GT(one.links_refused, 0);
  size_t merged = 0;
  for (const auto& [id, json] : one.profiles) {
    merged += json.find("\"user_id\":\"" + id + "\"") == std::string::npos ? 1 : 0;
  }
  EXPECT_GT(merged, 0u) << "no id was answered with another person";

  // The control: the same two sendings under the old last-batch-wins merge
  // disagree, so the comparison above is able to fail.
  const size_t control =
      CountDifferent(LastBatchWinsProperties(in_order), LastBatchWinsProperties(random_batches));
  EXPECT_GT(control, 0u) << "the control should differ between the two orders";
  std::printf(
      "profiles: %zu ids identical over both runs; %lld merges applied, %lld refused; "
      "last-batch-wins control differs on %zu ids\n",
      ids.size(), static_cast<long long>(one.links_applied),
      static_cast<long long>(one.links_refused), control);
}

}  // namespace
}  // namespace sluice::testing
