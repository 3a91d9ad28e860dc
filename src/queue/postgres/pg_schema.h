// Versioned schema migrations of the PostgreSQL store.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "queue/postgres/pg_conn.h"

namespace sluice {

inline constexpr int64_t kPostgresSchemaVersion = 7;

// Brings the database to kPostgresSchemaVersion, one transaction per
// migration, under a session advisory lock so that replicas starting at the
// same time migrate once and the others wait, then see the result. Fails
// (kInternal) when the database is newer than this build. `target` below
// kPostgresSchemaVersion is for tests of the migrations themselves.
Status MigratePostgres(PgConn& conn, int64_t target = kPostgresSchemaVersion);

}  // namespace sluice
