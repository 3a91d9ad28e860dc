// Effects: what the in-store consumers (users, counters) want applied.
//
// Consumers turn a batch of events into these deltas in plain C++ (pure,
// store-agnostic), outside any store transaction; the watcher hands them to
// the store as data (InStoreEffects), and each Store applies them with its
// own SQL inside the fenced MarkDone/Complete transaction, only for the rows
// whose done bit that transaction sets (DESIGN §3). Thread-compatible value
// types.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice {

// Per (project, user) increments and property merges of one batch.
struct UserDelta {
  std::string project;
  std::string user_id;
  int64_t first_seen_ms = 0;  // min event time in the batch
  int64_t last_seen_ms = 0;   // max event time in the batch
  int64_t events = 0;         // events in the batch for this user
  std::map<std::string, int64_t> event_counts;  // event name -> count
  // Minified JSON objects, "" when none. `set` is the batch's $set merged in
  // event order (later wins); applied over stored properties (overwrite).
  // `set_once` is the batch's $set_once merged (earlier wins); applied only to
  // keys the stored properties do not have yet.
  std::string set;
  std::string set_once;
};

enum class Granularity { kMinute, kHour, kDay };
inline constexpr Granularity kAllGranularities[] = {Granularity::kMinute, Granularity::kHour,
                                                     Granularity::kDay};
// "minute" | "hour" | "day".
const char* GranularityName(Granularity g);
// Start of the bucket holding `ms`.
int64_t BucketStartMs(Granularity g, int64_t ms);

// Per project x event name x bucket counts of one batch.
struct CounterDelta {
  std::string project;
  std::string event;
  Granularity granularity = Granularity::kMinute;
  int64_t bucket_ms = 0;            // bucket start, epoch ms
  int64_t count = 0;                // events in this bucket from the batch
  std::vector<std::string> users;   // distinct users seen in this bucket in the batch
};

struct Effects {
  std::vector<UserDelta> users;
  std::vector<CounterDelta> counters;
  bool empty() const { return users.empty() && counters.empty(); }
};

// One in-store consumer's part of a MarkDone/Complete: its done bit and the
// effects built for exactly the request's rows that lack that bit in the
// masks the request carries (store.h, MarkDoneRequest).
struct InStoreEffects {
  uint64_t bit = 0;  // REQUIRES: exactly one bit set
  Effects effects;
};

// Merges two JSON objects (minified text). Keys of `over` replace those of
// `base` when `overwrite`, else only fill keys `base` lacks. "" is {}.
std::string MergeJsonObjects(const std::string& base, const std::string& over, bool overwrite);

}  // namespace sluice
