#include "system/system_util.h"

#include <simdjson.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>

#include "common/event.h"
#include "http_client/http_client.h"
#include "ingest/formats/native.h"

namespace sluice::testing {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;
// 2026-11-01T00:00:00Z: a fixed base so buckets are deterministic.
constexpr int64_t kBaseMs = 1793491200000;

}  // namespace

Workload MakeWorkload(int64_t n, int users, int names, double dup_frac, uint64_t seed) {
  Workload w;
  std::mt19937_64 rng(seed);
  w.unique.reserve(n);
  w.min_time_ms = INT64_MAX;
  w.max_time_ms = INT64_MIN;
  for (int64_t i = 0; i < n; ++i) {
    WorkloadEvent e;
    e.insert_id = "ev-" + std::to_string(seed) + "-" + std::to_string(i);
    e.event = "event_" + std::to_string(rng() % names);
    e.user = "user_" + std::to_string(rng() % users);
    e.time_ms = kBaseMs + static_cast<int64_t>(rng() % (6 * kHourMs));
    w.user_events[e.user]++;
    w.user_counts[e.user][e.event]++;
    const int64_t hour = e.time_ms / kHourMs * kHourMs;
    w.hour_counts[{e.event, hour}]++;
    w.hour_users[{e.event, hour}].insert(e.user);
    w.min_time_ms = std::min(w.min_time_ms, e.time_ms);
    w.max_time_ms = std::max(w.max_time_ms, e.time_ms);
    w.unique.push_back(std::move(e));
  }
  const auto dups = static_cast<int64_t>(std::llround(static_cast<double>(n) * dup_frac));
  for (int64_t i = 0; i < dups; ++i) w.duplicate_of.push_back(rng() % n);
  return w;
}

std::string EventsBody(const std::vector<const WorkloadEvent*>& events) {
  NativeBodyBuilder body;
  for (const WorkloadEvent* w : events) {
    Event e;
    e.insert_id = w->insert_id;
    e.event = w->event;
    e.user_id = w->user;
    e.time_ms = w->time_ms;
    e.properties = "{\"i\":";
    AppendJsonString(w->insert_id, &e.properties);
    e.properties += "}";
    body.Add(e);
  }
  return body.Finish();
}

SendStats SendWorkload(const Workload& w, const std::vector<std::string>& urls, int batch,
                       int threads, int64_t retry_for_ms, std::atomic<int64_t>* acked,
                       int64_t events_per_second) {
  // The send order: all uniques, with each duplicate re-sent a little later
  // than its original (so most duplicates race with processing).
  std::vector<const WorkloadEvent*> order;
  order.reserve(w.unique.size() + w.duplicate_of.size());
  size_t d = 0;
  for (size_t i = 0; i < w.unique.size(); ++i) {
    order.push_back(&w.unique[i]);
    while (d < w.duplicate_of.size() && w.duplicate_of[d] < i && (i % 20) == 0) {
      order.push_back(&w.unique[w.duplicate_of[d]]);
      ++d;
    }
  }
  for (; d < w.duplicate_of.size(); ++d) order.push_back(&w.unique[w.duplicate_of[d]]);

  std::atomic<size_t> next{0};
  std::atomic<int64_t> accepted{0}, duplicates{0}, failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      size_t req = static_cast<size_t>(t);
      while (true) {
        const size_t start = next.fetch_add(batch);
        if (start >= order.size()) break;
        const size_t end = std::min(order.size(), start + batch);
        std::vector<const WorkloadEvent*> chunk(order.begin() + start, order.begin() + end);
        const std::string body = EventsBody(chunk);
        bool ok = false;
        const auto give_up = std::chrono::steady_clock::now() +
                             std::chrono::milliseconds(retry_for_ms);
        for (int attempt = 0; !ok && (attempt == 0 || std::chrono::steady_clock::now() < give_up);
             ++attempt) {
          const std::string& url = urls[(req++) % urls.size()];
          HttpResult r = HttpPost(url + "/v1/events", body,
                                  {{"Content-Type", "application/json"}});
          if (r.status == 200) {
            simdjson::dom::parser p;
            simdjson::dom::element el;
            if (p.parse(r.body).get(el) == simdjson::SUCCESS) {
              int64_t a = 0, du = 0;
              if (el["accepted"].get_int64().get(a)) {}
              if (el["duplicates"].get_int64().get(du)) {}
              accepted += a;
              duplicates += du;
              if (acked != nullptr) *acked += static_cast<int64_t>(chunk.size());
              ok = true;
            }
          } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
        if (!ok) ++failed;
        if (events_per_second > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(
              static_cast<int64_t>(chunk.size()) * 1000 * threads / events_per_second));
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return {accepted.load(), duplicates.load(), failed.load()};
}

int64_t QueueBacklog(const std::string& base_url) {
  HttpResult r = HttpGet(base_url + "/admin/status");
  if (r.status != 200) return -1;
  simdjson::dom::parser p;
  simdjson::dom::element el;
  if (p.parse(r.body).get(el) != simdjson::SUCCESS) return -1;
  int64_t pending = 0, leased = 0;
  if (el["queue"]["pending"].get_int64().get(pending) != simdjson::SUCCESS) return -1;
  if (el["queue"]["leased"].get_int64().get(leased) != simdjson::SUCCESS) return -1;
  return pending + leased;
}

std::string CheckAggregates(const Workload& w, const std::string& base_url) {
  simdjson::dom::parser p;
  for (const auto& [user, n] : w.user_events) {
    HttpResult r = HttpGet(base_url + "/v1/users/" + UriEncode(user));
    if (r.status != 200) return "GET user " + user + ": " + std::to_string(r.status);
    simdjson::dom::element el;
    if (p.parse(r.body).get(el) != simdjson::SUCCESS) return "bad JSON for " + user;
    int64_t events = -1;
    if (el["events"].get_int64().get(events)) {}
    if (events != n) {
      return "user " + user + ": events " + std::to_string(events) + " != " + std::to_string(n);
    }
    for (const auto& [name, c] : w.user_counts.at(user)) {
      int64_t got = -1;
      if (el["event_counts"][name].get_int64().get(got)) {}
      if (got != c) return "user " + user + " " + name + ": " + std::to_string(got);
    }
  }
  std::set<std::string> names;
  for (const auto& [key, c] : w.hour_counts) names.insert(key.first);
  for (const std::string& name : names) {
    const int64_t from = w.min_time_ms / kHourMs * kHourMs;
    const int64_t to = (w.max_time_ms / kHourMs + 1) * kHourMs;
    HttpResult r = HttpGet(base_url + "/v1/counters?event=" + name + "&bucket=hour&from=" +
                           std::to_string(from) + "&to=" + std::to_string(to));
    if (r.status != 200) return "GET counters " + name + ": " + std::to_string(r.status);
    simdjson::dom::element el;
    if (p.parse(r.body).get(el) != simdjson::SUCCESS) return "bad counters JSON";
    std::map<int64_t, std::pair<int64_t, int64_t>> got;
    simdjson::dom::array series;
    if (el["series"].get_array().get(series) != simdjson::SUCCESS) return "no series";
    for (auto pt : series) {
      int64_t ts = 0, count = 0, users = 0;
      if (pt["ts"].get_int64().get(ts)) {}
      if (pt["count"].get_int64().get(count)) {}
      if (pt["users"].get_int64().get(users)) {}
      got[ts] = {count, users};
    }
    for (const auto& [key, c] : w.hour_counts) {
      if (key.first != name) continue;
      const auto it = got.find(key.second);
      const int64_t users = static_cast<int64_t>(w.hour_users.at(key).size());
      if (it == got.end() || it->second.first != c || it->second.second != users) {
        return "counter " + name + "@" + std::to_string(key.second) + ": got " +
               (it == got.end() ? std::string("none")
                                : std::to_string(it->second.first) + "/" +
                                      std::to_string(it->second.second)) +
               " want " + std::to_string(c) + "/" + std::to_string(users);
      }
    }
  }
  return "";
}

std::vector<std::unique_ptr<SluiceProcess>> MakeReplicas(const TempDir& dir, int n,
                                                         const std::string& config_text) {
  const std::string config = dir.File("sluice.toml");
  std::ofstream(config) << config_text;
  std::vector<std::unique_ptr<SluiceProcess>> procs;
  for (int i = 0; i < n; ++i) {
    SluiceProcessOptions o;
    o.binary = BinaryFor(config_text);
    o.dir = dir.path();
    o.args = {"--config", config, "--replica-id", "r" + std::to_string(i)};
    o.log_name = "replica-" + std::to_string(i) + ".log";
    procs.push_back(std::make_unique<SluiceProcess>(o));
  }
  return procs;
}

std::string ReplicaConfig(const std::string& store_url, const std::string& extra) {
  return "[store]\nurl = \"" + store_url + "\"\n" + extra;
}

}  // namespace sluice::testing
