// SqliteStore: keyed jobs (queue/jobs.h). The job table is claimed with the
// queue's protocol: one UPDATE ... WHERE rowid IN (SELECT ... LIMIT)
// RETURNING under BEGIN IMMEDIATE, a token from meta 'token', deadlines on
// the store clock, every later write fenced by token and unexpired lease.
// docs/jobs.md has the SQL with the reasoning.
#include <algorithm>
#include <limits>
#include <map>

#include "common/event.h"
#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/sqlite/sqlite_store.h"

namespace sluice {
namespace {

// The schedule of one key. ?1 job, ?2 project, ?3 key, ?4 events, ?5 first
// and ?6 last event time, ?7 now, ?8 delay, ?9 max_delay. Every right-hand
// side reads the row as it was. A run is "frozen" once claimed (leased, or
// pending with attempts > 0: waiting for its retry): its due time is then
// the lease's or the retry's, and the events only fill pend_* for the next
// run. Otherwise the events join the pending run and its due time moves to
// min(now + delay, first pending upsert + max_delay): the debounce, capped.
constexpr char kUpsertJob[] =
    "INSERT INTO jobs(job, project, key, run, state, attempts, visible_at, pend_events, "
    "pend_first, pend_last, pend_since, pend_due, delay, max_delay) "
    "VALUES (?1, ?2, ?3, 1, 'pending', 0, ?7 + min(?8, ?9), ?4, ?5, ?6, ?7, ?7 + min(?8, ?9), "
    "?8, ?9) "
    "ON CONFLICT(job, project, key) DO UPDATE SET delay = ?8, max_delay = ?9, "
    "run = run + (state = 'idle'), "
    "state = CASE WHEN state = 'idle' THEN 'pending' ELSE state END, "
    "visible_at = CASE WHEN state = 'leased' OR attempts > 0 THEN visible_at "
    "  ELSE min(?7 + ?8, CASE WHEN pend_events = 0 THEN ?7 ELSE pend_since END + ?9) END, "
    "pend_since = CASE WHEN pend_events = 0 THEN ?7 ELSE pend_since END, "
    "pend_due = min(?7 + ?8, CASE WHEN pend_events = 0 THEN ?7 ELSE pend_since END + ?9), "
    "pend_first = CASE WHEN pend_events = 0 THEN ?5 ELSE min(pend_first, ?5) END, "
    "pend_last = CASE WHEN pend_events = 0 THEN ?6 ELSE max(pend_last, ?6) END, "
    "pend_events = pend_events + ?4";

// The person of distinct id ?2 (profile::PersonOf on the stored columns: a
// root — the target of some link, or an id without links — is itself, any
// other id its earliest link's target).
constexpr char kPersonOf[] =
    "SELECT CASE WHEN linked_to OR link_target IS NULL THEN user_id ELSE link_target END "
    "FROM users WHERE project = ?1 AND user_id = ?2";

// ?1 job, ?2 project, ?3 key, ?4 token, ?5 now.
#define SLUICE_JOB_FENCED \
  " WHERE job = ?1 AND project = ?2 AND key = ?3 AND lease_token = ?4 AND state = 'leased' " \
  "AND lease_until > ?5"

// The run is over (done, or dead-lettered): the row goes idle, or on to the
// next run when events arrived since the claim, due at max(now, its due
// time) (the debounce ran while the run was leased).
constexpr char kAdvanceJob[] =
    "UPDATE jobs SET "
    "state = CASE WHEN pend_events > 0 THEN 'pending' ELSE 'idle' END, "
    "run = run + (pend_events > 0), "
    "visible_at = CASE WHEN pend_events > 0 THEN max(pend_due, ?5) ELSE 0 END, "
    "attempts = 0, lease_owner = NULL, lease_token = NULL, lease_until = NULL, reclaimed = 0, "
    "last_error = ?6, run_events = 0, run_first = 0, run_last = 0, runs_done = runs_done + 1, "
    "last_run = ?5" SLUICE_JOB_FENCED;

std::string JsonArray(const std::vector<std::string>& names) {
  std::string out;
  out.push_back('[');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(names[i], &out);
  }
  out.push_back(']');
  return out;
}

std::string IdsJson(const std::vector<int64_t>& ids) {
  std::string out;
  out.push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(ids[i]);
  }
  out.push_back(']');
  return out;
}

void BindRef(Stmt& s, const JobRef& ref) { s.Bind(1, ref.job).Bind(2, ref.project).Bind(3, ref.key); }

// ?1 job or '', ?2 project or '', ?3 key or '', ?4 JSON ids or NULL.
#define SLUICE_DEAD_RUNS                                                   \
  " (?1 = '' OR job = ?1) AND (?2 = '' OR project = ?2) AND (?3 = '' OR key = ?3) " \
  "AND (?4 IS NULL OR id IN (SELECT value FROM json_each(?4))) "

void BindDeadRuns(Stmt& s, const JobFilter& f, const std::string& ids_json) {
  s.Bind(1, f.job).Bind(2, f.project).Bind(3, f.key);
  if (f.ids.empty()) {
    s.BindNull(4);
  } else {
    s.Bind(4, ids_json);
  }
}

int64_t Limit(const JobFilter& f) { return f.limit > 0 ? f.limit : 100; }

}  // namespace

Status SqliteStore::ApplyJobDeltasLocked(SqliteConn& c, int64_t now,
                                         const std::vector<JobDelta>& jobs) {
  SLUICE_ASSIGN_OR_RETURN(Stmt upsert, c.Prepare(kUpsertJob));
  for (const JobDelta& d : jobs) {
    std::string key = d.key;
    if (d.key_is_distinct_id) {
      SLUICE_ASSIGN_OR_RETURN(Stmt person, c.Prepare(kPersonOf));
      person.Bind(1, d.project).Bind(2, d.key);
      SLUICE_ASSIGN_OR_RETURN(bool row, person.Step());
      if (row) key = person.Str(0);
    }
    upsert.Reset();
    upsert.Bind(1, d.job).Bind(2, d.project).Bind(3, key).Bind(4, d.events);
    upsert.Bind(5, d.first_event_ms).Bind(6, d.last_event_ms).Bind(7, now);
    upsert.Bind(8, d.delay_ms).Bind(9, d.max_delay_ms);
    SLUICE_RETURN_IF_ERROR(upsert.Run());
  }
  return Status::Ok();
}

Result<RunLease> SqliteStore::ClaimJobRuns(const JobClaimRequest& req) {
  if (req.owner.empty() || req.jobs.empty() || req.max_runs <= 0 || req.lease_ttl_ms <= 0) {
    return Status::InvalidArgument("claim runs: owner, jobs, max_runs and lease_ttl_ms are required");
  }
  static constexpr char kAnyDue[] =
      "SELECT 1 FROM jobs WHERE state != 'idle' AND visible_at <= ?1 "
      "AND job IN (SELECT value FROM json_each(?2)) LIMIT 1";
  // As the queue's claim: the subquery and the UPDATE are one statement
  // under the write lock; "pending and due" and "leased and expired" are the
  // one condition visible_at <= now. attempts = 0 marks a run's first claim:
  // it takes the pending events as its content (frozen from here on).
  static constexpr char kClaim[] =
      "UPDATE jobs SET state = 'leased', lease_owner = ?1, lease_token = ?2, "
      "lease_until = ?3, visible_at = ?3, reclaimed = (state = 'leased'), "
      "run_events = CASE WHEN attempts = 0 THEN pend_events ELSE run_events END, "
      "run_first = CASE WHEN attempts = 0 THEN pend_first ELSE run_first END, "
      "run_last = CASE WHEN attempts = 0 THEN pend_last ELSE run_last END, "
      "pend_events = CASE WHEN attempts = 0 THEN 0 ELSE pend_events END, "
      "attempts = attempts + 1 "
      "WHERE rowid IN (SELECT rowid FROM jobs WHERE state != 'idle' AND visible_at <= ?4 "
      "AND job IN (SELECT value FROM json_each(?6)) ORDER BY visible_at LIMIT ?5) "
      "RETURNING job, project, key, run, run_events, run_first, run_last, attempts, reclaimed";
  const std::string names = JsonArray(req.jobs);
  {
    auto conn = pool_->Acquire();
    SLUICE_ASSIGN_OR_RETURN(int64_t now, conn->NowMs());
    SLUICE_ASSIGN_OR_RETURN(Stmt any, conn->Prepare(kAnyDue));
    any.Bind(1, now).Bind(2, names);
    SLUICE_ASSIGN_OR_RETURN(bool row, any.Step());
    if (!row) return RunLease{};
  }
  RunLease lease;
  Status st = Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        lease = RunLease{};
        SLUICE_ASSIGN_OR_RETURN(Stmt next, c.Prepare("SELECT v + 1 FROM meta WHERE k = 'token'"));
        SLUICE_ASSIGN_OR_RETURN(bool has, next.Step());
        if (!has) return Status::Internal("sqlite store: token counter missing");
        const int64_t token = next.Int(0);
        SLUICE_RETURN_IF_ERROR(next.Run());
        SLUICE_ASSIGN_OR_RETURN(Stmt claim, c.Prepare(kClaim));
        claim.Bind(1, req.owner).Bind(2, token).Bind(3, now + req.lease_ttl_ms).Bind(4, now);
        claim.Bind(5, static_cast<int64_t>(req.max_runs)).Bind(6, names);
        while (true) {
          SLUICE_ASSIGN_OR_RETURN(bool row, claim.Step());
          if (!row) break;
          ClaimedRun r;
          r.ref = JobRef{claim.Str(0), claim.Str(1), claim.Str(2)};
          r.run = claim.Int(3);
          r.events = claim.Int(4);
          r.first_event_ms = claim.Int(5);
          r.last_event_ms = claim.Int(6);
          r.attempts = static_cast<int32_t>(claim.Int(7));
          r.reclaimed = claim.Int(8) != 0;
          lease.runs.push_back(std::move(r));
        }
        if (lease.runs.empty()) return Status::Ok();
        SLUICE_ASSIGN_OR_RETURN(Stmt set, c.Prepare("UPDATE meta SET v = ?1 WHERE k = 'token'"));
        SLUICE_RETURN_IF_ERROR(set.Bind(1, token).Run());
        lease.token = token;
        lease.lease_until_ms = now + req.lease_ttl_ms;
        return Status::Ok();
      },
      Durability::kLease);
  if (!st.ok()) return st;
  return lease;
}

Result<int64_t> SqliteStore::ExtendJobRuns(int64_t token, int64_t lease_ttl_ms) {
  static constexpr char kExtend[] =
      "UPDATE jobs SET lease_until = ?1, visible_at = ?1 "
      "WHERE lease_token = ?2 AND state = 'leased' AND lease_until > ?3";
  if (lease_ttl_ms <= 0) return Status::InvalidArgument("extend runs: lease_ttl_ms must be > 0");
  int64_t until = 0;
  Status st = Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        until = now + lease_ttl_ms;
        SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kExtend));
        SLUICE_RETURN_IF_ERROR(s.Bind(1, until).Bind(2, token).Bind(3, now).Run());
        if (s.Changes() == 0) {
          return Status::LeaseLost(fmt::format("extend runs: token {} holds no runs", token));
        }
        return Status::Ok();
      },
      Durability::kLease);
  if (!st.ok()) return st;
  return until;
}

Status SqliteStore::CompleteJobRun(int64_t token, const JobRef& ref) {
  return Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kAdvanceJob));
        BindRef(s, ref);
        SLUICE_RETURN_IF_ERROR(s.Bind(4, token).Bind(5, now).BindNull(6).Run());
        if (s.Changes() == 0) {
          return Status::LeaseLost(fmt::format("complete run: token {} does not hold {}/{}/{}",
                                               token, ref.job, ref.project, ref.key));
        }
        return Status::Ok();
      },
      Durability::kLease);
}

Result<FailResult> SqliteStore::FailJobRun(int64_t token, const JobRef& ref,
                                           const std::string& error,
                                           const BackoffPolicy& backoff) {
  static constexpr char kHeld[] = "SELECT attempts FROM jobs" SLUICE_JOB_FENCED;
  static constexpr char kRetry[] =
      "UPDATE jobs SET state = 'pending', visible_at = ?6, last_error = ?7, lease_owner = NULL, "
      "lease_token = NULL, lease_until = NULL" SLUICE_JOB_FENCED;
  static constexpr char kBury[] =
      "INSERT INTO job_dead(job, project, key, run, events, first_event, last_event, attempts, "
      "last_error, died_at) SELECT job, project, key, run, run_events, run_first, run_last, "
      "attempts, ?6, ?5 FROM jobs" SLUICE_JOB_FENCED;
  FailResult result;
  Status st = Write(
      [&](SqliteConn& c, int64_t now) -> Status {
        result = FailResult{};
        SLUICE_ASSIGN_OR_RETURN(Stmt held, c.Prepare(kHeld));
        BindRef(held, ref);
        held.Bind(4, token).Bind(5, now);
        SLUICE_ASSIGN_OR_RETURN(bool row, held.Step());
        if (!row) {
          return Status::LeaseLost(fmt::format("fail run: token {} does not hold {}/{}/{}", token,
                                               ref.job, ref.project, ref.key));
        }
        const FailStep step = PlanFail(backoff, held.Int(0), BackoffJitter());
        held.Reset();
        if (!step.dead) {
          SLUICE_ASSIGN_OR_RETURN(Stmt retry, c.Prepare(kRetry));
          BindRef(retry, ref);
          retry.Bind(4, token).Bind(5, now).Bind(6, now + step.delay_ms).Bind(7, error);
          SLUICE_RETURN_IF_ERROR(retry.Run());
          result.retried = 1;
          return Status::Ok();
        }
        SLUICE_ASSIGN_OR_RETURN(Stmt bury, c.Prepare(kBury));
        BindRef(bury, ref);
        SLUICE_RETURN_IF_ERROR(bury.Bind(4, token).Bind(5, now).Bind(6, error).Run());
        SLUICE_ASSIGN_OR_RETURN(Stmt advance, c.Prepare(kAdvanceJob));
        BindRef(advance, ref);
        SLUICE_RETURN_IF_ERROR(advance.Bind(4, token).Bind(5, now).Bind(6, error).Run());
        result.dead = 1;
        return Status::Ok();
      },
      Durability::kLease);
  if (!st.ok()) return st;
  return result;
}

Result<std::vector<JobRow>> SqliteStore::ListJobs(const JobFilter& f) {
  static constexpr char kList[] =
      "SELECT job, project, key, state, run, attempts, visible_at, coalesce(lease_owner, ''), "
      "run_events, pend_events, pend_since, pend_due, runs_done, last_run, "
      "coalesce(last_error, '') FROM jobs "
      "WHERE (?1 = '' OR job = ?1) AND (?2 = '' OR project = ?2) AND (?3 = '' OR key = ?3) "
      "ORDER BY job, project, key LIMIT ?4";
  std::vector<JobRow> out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kList));
    s.Bind(1, f.job).Bind(2, f.project).Bind(3, f.key).Bind(4, Limit(f));
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      JobRow j;
      j.ref = JobRef{s.Str(0), s.Str(1), s.Str(2)};
      j.state = s.Str(3);
      j.run = s.Int(4);
      j.attempts = static_cast<int32_t>(s.Int(5));
      j.visible_at_ms = j.state == "idle" ? 0 : s.Int(6);
      j.lease_owner = s.Str(7);
      j.run_events = s.Int(8);
      j.pending_events = s.Int(9);
      j.pending_since_ms = j.pending_events > 0 ? s.Int(10) : 0;
      j.pending_due_ms = j.pending_events > 0 ? s.Int(11) : 0;
      j.runs_done = s.Int(12);
      j.last_run_ms = s.Int(13);
      j.last_error = s.Str(14);
      out.push_back(std::move(j));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<JobStats>> SqliteStore::JobStatsByName() {
  static constexpr char kStats[] =
      "SELECT job, count(*), "
      "sum(state = 'pending' AND visible_at > ?1), "
      "sum(state != 'idle' AND visible_at <= ?1), "
      "sum(state = 'leased' AND visible_at > ?1), "
      "coalesce(min(CASE WHEN state != 'idle' AND visible_at <= ?1 THEN visible_at END), 0), "
      "sum(runs_done) FROM jobs GROUP BY job";
  static constexpr char kDead[] = "SELECT job, count(*) FROM job_dead GROUP BY job";
  std::vector<JobStats> out;
  Status st = Read([&](SqliteConn& c, int64_t now) -> Status {
    out.clear();
    std::map<std::string, JobStats> by_name;
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kStats));
    s.Bind(1, now);
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      JobStats& j = by_name[s.Str(0)];
      j.job = s.Str(0);
      j.keys = s.Int(1);
      j.waiting = s.Int(2);
      j.due = s.Int(3);
      j.leased = s.Int(4);
      j.oldest_due_ms = s.Int(5) > 0 ? std::max<int64_t>(0, now - s.Int(5)) : 0;
      j.runs_done = s.Int(6);
    }
    SLUICE_ASSIGN_OR_RETURN(Stmt d, c.Prepare(kDead));
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, d.Step());
      if (!row) break;
      JobStats& j = by_name[d.Str(0)];
      j.job = d.Str(0);
      j.dead = d.Int(1);
    }
    for (auto& [name, j] : by_name) out.push_back(std::move(j));
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<DeadRun>> SqliteStore::ListDeadRuns(const JobFilter& f) {
  static constexpr char kList[] =
      "SELECT id, job, project, key, run, events, first_event, last_event, attempts, last_error, "
      "died_at FROM job_dead WHERE" SLUICE_DEAD_RUNS "ORDER BY id LIMIT ?5";
  const std::string ids = IdsJson(f.ids);
  std::vector<DeadRun> out;
  Status st = Read([&](SqliteConn& c, int64_t) -> Status {
    out.clear();
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kList));
    BindDeadRuns(s, f, ids);
    s.Bind(5, Limit(f));
    while (true) {
      SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      DeadRun d;
      d.id = s.Int(0);
      d.ref = JobRef{s.Str(1), s.Str(2), s.Str(3)};
      d.run = s.Int(4);
      d.events = s.Int(5);
      d.first_event_ms = s.Int(6);
      d.last_event_ms = s.Int(7);
      d.attempts = static_cast<int32_t>(s.Int(8));
      d.last_error = s.Str(9);
      d.died_at_ms = s.Int(10);
      out.push_back(std::move(d));
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

Result<int64_t> SqliteStore::RequeueDeadRuns(const JobFilter& f) {
  static constexpr char kSelect[] =
      "SELECT id, job, project, key, events, first_event, last_event FROM job_dead "
      "WHERE" SLUICE_DEAD_RUNS "ORDER BY id";
  static constexpr char kDelete[] = "DELETE FROM job_dead WHERE id = ?1";
  const std::string ids = IdsJson(f.ids);
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t now) -> Status {
    n = 0;
    std::vector<std::pair<int64_t, JobDelta>> dead;
    {
      SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kSelect));
      BindDeadRuns(s, f, ids);
      while (true) {
        SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        // Due now: delay and max_delay 0 (a frozen run keeps them for next).
        JobDelta d{s.Str(1), s.Str(2), s.Str(3), std::max<int64_t>(1, s.Int(4)), s.Int(5),
                   s.Int(6), 0, 0};
        dead.emplace_back(s.Int(0), std::move(d));
      }
    }
    std::vector<JobDelta> deltas;
    for (auto& [id, d] : dead) deltas.push_back(d);
    SLUICE_RETURN_IF_ERROR(ApplyJobDeltasLocked(c, now, deltas));
    SLUICE_ASSIGN_OR_RETURN(Stmt del, c.Prepare(kDelete));
    for (const auto& entry : dead) {
      del.Reset();
      SLUICE_RETURN_IF_ERROR(del.Bind(1, entry.first).Run());
      ++n;
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> SqliteStore::PurgeDeadRuns(const JobFilter& f) {
  static constexpr char kPurge[] = "DELETE FROM job_dead WHERE" SLUICE_DEAD_RUNS;
  const std::string ids = IdsJson(f.ids);
  int64_t n = 0;
  Status st = Write([&](SqliteConn& c, int64_t) -> Status {
    SLUICE_ASSIGN_OR_RETURN(Stmt s, c.Prepare(kPurge));
    BindDeadRuns(s, f, ids);
    SLUICE_RETURN_IF_ERROR(s.Run());
    n = s.Changes();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
}

}  // namespace sluice
