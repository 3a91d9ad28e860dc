#include "testing/store_fixture.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>

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

}  // namespace sluice::testing
