// Keyed jobs in the store: the types of the job tables and of their claim
// protocol (Store::ClaimJobRuns and the fenced run writes, store.h).
//
// A job is a (job, project, key) row. The job's in-store consumer schedules
// it with a JobDelta, applied in the fenced transaction that sets its done
// bit (effects.h): N events for one key before its run make one run. A run's
// content is frozen when it is first claimed; events that arrive while it is
// leased or waiting for a retry go to the next run, which becomes due when
// this one completes (or dies). Times are the store's clock; event times are
// the events' own. docs/jobs.md has the semantics. Value types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

// One key's part of one batch for one job (an in-store effect, effects.h).
struct JobDelta {
  std::string job;
  std::string project;
  std::string key;
  int64_t events = 0;          // events of the batch for this key; REQUIRES: > 0
  int64_t first_event_ms = 0;  // min event time, epoch ms
  int64_t last_event_ms = 0;   // max event time, epoch ms
  // The run becomes due at min(upsert + delay, first pending upsert +
  // max_delay), store clock. REQUIRES: 0 <= delay_ms <= max_delay_ms.
  int64_t delay_ms = 0;
  int64_t max_delay_ms = 0;
  // True for a `key = "user"` job: `key` is an event's distinct id and the
  // store schedules the id's PERSON instead (docs/users.md): the root itself,
  // or the target of the id's earliest link, read from the users rows as they
  // stand after this transaction's users effects (applied first). So a
  // person's ids share one run; an id whose link is not known yet (no row, no
  // link) keys on itself.
  bool key_is_distinct_id = false;
};

// Identifies one job row.
struct JobRef {
  std::string job;
  std::string project;
  std::string key;
  bool operator==(const JobRef&) const = default;
};

struct JobClaimRequest {
  std::string owner;              // replica id (+ loop); REQUIRES: non-empty
  std::vector<std::string> jobs;  // job names this replica runs; REQUIRES: non-empty
  int32_t max_runs = 16;          // REQUIRES: > 0
  int64_t lease_ttl_ms = 30000;   // REQUIRES: > 0
};

// One claimed run: the frozen content of run `run` of a job row.
struct ClaimedRun {
  JobRef ref;
  int64_t run = 0;             // 1, 2, ... per row; the same on every retry of a run
  int64_t events = 0;          // events coalesced into this run (events_since_last_run)
  int64_t first_event_ms = 0;  // their min event time
  int64_t last_event_ms = 0;   // their max event time
  int32_t attempts = 0;        // claims of this run so far, this one included
  bool reclaimed = false;      // this claim took over an expired lease
};

struct RunLease {
  int64_t token = 0;           // fencing token (the event leases' counter); 0 = nothing
  int64_t lease_until_ms = 0;  // store clock
  std::vector<ClaimedRun> runs;  // empty when idle; in no particular order
};

// One job row as the admin reads it.
struct JobRow {
  JobRef ref;
  std::string state;        // "idle" | "pending" | "leased"
  int64_t run = 0;          // the current run (claimed or next to claim); last run when idle
  int32_t attempts = 0;     // of the current run
  int64_t visible_at_ms = 0;  // due (pending) or lease deadline (leased); 0 when idle
  std::string lease_owner;
  int64_t run_events = 0;      // frozen content of a claimed run
  int64_t pending_events = 0;  // events waiting for the next run
  int64_t pending_since_ms = 0;  // store clock of the first of them; 0 when none
  int64_t pending_due_ms = 0;    // when they become due; 0 when none
  int64_t runs_done = 0;       // runs completed or dead-lettered
  int64_t last_run_ms = 0;     // store clock of the last completion; 0 = never
  std::string last_error;
};

// Selects job rows or dead runs. Empty fields match everything.
struct JobFilter {
  std::string job;
  std::string project;
  std::string key;
  std::vector<int64_t> ids;  // dead runs only: by id
  int32_t limit = 0;         // lists only; 0 = default (100)
};

// A run that reached max_attempts, kept for the operator.
struct DeadRun {
  int64_t id = 0;
  JobRef ref;
  int64_t run = 0;
  int64_t events = 0;
  int64_t first_event_ms = 0;
  int64_t last_event_ms = 0;
  int32_t attempts = 0;
  std::string last_error;
  int64_t died_at_ms = 0;  // store clock
};

// Per job name.
struct JobStats {
  std::string job;
  int64_t keys = 0;      // rows
  int64_t waiting = 0;   // pending, not due yet (debounce or retry backoff)
  int64_t due = 0;       // pending and due now
  int64_t leased = 0;
  int64_t dead = 0;      // dead runs kept
  int64_t oldest_due_ms = 0;  // lag: now - the earliest due time of a due run; 0 = none
  int64_t runs_done = 0;
};

}  // namespace sluice
