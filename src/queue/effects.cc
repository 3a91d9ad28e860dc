#include "queue/effects.h"

namespace sluice {

const char* GranularityName(Granularity g) {
  switch (g) {
    case Granularity::kMinute:
      return "minute";
    case Granularity::kHour:
      return "hour";
    case Granularity::kDay:
      return "day";
  }
  return "hour";
}

int64_t BucketStartMs(Granularity g, int64_t ms) {
  int64_t width = 60'000;
  if (g == Granularity::kHour) width = 3'600'000;
  if (g == Granularity::kDay) width = 86'400'000;
  // Floor division: epoch ms before 1970 still land at their bucket's start.
  int64_t q = ms / width;
  if (ms % width != 0 && ms < 0) --q;
  return q * width;
}

}  // namespace sluice
