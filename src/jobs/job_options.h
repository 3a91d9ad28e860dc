// Options of the keyed jobs: one JobOptions per [[job]] table, and the
// runner's JobRunnerOptions ([jobs] table). Parsed and validated once by
// config; value types. docs/jobs.md has the semantics.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

// What a job is keyed by (JobOptions::key).
enum class JobKeyKind {
  kUser,      // "user": the event's distinct id (user_id, else anonymous_id); JobKeyFor
  kProject,   // "project": one run per project
  kProperty,  // "property:NAME": the event property NAME (string or number)
};

struct JobOptions {
  // Stable identifier: the job rows' name, the metrics' label, the
  // Idempotency-Key's input. REQUIRES: 1..64 of [a-z0-9_-].
  std::string name;
  // done_mask bit of the job's in-store consumer, 0..62. REQUIRED (a bit
  // must not change while events are in flight); distinct from every
  // consumer's and job's.
  int32_t bit = -1;
  std::string key = "user";  // "user" | "project" | "property:NAME"
  JobKeyKind key_kind = JobKeyKind::kUser;  // parsed from `key` (ValidateJobOptions)
  std::string key_property;                 // NAME of "property:NAME"
  std::vector<std::string> events;    // filter; empty = all
  std::vector<std::string> projects;  // filter; empty = all
  // Debounce: a run is due once its key has been quiet this long (store
  // clock, at upsert); default 30 s. REQUIRES: >= 0, <= max_delay_ms.
  int64_t delay_ms = 30000;
  // ... but never later than this after its first pending event; default 5 m.
  int64_t max_delay_ms = 300000;
  std::string url;  // the handler, POSTed once per run; REQUIRES: http:// or https://
  int64_t timeout_ms = 10000;  // per POST; default 10 s; REQUIRES: > 0, < runner lease_ttl
  // Retries of a failed run (5xx, 429, transport error, other non-2xx);
  // a receiver's Retry-After is the floor of each delay. Default: 1 s
  // doubling to 5 m, dead after 10 attempts.
  BackoffPolicy backoff;
};

struct JobRunnerOptions {
  int32_t loops = 1;               // claim loops per replica; 0 = this replica runs no jobs
  int32_t batch = 16;              // runs per claim; REQUIRES: 1..1000
  int64_t lease_ttl_ms = 30000;    // run lease; default 30 s; REQUIRES: >= 100
  int64_t heartbeat_ms = 0;        // lease extension interval; 0 = lease_ttl / 3
  int64_t idle_poll_min_ms = 20;   // first idle wait; doubles up to max
  int64_t idle_poll_max_ms = 500;
  int64_t drain_timeout_ms = 20000;  // SIGTERM: a running claim's runs get this long
  int64_t stats_interval_ms = 5000;  // refresh of the lag gauge (JobStatsByName)
  int64_t max_response_bytes = 64 * 1024;  // of a handler's answer, kept for errors
};

// Checks and completes one job's options (`key` -> key_kind/key_property);
// InvalidArgument names the key (`base` = "job[2]").
Status ValidateJobOptions(const std::string& base, JobOptions* job);

}  // namespace sluice
