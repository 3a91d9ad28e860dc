// Placeholder until the PostgreSQL store lands (issue 3).
#include "queue/postgres/postgres_store.h"

namespace sluice {

Result<StorePtr> OpenPostgresStore(const StoreOptions&) {
  return Status::Unavailable("postgres store not built yet");
}

}  // namespace sluice
