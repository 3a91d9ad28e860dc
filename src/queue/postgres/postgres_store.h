// PostgreSQL store: replicas on many hosts against one PostgreSQL (libpq).
#pragma once

#include "common/clock.h"
#include "queue/store.h"

namespace sluice {

// options.url is "postgres://..." or "postgresql://...". REQUIRES: clock
// outlives the store.
Result<StorePtr> OpenPostgresStore(const StoreOptions& options, Clock* clock = &Clock::Real());

}  // namespace sluice
