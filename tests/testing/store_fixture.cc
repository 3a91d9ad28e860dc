#include "testing/store_fixture.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>

#include "common/event.h"
#include "queue/open/open_store.h"
#include "testing/pg_fixture.h"

namespace sluice::testing {

std::string FreshStoreUrl(const std::string& kind, const TempDir& dir) {
  if (kind == "sqlite") {
    static std::atomic<int> n{0};
    return "sqlite:" + dir.File("store" + std::to_string(n++) + "/sluice.db");
  }
  if (kind == "postgres") {
    std::string error;
    std::string url = FreshPostgresUrl(&error);
    if (url.empty()) ADD_FAILURE() << error;
    return url;
  }
  ADD_FAILURE() << "unknown store kind '" << kind << "'";
  return "";
}

StorePtr OpenTestStore(const std::string& kind, const TempDir& dir, StoreOptions overrides) {
  if (overrides.url.empty() || overrides.url == StoreOptions{}.url) {
    overrides.url = FreshStoreUrl(kind, dir);
    if (overrides.url.empty()) return nullptr;
  }
  auto store = OpenStore(overrides);
  if (!store.ok()) {
    ADD_FAILURE() << "cannot open " << kind << " store " << overrides.url << ": "
                  << store.status().ToString();
    return nullptr;
  }
  return std::move(store).value();
}

std::string InjectEnqueueFailure(const std::string& kind, const std::string& url,
                                 const std::string& insert_id) {
  if (kind == "sqlite") {
    const std::string path = url.substr(std::string("sqlite:").size());
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
      sqlite3_close(db);
      return "cannot open " + path;
    }
    sqlite3_busy_timeout(db, 10000);
    char* sql = sqlite3_mprintf(
        "CREATE TRIGGER inject_enqueue_failure BEFORE INSERT ON queue "
        "WHEN NEW.insert_id = %Q BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        insert_id.c_str());
    char* err = nullptr;
    std::string out;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      out = err != nullptr ? err : "sqlite error";
    }
    sqlite3_free(err);
    sqlite3_free(sql);
    sqlite3_close(db);
    return out;
  }
  if (kind == "postgres") {
    // Assumes the logical schema's table and column names (DESIGN §3).
    return PostgresExec(
        url,
        "CREATE FUNCTION inject_enqueue_failure() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'injected failure'; END $$; "
        "CREATE TRIGGER inject_enqueue_failure BEFORE INSERT ON queue FOR EACH ROW "
        "WHEN (NEW.insert_id = '" +
            insert_id + "') EXECUTE FUNCTION inject_enqueue_failure();");
  }
  return "unknown store kind " + kind;
}

std::string EnqueueOpenEvents(Store& store, int n, int64_t time_ms) {
  std::vector<NewEvent> events;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.event = "open";
    e.user_id = "u" + std::to_string(i % 5);
    e.time_ms = time_ms;
    events.push_back(NewEvent{"p", "id-" + std::to_string(i), ToBody(e)});
  }
  EnqueueBatch batch{events};
  auto r = store.Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  if (!r.ok()) return r.status().ToString();
  if ((*r)[0].accepted != n) return "accepted " + std::to_string((*r)[0].accepted);
  return "";
}

std::string OpenEventsCountedOnce(Store& store, int n, int64_t time_ms) {
  int64_t total = 0;
  for (int u = 0; u < 5; ++u) {
    auto p = store.GetUser("p", "u" + std::to_string(u));
    if (!p.ok()) return "user u" + std::to_string(u) + ": " + p.status().ToString();
    total += p->events;
  }
  if (total != n) return "users count " + std::to_string(total) + " events of " + std::to_string(n);
  CounterQuery q;
  q.project = "p";
  q.event = "open";
  q.granularity = Granularity::kHour;
  q.from_ms = time_ms / 3600000 * 3600000;
  q.to_ms = q.from_ms + 3600000;
  auto points = store.QueryCounters(q);
  if (!points.ok()) return "counters: " + points.status().ToString();
  int64_t counted = 0;
  for (const CounterPoint& pt : *points) counted += pt.count;
  if (counted != n) return "counters count " + std::to_string(counted) + " events of " + std::to_string(n);
  return "";
}

}  // namespace sluice::testing
