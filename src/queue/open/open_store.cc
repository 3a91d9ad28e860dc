#include "queue/open/open_store.h"

#include <string_view>

#include "queue/postgres/postgres_store.h"
#include "queue/sqlite/sqlite_store.h"

namespace sluice {

Result<StorePtr> OpenStore(const StoreOptions& options, Clock* clock) {
  const std::string_view url = options.url;
  if (url.starts_with("sqlite:")) {
    std::string path(url.substr(7));
    // Also accept the URI-ish spelling sqlite://PATH.
    if (path.starts_with("//")) path = path.substr(2);
    return SqliteStore::Open(options, path, clock);
  }
  if (url.starts_with("postgres://") || url.starts_with("postgresql://")) {
    return OpenPostgresStore(options, clock);
  }
  return Status::InvalidArgument(
      "store url must start with sqlite:, postgres:// or postgresql://, got '" + options.url +
      "'");
}

}  // namespace sluice
