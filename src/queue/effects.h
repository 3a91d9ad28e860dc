// Effects: what the in-store consumers (users, counters, jobs) want applied.
//
// Consumers turn a batch of events into these deltas in plain C++ (pure,
// store-agnostic), outside any store transaction; the watcher hands them to
// the store as data (InStoreEffects), and each Store applies them with its
// own SQL inside the fenced MarkDone/Complete transaction, only for the rows
// whose done bit that transaction sets (DESIGN §3). Thread-compatible value
// types.
#pragma once

#include <cstdint>
#include <string>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "profile/profile.h"
#include "queue/jobs.h"

namespace sluice {

// What one batch adds to one (project, distinct id): its mergeable state
// (profile::IdState, built with AddEvent) — counts, first/last seen, each
// property's registers, identity flags and links. The store merges it into
// the stored state with IdState::Merge, so the result does not depend on
// which batch comes first.
struct IdDelta {
  std::string project;
  std::string id;
  IdState state;
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
  std::vector<IdDelta> users;  // one per (project, id), sorted
  std::vector<CounterDelta> counters;
  // Job schedules (queue/jobs.h): one upsert of (job, project, key) each.
  std::vector<JobDelta> jobs;
  bool empty() const { return users.empty() && counters.empty() && jobs.empty(); }
};

// One in-store consumer's part of a MarkDone/Complete: its done bit and the
// effects built for exactly the request's rows that lack that bit in the
// masks the request carries (store.h, MarkDoneRequest).
struct InStoreEffects {
  uint64_t bit = 0;  // REQUIRES: exactly one bit set
  Effects effects;
};

// ---- the users part, as both stores apply it ----

// Every in-store part's id deltas of one request, one per (project, id), in
// (project, id) order (an id several parts name is merged with
// IdState::Merge). Valid while the request lives.
class IdDeltaSet {
 public:
  explicit IdDeltaSet(std::span<const InStoreEffects> in_store);
  const std::vector<const IdDelta*>& rows() const { return rows_; }

 private:
  std::vector<IdDelta> merged_;  // ids named by several parts
  std::vector<const IdDelta*> rows_;
};

// One id as a store keeps it: the users row (and its links).
struct StoredId {
  bool exists = false;
  // Counts, times, flags. properties are left empty (see `properties`);
  // event_counts are not read (they add up in SQL); links hold every link of
  // the id when `all_links`, else only the earliest (the row's link columns).
  IdState state;
  std::string properties;  // the stored text (SerializeProperties)
  bool all_links = false;
};

// True when the store must read every link of the id before merging
// `delta` (MergeId counts the merges the id takes part in): the delta adds
// links or makes the id a link target.
bool NeedsAllLinks(const IdState& delta);

// True when merging `delta` needs the stored row: it has property ops, links
// or makes the id a link target. Otherwise a store may add it with SQL alone —
// events add, first/last seen min/max over rows with events (a row with no
// events takes the delta's times), user_seen or — which is exactly what
// IdState::Merge does with such a delta (and what the property tests check).
bool NeedsStoredRow(const IdState& delta);

// What to write back for one id: the stored state merged with the delta by
// IdState::Merge (the only merge; the stores hold SQL only).
struct IdWrite {
  IdState merged;          // properties and event_counts not filled
  std::string properties;  // the text to store
  std::optional<std::pair<std::string, OpKey>> earliest;  // the row's link columns
  LinkCounts change;       // after - before (zero unless the links were all read)
};
// REQUIRES: stored.all_links when NeedsAllLinks(delta).
Result<IdWrite> MergeId(const StoredId& stored, const IdState& delta);

}  // namespace sluice
