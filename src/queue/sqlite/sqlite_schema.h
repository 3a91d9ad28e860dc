// Versioned schema of the SQLite store (PRAGMA user_version) and its
// migrations. docs/claim-protocol-sqlite.md explains each table and index.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"
#include "queue/sqlite/sqlite_db.h"

namespace sluice {

// The schema version this build writes.
inline constexpr int kSqliteSchemaVersion = 6;

// Keys of counter_users (v2): 64-bit XXH3 hashes, so the distinct-user check
// is an insert of three integers. Stable across builds and machines (XXH3 is
// a fixed algorithm); they are stored, so never change them.
// series = hash of project, event and granularity name, NUL-separated.
int64_t CounterSeriesHash(std::string_view project, std::string_view event,
                          std::string_view granularity);
int64_t CounterUserHash(std::string_view user_id);

// Key of the dedup bucket tables (v6): XXH3-128 of the length-prefixed
// (project, insert_id), as two integer columns. With n live entries two keys
// collide with odds about n^2 / 2^129 (1e-20 at 2.6 billion). Stored: never
// change it.
struct DedupKey {
  int64_t h1 = 0;
  int64_t h2 = 0;
};
DedupKey SqliteDedupKey(std::string_view project, std::string_view insert_id);

// Brings the database to kSqliteSchemaVersion. Safe when several processes
// open one file at once: the check and every step run under BEGIN IMMEDIATE,
// so exactly one process migrates and the others see the result.
// kInternal when the file was written by a newer build. `target` < the
// current version is for tests of the migrations themselves.
Status MigrateSqlite(SqliteConn& conn, int target = kSqliteSchemaVersion);

}  // namespace sluice
