// OpenStore: the one place that knows every Store implementation. Everything
// else holds a Store* and never learns which one it is.
#pragma once

#include <memory>

#include "common/clock.h"
#include "common/status.h"
#include "queue/store.h"

namespace sluice {

// Opens (creating and migrating if needed) the store named by options.url:
// "sqlite:PATH" (also "sqlite://PATH") or "postgres://..." / "postgresql://...".
// The store's own waits and retries (lock waits, connection backoff, periodic
// housekeeping) run on `clock`; lease times are always the database's clock.
// REQUIRES: clock outlives the store.
Result<StorePtr> OpenStore(const StoreOptions& options, Clock* clock = &Clock::Real());

}  // namespace sluice
