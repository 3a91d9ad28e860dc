// OpenStore: the one place that knows every Store implementation. Everything
// else holds a Store* and never learns which one it is.
#pragma once

#include <memory>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

// Opens (creating and migrating if needed) the store named by options.url:
// "sqlite:PATH" (also "sqlite://PATH") or "postgres://..." / "postgresql://...".
Result<StorePtr> OpenStore(const StoreOptions& options);

}  // namespace sluice
