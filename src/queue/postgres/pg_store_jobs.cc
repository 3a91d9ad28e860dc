// PostgresStore: keyed jobs (queue/jobs.h), the SQL of sqlite_store_jobs.cc
// in PostgreSQL's dialect. The claim is one WITH picked AS MATERIALIZED
// (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... FROM picked, its token sluice_next_token()
// (the queue's); times are sluice_now_ms() (the transaction's now(), epoch
// ms). docs/jobs.md has the SQL with the reasoning.
#include <algorithm>
#include <map>
#include <span>
#include <string_view>
#include <tuple>

#include "fmt/format.h"
#include "queue/lease_logic.h"
#include "queue/postgres/pg_store.h"

namespace sluice {
namespace {

// $2 = token, $3/$4/$5 = job, project, key.
#define SLUICE_JOB_FENCED                                                                \
  " WHERE job = $3 AND project = $4 AND key = $5 AND lease_token = $2::bigint "           \
  "AND state = 'leased' AND lease_until > sluice_now_ms()"

// As in SQLite (kUpsertJob there has the reasoning); excluded.pend_since is
// now, excluded.delay/max_delay the job's. Rows in key order: concurrent
// batches lock the rows they share in the same order. A user-keyed delta
// ($9 = 1, JobDelta::key_is_distinct_id) is keyed on its id's person, read
// from the users rows this pipeline wrote before it (the same rule as
// SQLite's kPersonOf); the ids of one person are summed into one row (an
// upsert may not touch a row twice).
constexpr char kUpsertJobs[] =
    "INSERT INTO jobs AS j (job, project, key, run, state, attempts, visible_at, pend_events, "
    "pend_first, pend_last, pend_since, pend_due, delay, max_delay) "
    "SELECT u.job, u.project, u.key, 1, 'pending', 0, n.ms + least(u.delay, u.maxd), u.events, "
    "u.first, u.last, n.ms, n.ms + least(u.delay, u.maxd), u.delay, u.maxd "
    "FROM (SELECT i.job, i.project, "
    "  CASE WHEN x.user_id IS NULL OR x.linked_to OR x.link_target IS NULL THEN i.key "
    "  ELSE x.link_target END AS key, sum(i.events)::bigint AS events, min(i.first) AS first, "
    "  max(i.last) AS last, max(i.delay) AS delay, max(i.maxd) AS maxd "
    "  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], "
    "  $7::bigint[], $8::bigint[], $9::bigint[]) "
    "    AS i(job, project, key, events, first, last, delay, maxd, person) "
    "  LEFT JOIN users x ON i.person <> 0 AND x.project = i.project AND x.user_id = i.key "
    "  GROUP BY 1, 2, 3) u, "
    "(SELECT sluice_now_ms() AS ms) n ORDER BY 1, 2, 3 "
    "ON CONFLICT (job, project, key) DO UPDATE SET "
    "delay = excluded.delay, max_delay = excluded.max_delay, "
    "run = j.run + CASE WHEN j.state = 'idle' THEN 1 ELSE 0 END, "
    "state = CASE WHEN j.state = 'idle' THEN 'pending' ELSE j.state END, "
    "visible_at = CASE WHEN j.state = 'leased' OR j.attempts > 0 THEN j.visible_at "
    "  ELSE least(excluded.pend_since + excluded.delay, CASE WHEN j.pend_events = 0 "
    "  THEN excluded.pend_since ELSE j.pend_since END + excluded.max_delay) END, "
    "pend_since = CASE WHEN j.pend_events = 0 THEN excluded.pend_since ELSE j.pend_since END, "
    "pend_due = least(excluded.pend_since + excluded.delay, CASE WHEN j.pend_events = 0 "
    "  THEN excluded.pend_since ELSE j.pend_since END + excluded.max_delay), "
    "pend_first = CASE WHEN j.pend_events = 0 THEN excluded.pend_first "
    "  ELSE least(j.pend_first, excluded.pend_first) END, "
    "pend_last = CASE WHEN j.pend_events = 0 THEN excluded.pend_last "
    "  ELSE greatest(j.pend_last, excluded.pend_last) END, "
    "pend_events = j.pend_events + excluded.pend_events";

// $1 = last_error (NULL after a success).
constexpr char kAdvanceJob[] =
    "UPDATE jobs SET "
    "state = CASE WHEN pend_events > 0 THEN 'pending' ELSE 'idle' END, "
    "run = run + CASE WHEN pend_events > 0 THEN 1 ELSE 0 END, "
    "visible_at = CASE WHEN pend_events > 0 THEN greatest(pend_due, sluice_now_ms()) ELSE 0 END, "
    "attempts = 0, lease_owner = NULL, lease_token = NULL, lease_until = NULL, "
    "reclaimed = false, last_error = $1, run_events = 0, run_first = 0, run_last = 0, "
    "runs_done = runs_done + 1, last_run = sluice_now_ms()" SLUICE_JOB_FENCED " RETURNING run";

PgParams RefParams(const char* first, int64_t token, const JobRef& ref) {
  PgParams p;
  if (first == nullptr) {
    p.AddNull();
  } else {
    p.Add(first);
  }
  p.Add(token).Add(ref.job).Add(ref.project).Add(ref.key);
  return p;
}

int64_t Limit(const JobFilter& f) { return f.limit > 0 ? f.limit : 100; }

// $1 job or '', $2 project or '', $3 key or '', $4 ids (empty array = any).
#define SLUICE_DEAD_RUNS                                                                \
  " ($1 = '' OR job = $1) AND ($2 = '' OR project = $2) AND ($3 = '' OR key = $3) "       \
  "AND (cardinality($4::bigint[]) = 0 OR id = ANY($4::bigint[])) "

PgParams DeadParams(const JobFilter& f) {
  PgParams p;
  p.Add(f.job).Add(f.project).Add(f.key).AddArray(std::span<const int64_t>(f.ids));
  return p;
}

}  // namespace

bool PostgresStore::PrepareJobs(std::span<const InStoreEffects> in_store, PgParams* out) {
  // One row per key (an upsert may not touch a row twice), in key order.
  using Key = std::tuple<std::string_view, std::string_view, std::string_view>;
  std::map<Key, JobDelta> merged;
  for (const InStoreEffects& part : in_store) {
    for (const JobDelta& d : part.effects.jobs) {
      auto [it, inserted] = merged.try_emplace(Key{d.job, d.project, d.key}, d);
      if (inserted) continue;
      JobDelta& m = it->second;
      m.events += d.events;
      m.first_event_ms = std::min(m.first_event_ms, d.first_event_ms);
      m.last_event_ms = std::max(m.last_event_ms, d.last_event_ms);
    }
  }
  if (merged.empty()) return false;
  std::vector<std::string_view> job, project, key;
  std::vector<int64_t> events, first, last, delay, max_delay, person;
  for (const auto& [k, d] : merged) {
    job.push_back(std::get<0>(k));
    project.push_back(std::get<1>(k));
    key.push_back(std::get<2>(k));
    events.push_back(d.events);
    first.push_back(d.first_event_ms);
    last.push_back(d.last_event_ms);
    delay.push_back(d.delay_ms);
    max_delay.push_back(d.max_delay_ms);
    person.push_back(d.key_is_distinct_id ? 1 : 0);
  }
  out->AddArray(std::span<const std::string_view>(job))
      .AddArray(std::span<const std::string_view>(project))
      .AddArray(std::span<const std::string_view>(key))
      .AddArray(std::span<const int64_t>(events))
      .AddArray(std::span<const int64_t>(first))
      .AddArray(std::span<const int64_t>(last))
      .AddArray(std::span<const int64_t>(delay))
      .AddArray(std::span<const int64_t>(max_delay))
      .AddArray(std::span<const int64_t>(person));
  return true;
}

const char* PostgresStore::UpsertJobsSql() { return kUpsertJobs; }

Result<RunLease> PostgresStore::ClaimJobRuns(const JobClaimRequest& req) {
  if (req.owner.empty() || req.jobs.empty() || req.max_runs <= 0 || req.lease_ttl_ms <= 0) {
    return Status::InvalidArgument("claim runs: owner, jobs, max_runs and lease_ttl_ms are required");
  }
  // As the queue's claim: SKIP LOCKED passes over rows another claim or a
  // fenced write holds; the token is an InitPlan, one per claim, none when
  // nothing is claimed. attempts = 0 marks a run's first claim: it takes the
  // pending events as its content (frozen from here on). The locking scan is
  // a MATERIALIZED CTE, run once, joined to jobs by primary key: as
  // "IN (subquery)" the planner may re-run it per row of jobs (the queue
  // claim's stall, see ClaimAtomic), which is quadratic and leases more than
  // max_runs. (The composite key has no single-column "= ANY (ARRAY(...))";
  // a materialized CTE is only read again, never re-run, whatever the join.)
  static constexpr char kClaim[] =
      "WITH picked AS MATERIALIZED (SELECT job AS p_job, project AS p_project, key AS p_key "
      "FROM jobs WHERE state <> 'idle' AND visible_at <= sluice_now_ms() "
      "AND job = ANY($4::text[]) ORDER BY visible_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
      "UPDATE jobs SET state = 'leased', lease_owner = $1, "
      "lease_token = (SELECT sluice_next_token()), "
      "lease_until = sluice_now_ms() + $3::bigint, visible_at = sluice_now_ms() + $3::bigint, "
      "reclaimed = (state = 'leased'), "
      "run_events = CASE WHEN attempts = 0 THEN pend_events ELSE run_events END, "
      "run_first = CASE WHEN attempts = 0 THEN pend_first ELSE run_first END, "
      "run_last = CASE WHEN attempts = 0 THEN pend_last ELSE run_last END, "
      "pend_events = CASE WHEN attempts = 0 THEN 0 ELSE pend_events END, "
      "attempts = attempts + 1 "
      "FROM picked WHERE job = p_job AND project = p_project AND key = p_key "
      "RETURNING job, project, key, run, run_events, run_first, run_last, attempts, reclaimed, "
      "lease_token, lease_until";
  PgParams params;
  params.Add(req.owner).Add(int64_t{req.max_runs}).Add(req.lease_ttl_ms);
  params.AddArray(std::span<const std::string>(req.jobs));
  RunLease lease;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, ExecTxn(c, kClaim, params, nullptr, Flush::kWait));
        lease = RunLease{};
        for (int i = 0; i < r.rows(); ++i) {
          ClaimedRun run;
          run.ref = JobRef{r.Str(i, 0), r.Str(i, 1), r.Str(i, 2)};
          run.run = r.Int(i, 3);
          run.events = r.Int(i, 4);
          run.first_event_ms = r.Int(i, 5);
          run.last_event_ms = r.Int(i, 6);
          run.attempts = static_cast<int32_t>(r.Int(i, 7));
          run.reclaimed = r.Bool(i, 8);
          lease.runs.push_back(std::move(run));
        }
        if (r.rows() > 0) {
          lease.token = r.Int(0, 9);
          lease.lease_until_ms = r.Int(0, 10);
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return lease;
}

Result<int64_t> PostgresStore::ExtendJobRuns(int64_t token, int64_t lease_ttl_ms) {
  static constexpr char kExtend[] =
      "WITH u AS (UPDATE jobs SET lease_until = sluice_now_ms() + $1::bigint, "
      "visible_at = sluice_now_ms() + $1::bigint "
      "WHERE lease_token = $2::bigint AND state = 'leased' AND lease_until > sluice_now_ms() "
      "RETURNING lease_until) SELECT count(*), coalesce(max(lease_until), 0) FROM u";
  return ExtendLease(kExtend, "extend runs", token, lease_ttl_ms);
}

Status PostgresStore::CompleteJobRun(int64_t token, const JobRef& ref) {
  const PgParams params = RefParams(nullptr, token, ref);
  return Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r,
                                ExecTxn(c, kAdvanceJob, params, nullptr, Flush::kNoWait));
        if (r.rows() == 0) {
          return Status::LeaseLost(fmt::format("complete run: token {} does not hold {}/{}/{}",
                                               token, ref.job, ref.project, ref.key));
        }
        return Status::Ok();
      },
      // Not re-run when the connection fails: the first attempt may have
      // committed. The runner leaves such a run; if it did not commit, its
      // lease expires and it is run again (same number, same key).
      /*idempotent=*/false);
}

Result<FailResult> PostgresStore::FailJobRun(int64_t token, const JobRef& ref,
                                             const std::string& error,
                                             const BackoffPolicy& backoff) {
  static constexpr char kRetry[] =
      "UPDATE jobs SET state = 'pending', visible_at = sluice_now_ms() + $6::bigint, "
      "last_error = $1, lease_owner = NULL, lease_token = NULL, lease_until = NULL"
      SLUICE_JOB_FENCED;
  static constexpr char kBury[] =
      "INSERT INTO job_dead(job, project, key, run, events, first_event, last_event, attempts, "
      "last_error, died_at) SELECT job, project, key, run, run_events, run_first, run_last, "
      "attempts, $1, sluice_now_ms() FROM jobs" SLUICE_JOB_FENCED;
  FailResult result;
  Status st = Txn([&](PgConn& c) -> Status {
    result = FailResult{};
    PgParams held_params;
    held_params.Add(int64_t{0}).Add(token).Add(ref.job).Add(ref.project).Add(ref.key);
    // (The fence numbers its parameters from $2; $1 is selected only so
    // that its type is known.)
    static constexpr char kHeld[] =
        "SELECT attempts, $1::bigint FROM jobs" SLUICE_JOB_FENCED " FOR UPDATE";
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kHeld, held_params));
    if (r.rows() == 0) {
      return Status::LeaseLost(fmt::format("fail run: token {} does not hold {}/{}/{}", token,
                                           ref.job, ref.project, ref.key));
    }
    const FailStep step = PlanFail(backoff, r.Int(0, 0), BackoffJitter());
    if (!step.dead) {
      PgParams p = RefParams(error.c_str(), token, ref);
      p.Add(step.delay_ms);
      SLUICE_RETURN_IF_ERROR(c.Exec(kRetry, p).status());
      result.retried = 1;
      return Status::Ok();
    }
    const PgParams p = RefParams(error.c_str(), token, ref);
    SLUICE_RETURN_IF_ERROR(c.Exec(kBury, p).status());
    SLUICE_RETURN_IF_ERROR(c.Exec(kAdvanceJob, p).status());
    result.dead = 1;
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return result;
}

Result<std::vector<JobRow>> PostgresStore::ListJobs(const JobFilter& f) {
  static constexpr char kList[] =
      "SELECT job, project, key, state, run, attempts, visible_at, coalesce(lease_owner, ''), "
      "run_events, pend_events, pend_since, pend_due, runs_done, last_run, "
      "coalesce(last_error, '') FROM jobs "
      "WHERE ($1 = '' OR job = $1) AND ($2 = '' OR project = $2) AND ($3 = '' OR key = $3) "
      "ORDER BY job COLLATE \"C\", project COLLATE \"C\", key COLLATE \"C\" LIMIT $4";
  PgParams params;
  params.Add(f.job).Add(f.project).Add(f.key).Add(Limit(f));
  std::vector<JobRow> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kList, params));
        out.clear();
        for (int i = 0; i < r.rows(); ++i) {
          JobRow j;
          j.ref = JobRef{r.Str(i, 0), r.Str(i, 1), r.Str(i, 2)};
          j.state = r.Str(i, 3);
          j.run = r.Int(i, 4);
          j.attempts = static_cast<int32_t>(r.Int(i, 5));
          j.visible_at_ms = j.state == "idle" ? 0 : r.Int(i, 6);
          j.lease_owner = r.Str(i, 7);
          j.run_events = r.Int(i, 8);
          j.pending_events = r.Int(i, 9);
          j.pending_since_ms = j.pending_events > 0 ? r.Int(i, 10) : 0;
          j.pending_due_ms = j.pending_events > 0 ? r.Int(i, 11) : 0;
          j.runs_done = r.Int(i, 12);
          j.last_run_ms = r.Int(i, 13);
          j.last_error = r.Str(i, 14);
          out.push_back(std::move(j));
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<JobStats>> PostgresStore::JobStatsByName() {
  static constexpr char kStats[] =
      "WITH n AS (SELECT sluice_now_ms() AS ms), "
      "s AS (SELECT job, count(*) AS keys, "
      "count(*) FILTER (WHERE state = 'pending' AND visible_at > n.ms) AS waiting, "
      "count(*) FILTER (WHERE state <> 'idle' AND visible_at <= n.ms) AS due, "
      "count(*) FILTER (WHERE state = 'leased' AND visible_at > n.ms) AS leased, "
      "coalesce(n.ms - min(visible_at) FILTER (WHERE state <> 'idle' AND visible_at <= n.ms), 0) "
      "AS lag, sum(runs_done) AS runs FROM jobs, n GROUP BY job, n.ms), "
      "d AS (SELECT job, count(*) AS dead FROM job_dead GROUP BY job) "
      "SELECT coalesce(s.job, d.job), coalesce(keys, 0), coalesce(waiting, 0), coalesce(due, 0), "
      "coalesce(leased, 0), coalesce(lag, 0), coalesce(runs, 0), coalesce(dead, 0) "
      "FROM s FULL JOIN d ON s.job = d.job ORDER BY coalesce(s.job, d.job) COLLATE \"C\"";
  std::vector<JobStats> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kStats));
        out.clear();
        for (int i = 0; i < r.rows(); ++i) {
          JobStats j;
          j.job = r.Str(i, 0);
          j.keys = r.Int(i, 1);
          j.waiting = r.Int(i, 2);
          j.due = r.Int(i, 3);
          j.leased = r.Int(i, 4);
          j.oldest_due_ms = r.Int(i, 5);
          j.runs_done = r.Int(i, 6);
          j.dead = r.Int(i, 7);
          out.push_back(std::move(j));
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

Result<std::vector<DeadRun>> PostgresStore::ListDeadRuns(const JobFilter& f) {
  static constexpr char kList[] =
      "SELECT id, job, project, key, run, events, first_event, last_event, attempts, last_error, "
      "died_at FROM job_dead WHERE" SLUICE_DEAD_RUNS "ORDER BY id LIMIT $5";
  PgParams params = DeadParams(f);
  params.Add(Limit(f));
  std::vector<DeadRun> out;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kList, params));
        out.clear();
        for (int i = 0; i < r.rows(); ++i) {
          DeadRun d;
          d.id = r.Int(i, 0);
          d.ref = JobRef{r.Str(i, 1), r.Str(i, 2), r.Str(i, 3)};
          d.run = r.Int(i, 4);
          d.events = r.Int(i, 5);
          d.first_event_ms = r.Int(i, 6);
          d.last_event_ms = r.Int(i, 7);
          d.attempts = static_cast<int32_t>(r.Int(i, 8));
          d.last_error = r.Str(i, 9);
          d.died_at_ms = r.Int(i, 10);
          out.push_back(std::move(d));
        }
        return Status::Ok();
      },
      /*idempotent=*/true);
  if (!st.ok()) return st;
  return out;
}

Result<int64_t> PostgresStore::RequeueDeadRuns(const JobFilter& f) {
  static constexpr char kTake[] =
      "DELETE FROM job_dead WHERE" SLUICE_DEAD_RUNS
      "RETURNING job, project, key, events, first_event, last_event";
  const PgParams params = DeadParams(f);
  int64_t n = 0;
  Status st = Txn([&](PgConn& c) -> Status {
    SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kTake, params));
    n = r.rows();
    if (n == 0) return Status::Ok();
    // Due now: delay and max_delay 0.
    InStoreEffects part;
    for (int i = 0; i < r.rows(); ++i) {
      part.effects.jobs.push_back(JobDelta{r.Str(i, 0), r.Str(i, 1), r.Str(i, 2),
                                           std::max<int64_t>(1, r.Int(i, 3)), r.Int(i, 4),
                                           r.Int(i, 5), 0, 0});
    }
    PgParams upsert;
    PrepareJobs(std::span<const InStoreEffects>(&part, 1), &upsert);
    return c.Exec(kUpsertJobs, upsert).status();
  });
  if (!st.ok()) return st;
  return n;
}

Result<int64_t> PostgresStore::PurgeDeadRuns(const JobFilter& f) {
  static constexpr char kPurge[] = "DELETE FROM job_dead WHERE" SLUICE_DEAD_RUNS "RETURNING id";
  const PgParams params = DeadParams(f);
  int64_t n = 0;
  Status st = Single(
      [&](PgConn& c) -> Status {
        SLUICE_ASSIGN_OR_RETURN(PgResult r, c.Exec(kPurge, params));
        n = r.rows();
        return Status::Ok();
      },
      /*idempotent=*/false);
  if (!st.ok()) return st;
  return n;
}

}  // namespace sluice
