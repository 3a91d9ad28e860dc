// StatusReport: what `GET /admin/status` and `sluice status` show — queue
// depth by state and the live replicas with the leases they hold — collected
// from the store and rendered as JSON or a text table. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

struct StatusReport {
  std::string store_kind;  // "sqlite" | "postgres"
  int64_t now_ms = 0;      // store clock
  QueueStats queue;
  std::vector<ReplicaInfo> replicas;  // heartbeat within the alive window
  std::vector<JobStats> jobs;         // keyed jobs, by name
};

// A replica counts as alive when its heartbeat is within this window; default
// 10 s = five missed heartbeats at the default 2 s interval.
inline constexpr int64_t kDefaultReplicaAliveWithinMs = 10000;

Result<StatusReport> CollectStatus(Store* store,
                                   int64_t alive_within_ms = kDefaultReplicaAliveWithinMs);

// {"queue":{"pending","leased","dead","oldest_pending_age_ms"},
//  "replicas":[{"id","host","pid","version","started","heartbeat","heartbeat_age_ms",
//               "leases_held"}],"jobs":[{"name","keys","waiting","due","leased","dead",
//  "lag_ms","runs_done"}],"store":"sqlite","now":"<ISO-8601>"}
std::string RenderStatusJson(const StatusReport& report);
// A human table of the same.
std::string RenderStatusText(const StatusReport& report);

}  // namespace sluice
