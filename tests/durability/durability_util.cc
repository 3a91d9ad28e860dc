#include "durability/durability_util.h"

#include <sqlite3.h>

#include <chrono>

#include "common/event.h"
#include "config/config.h"
#include "queue/dedup_window.h"
#include "queue/sqlite/sqlite_schema.h"
#include "testing/dispatch_receiver.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;
constexpr int64_t kBaseMs = 1793491200000;  // 2026-11-01T00:00:00Z
constexpr int kUsers = 20;
constexpr int kNames = 4;

}  // namespace

Result<std::unique_ptr<Replica>> StartReplica(const std::string& toml) {
  Result<Config> config = ParseConfig(toml, [](const char*) -> const char* { return nullptr; });
  if (!config.ok()) return config.status();
  return Replica::Start(*config);
}

std::string DurabilityConfig(const std::string& db_path, bool sync, const std::string& extra) {
  return "log_level = \"warn\"\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite:" +
         db_path + "\"\nsync = " + (sync ? "true" : "false") +
         "\n[ingest]\nretry_after = \"1s\"\n"
         "[watcher]\nloops = 2\nbatch = 100\nlease_ttl = \"2s\"\nreplica_heartbeat = \"200ms\"\n"
         "drain_timeout = \"2s\"\nbackoff_base = \"50ms\"\nbackoff_cap = \"500ms\"\n" +
         extra;
}

Ingester::Ingester(std::string base_url, std::string prefix, int threads, int batch, bool retry)
    : base_url_(std::move(base_url)), prefix_(std::move(prefix)), batch_(batch), retry_(retry) {
  for (int t = 0; t < threads; ++t) threads_.emplace_back([this, t] { Run(t); });
}

Ingester::~Ingester() { Stop(); }

void Ingester::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::map<int, int64_t> Ingester::statuses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return statuses_;
}

std::vector<ClientEvent> Ingester::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

void Ingester::Run(int thread) {
  int64_t n = 0;
  while (!stop_) {
    // A new batch: its events, and where they sit in events_.
    std::vector<ClientEvent> batch;
    for (int i = 0; i < batch_; ++i, ++n) {
      ClientEvent e;
      e.insert_id = prefix_ + "-" + std::to_string(thread) + "-" + std::to_string(n);
      const int64_t k = n * 7 + thread;
      e.user = "u" + std::to_string(k % kUsers);
      e.name = "e" + std::to_string(k % kNames);
      e.time_ms = kBaseMs + (k % 6) * kHourMs + k % 1000;
      batch.push_back(std::move(e));
    }
    std::string body = "{\"events\":[";
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i) body.push_back(',');
      body += "{\"insert_id\":\"" + batch[i].insert_id + "\",\"event\":\"" + batch[i].name +
              "\",\"user_id\":\"" + batch[i].user + "\",\"time\":" +
              std::to_string(batch[i].time_ms) + "}";
    }
    body += "]}";
    size_t first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = events_.size();
      const int64_t now = SteadyNowMs();
      for (ClientEvent& e : batch) {
        e.sent_ms = now;
        events_.push_back(std::move(e));
      }
    }
    // Until acknowledged (retry) or once: the same body, the same insert_ids.
    while (true) {
      HttpResult r = HttpPost(base_url_ + "/v1/events", body,
                              {{"Content-Type", "application/json"}}, std::chrono::seconds(10));
      const int64_t now = SteadyNowMs();
      ++answers_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++statuses_[r.status];
        if (r.status == 200) {
          for (size_t i = first; i < first + static_cast<size_t>(batch_); ++i) {
            events_[i].acked_ms = now;
          }
        }
      }
      if (r.status == 200) {
        acked_ += batch_;
        break;
      }
      if (r.status != 503 || r.Header("retry-after").empty()) ++bad_refusals_;
      if (!retry_ || stop_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

std::string IntegrityCheck(const std::string& db_path) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    out = std::string("open: ") + sqlite3_errmsg(db);
  } else {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr) != SQLITE_OK) {
      out = std::string("prepare: ") + sqlite3_errmsg(db);
    } else {
      while (sqlite3_step(st) == SQLITE_ROW) {
        if (!out.empty()) out += "; ";
        out += reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

std::set<std::string> StoredIds(const std::string& db_path, const std::vector<ClientEvent>& sent) {
  std::set<std::string> ids;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    std::vector<std::string> tables;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT id FROM dedup_buckets", -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW)
        tables.push_back(DedupTableName(sqlite3_column_int64(st, 0)));
    }
    sqlite3_finalize(st);
    for (const std::string& table : tables) {
      const std::string sql = "SELECT 1 FROM " + table + " WHERE h1 = ?1 AND h2 = ?2";
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) continue;
      for (const ClientEvent& e : sent) {
        const DedupKey key = SqliteDedupKey("default", e.insert_id);
        sqlite3_bind_int64(st, 1, key.h1);
        sqlite3_bind_int64(st, 2, key.h2);
        if (sqlite3_step(st) == SQLITE_ROW) ids.insert(e.insert_id);
        sqlite3_reset(st);
      }
      sqlite3_finalize(st);
    }
  }
  sqlite3_close(db);
  return ids;
}

std::string CheckAggregates(Store& store, const std::vector<const ClientEvent*>& events) {
  std::map<std::string, int64_t> users;
  std::map<std::string, std::map<int64_t, int64_t>> hourly;  // name -> hour -> count
  for (const ClientEvent* e : events) {
    ++users[e->user];
    ++hourly[e->name][e->time_ms / kHourMs * kHourMs];
  }
  for (int u = 0; u < kUsers; ++u) {
    const std::string user = "u" + std::to_string(u);
    Result<UserProfile> p = store.GetUser("default", user);
    const int64_t got = p.ok() ? p->events : 0;
    if (!p.ok() && p.status().code() != Code::kNotFound) return user + ": " + p.status().ToString();
    const int64_t want = users.count(user) ? users[user] : 0;
    if (got != want) {
      return "user " + user + ": " + std::to_string(got) + " events, stored " +
             std::to_string(want);
    }
  }
  for (int k = 0; k < kNames; ++k) {
    const std::string name = "e" + std::to_string(k);
    CounterQuery q;
    q.project = "default";
    q.event = name;
    q.granularity = Granularity::kHour;
    q.from_ms = kBaseMs;
    q.to_ms = kBaseMs + 7 * kHourMs;
    Result<std::vector<CounterPoint>> points = store.QueryCounters(q);
    if (!points.ok()) return name + ": " + points.status().ToString();
    std::map<int64_t, int64_t> got;
    for (const CounterPoint& pt : *points) {
      if (pt.count != 0) got[pt.bucket_ms] = pt.count;
    }
    if (got != hourly[name]) {
      int64_t sum_got = 0, sum_want = 0;
      for (const auto& [h, c] : got) sum_got += c;
      for (const auto& [h, c] : hourly[name]) sum_want += c;
      return "counter " + name + ": " + std::to_string(sum_got) + " counted, stored " +
             std::to_string(sum_want);
    }
  }
  return "";
}

bool WaitQueueEmpty(Store& store, int64_t timeout_ms) {
  return WaitUntil(
      [&] {
        Result<QueueStats> s = store.Stats();
        return s.ok() && s->pending == 0 && s->leased == 0;
      },
      std::chrono::milliseconds(timeout_ms), std::chrono::milliseconds(50));
}

}  // namespace sluice::testing
