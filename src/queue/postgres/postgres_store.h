// PostgreSQL store: replicas on many hosts against one PostgreSQL (libpq).
#pragma once

#include "queue/store.h"

namespace sluice {

// options.url is "postgres://..." or "postgresql://...".
Result<StorePtr> OpenPostgresStore(const StoreOptions& options);

}  // namespace sluice
