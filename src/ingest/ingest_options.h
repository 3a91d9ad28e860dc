// IngestOptions: the bounds and thresholds of the write path ([ingest]).
// Thread-compatible value type.
#pragma once

#include <cstdint>

#include "ingest/formats/format.h"

namespace sluice {

// The decoder bounds (DecodeLimits) plus what the service itself enforces.
struct IngestOptions : DecodeLimits {
  int64_t max_body_bytes = 5 * 1024 * 1024;  // compressed or not, per request; 413 above
  int64_t high_water = 1000000;      // pending+leased events above which ingest answers 503
  int64_t slow_down = 800000;        // above this, group commit waits a little (soft limit)
  int32_t retry_after_s = 5;         // Retry-After on 503/429
  int32_t group_max_events = 20000;  // events per group commit transaction
};

}  // namespace sluice
