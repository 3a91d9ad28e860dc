#include "testing/pg_replica.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/event.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/users/users_consumer.h"
#include "fmt/format.h"
#include "queue/open/open_store.h"
#include "testing/in_store.h"
#include "testkit/testkit.h"

namespace sluice::testing {

namespace {

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

bool Exists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::exists(path, ec);
}

void Touch(const std::string& path) { std::ofstream(path) << "done\n"; }

}  // namespace

std::vector<NewEvent> GeneratedEvents(const std::string& stream, int64_t n, int users,
                                      int names, int64_t start_ms, int64_t span_ms,
                                      int duplicate_every) {
  std::vector<NewEvent> out;
  out.reserve(static_cast<size_t>(n));
  int64_t fresh = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (duplicate_every > 0 && i % duplicate_every == duplicate_every - 1 && fresh > 0) {
      // A resubmission of an earlier event (as a retrying SDK would send it).
      out.push_back(out[static_cast<size_t>((i * 7919) % static_cast<int64_t>(out.size()))]);
      continue;
    }
    const int64_t k = fresh++;
    Event e;
    e.project = "default";
    e.insert_id = fmt::format("{}-{}", stream, k);
    e.event = fmt::format("e{}", (k * 31) % names);
    e.user_id = fmt::format("u{}", (k * 17) % users);
    // Times advance with k, as live traffic does: a batch spans a minute or
    // two, so its counter buckets are few and shared with concurrent batches.
    e.time_ms = start_ms + k * span_ms / std::max<int64_t>(n, 1);
    e.properties = fmt::format("{{\"k\":{}}}", k);
    out.push_back(NewEvent{e.project, e.insert_id, ToBody(e)});
  }
  return out;
}

ExpectedAggregates Expect(const std::vector<NewEvent>& events) {
  ExpectedAggregates x;
  std::unordered_set<std::string> seen;
  std::map<std::pair<std::string, int64_t>, std::pair<int64_t, std::set<std::string>>> hourly;
  std::map<std::string, int64_t> users;
  for (const NewEvent& ne : events) {
    if (!seen.insert(ne.project + '\0' + ne.insert_id).second) continue;
    Event e;
    if (!ParseBody(ne.body, &e).ok()) continue;
    ++x.distinct;
    auto& h = hourly[{e.event, BucketStartMs(Granularity::kHour, e.time_ms)}];
    ++h.first;
    h.second.insert(e.distinct_id());
    ++users[e.distinct_id()];
  }
  for (const auto& [k, v] : hourly) {
    x.hourly.emplace_back(k.first, k.second, v.first, static_cast<int64_t>(v.second.size()));
  }
  x.users.assign(users.begin(), users.end());
  return x;
}

std::string CheckAggregates(Store& store, const ExpectedAggregates& expected, int names) {
  std::map<std::string, std::vector<CounterPoint>> want;
  for (const auto& [event, bucket, count, users] : expected.hourly) {
    want[event].push_back(CounterPoint{bucket, count, users});
  }
  for (int k = 0; k < names; ++k) {
    const std::string event = fmt::format("e{}", k);
    CounterQuery q;
    q.project = "default";
    q.event = event;
    q.granularity = Granularity::kHour;
    q.from_ms = 0;
    q.to_ms = int64_t{1} << 50;
    auto got = store.QueryCounters(q);
    if (!got.ok()) return "QueryCounters: " + got.status().ToString();
    const auto& w = want[event];
    if (got->size() != w.size()) {
      return fmt::format("{}: {} hourly buckets, want {}", event, got->size(), w.size());
    }
    for (size_t i = 0; i < w.size(); ++i) {
      const CounterPoint& g = (*got)[i];
      if (g.bucket_ms != w[i].bucket_ms || g.count != w[i].count || g.users != w[i].users) {
        return fmt::format("{} bucket {}: count {} users {}, want bucket {} count {} users {}",
                           event, g.bucket_ms, g.count, g.users, w[i].bucket_ms, w[i].count,
                           w[i].users);
      }
    }
  }
  for (const auto& [user, events] : expected.users) {
    auto p = store.GetUser("default", user);
    if (!p.ok()) return "GetUser " + user + ": " + p.status().ToString();
    if (p->events != events) {
      return fmt::format("user {}: {} events, want {}", user, p->events, events);
    }
  }
  return "";
}

DispatchCount CountDispatches(const std::vector<std::string>& logs) {
  DispatchCount c;
  std::unordered_map<std::string, int> n;
  for (const std::string& path : logs) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      ++c.total;
      if (++n[line] == 2) ++c.duplicated;
    }
  }
  return c;
}

int RunPgReplica(const PgReplicaOptions& o) {
  StoreOptions so;
  so.url = o.url;
  so.pool_size = o.pool_size;
  so.busy_timeout_ms = o.busy_timeout_ms;
  StorePtr store;
  for (int i = 0; i < 300 && store == nullptr; ++i) {
    auto s = OpenStore(so);
    if (s.ok() && o.naive_claim) {
      s = ApplyTestOnlySettings(std::move(s).value(), so, {{"store.claim_strategy", "naive"}});
    }
    if (s.ok()) {
      store = std::move(s).value();
    } else {
      SleepMs(100);
    }
  }
  if (store == nullptr) return 3;

  UsersConsumer users("users", 1);
  CountersConsumer counters("counters", 2);
  const std::vector<InStoreBuilder> work = {FromConsumer(users), FromConsumer(counters)};

  std::mutex mu;
  std::condition_variable cv;
  uint64_t wakes = 0;
  store->SetWakeCallback([&] {
    std::lock_guard<std::mutex> lock(mu);
    ++wakes;
    cv.notify_all();
  });

  FILE* log = o.dispatch_log.empty() ? nullptr : std::fopen(o.dispatch_log.c_str(), "w");
  std::mutex log_mu;

  std::vector<std::thread> threads;
  if (o.ingest_events > 0) {
    threads.emplace_back([&] {
      const auto events =
          GeneratedEvents(o.id, o.ingest_events, o.ingest_users, o.ingest_names,
                          o.ingest_start_ms, o.ingest_span_ms, o.ingest_duplicate_every);
      for (size_t i = 0; i < events.size(); i += static_cast<size_t>(o.ingest_batch)) {
        const size_t n = std::min(events.size() - i, static_cast<size_t>(o.ingest_batch));
        EnqueueBatch b{std::span<const NewEvent>(events.data() + i, n)};
        // Not acknowledged = not done: retry the same batch (dedup makes a
        // retry of a batch that did commit store nothing twice).
        while (!store->Enqueue(std::span<const EnqueueBatch>(&b, 1)).ok()) SleepMs(20);
      }
      Touch(o.ingest_done_file);
    });
  }
  for (int loop = 0; loop < o.loops; ++loop) {
    threads.emplace_back([&, loop] {
      const std::string owner = fmt::format("{}/{}", o.id, loop);
      std::string lines;
      while (true) {
        auto l = store->Claim(ClaimRequest{owner, o.batch, o.lease_ttl_ms});
        if (!l.ok()) {
          SleepMs(20);  // store unavailable (restart): the pool reconnects
          continue;
        }
        if (l->events.empty()) {
          if (Exists(o.stop_file)) break;
          std::unique_lock<std::mutex> lock(mu);
          const uint64_t seen = wakes;
          cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return wakes != seen; });
          continue;
        }
        if (log != nullptr) {
          lines.clear();
          for (const ClaimedEvent& e : l->events) {
            lines += e.insert_id;
            lines += '\n';
          }
          std::lock_guard<std::mutex> lock(log_mu);
          std::fwrite(lines.data(), 1, lines.size(), log);
        }
        CompleteRequest req;
        req.token = l->token;
        req.events = l->events;
        req.all_bits = 3;
        // A failure (lease lost, store restarting) leaves the rows to lease
        // expiry; their done bits make the redelivery apply nothing twice.
        auto done = CompleteBuilding(*store, req, work);
        if (!done.ok() && std::getenv("SLUICE_TEST_VERBOSE") != nullptr) {
          std::fprintf(stderr, "replica %s: complete: %s\n", owner.c_str(),
                       done.status().ToString().c_str());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  store->SetWakeCallback(nullptr);
  if (log != nullptr) std::fclose(log);
  return 0;
}

int ForkPgReplica(const PgReplicaOptions& options) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) _exit(RunPgReplica(options));
  return static_cast<int>(pid);
}

int WaitPid(int pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace sluice::testing
