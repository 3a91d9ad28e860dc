// The JSON of a person (GET /v1/users/{id}, `sluice users show`), one
// rendering for both (docs/users.md).
#pragma once

#include <string>

#include "queue/store.h"

namespace sluice {

// {"user_id","ids","project","first_seen","last_seen","events","event_counts",
//  "properties","merges_refused":[{"from","to","time","insert_id"}]}; times
// ISO 8601 UTC with milliseconds.
std::string UserProfileJson(const UserProfile& u);

}  // namespace sluice
