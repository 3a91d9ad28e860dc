// Versioned schema of the SQLite store (PRAGMA user_version) and its
// migrations. docs/claim-protocol-sqlite.md explains each table and index.
#pragma once

#include "common/status.h"
#include "queue/sqlite/sqlite_db.h"

namespace sluice {

// The schema version this build writes.
inline constexpr int kSqliteSchemaVersion = 1;

// Brings the database to kSqliteSchemaVersion. Safe when several processes
// open one file at once: the check and every step run under BEGIN IMMEDIATE,
// so exactly one process migrates and the others see the result.
// kInternal when the file was written by a newer build.
Status MigrateSqlite(SqliteConn& conn);

}  // namespace sluice
