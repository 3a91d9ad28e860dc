// SqliteStore: the embedded Store on one SQLite file (WAL).
//
// Several processes on one file are several replicas: every write runs in a
// BEGIN IMMEDIATE transaction (the file's single writer lock), lock waits
// retry within busy_timeout_ms and then fail with kUnavailable. Within one
// process, writers also queue on a mutex so they do not spin on the file lock.
// SQL and rationale: docs/claim-protocol-sqlite.md.
//
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "queue/lease_logic.h"
#include "queue/sqlite/sqlite_db.h"
#include "queue/store.h"

namespace sluice {

class SqliteStore final : public Store {
 public:
  // `path` is the database file; its parent directory is created if missing.
  // Lock waits and their retries run on `clock` (lease times never do: they
  // are the database's). REQUIRES: clock outlives the store.
  static Result<StorePtr> Open(const StoreOptions& options, const std::string& path,
                               Clock* clock = &Clock::Real());

  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) override;
  Result<Lease> Claim(const ClaimRequest& req) override;
  Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) override;
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override;
  Result<CompleteResult> Complete(const CompleteRequest& req) override;
  Result<FailResult> Fail(const FailRequest& req) override;
  Result<std::vector<DeadEvent>> ListDead(const DeadFilter& filter) override;
  Result<int64_t> RequeueDead(const DeadFilter& filter) override;
  Result<int64_t> PurgeDead(const DeadFilter& filter) override;
  Result<int64_t> AcquireNamedLease(const std::string& name, const std::string& owner,
                                    int64_t ttl_ms) override;
  Status ReleaseNamedLease(const std::string& name, int64_t token) override;
  Result<DedupMaintenance> MaintainDedup(int64_t named_lease_token) override;
  Status RegisterReplica(const ReplicaInfo& info) override;
  Status HeartbeatReplica(const std::string& id) override;
  Status RemoveReplica(const std::string& id) override;
  Result<std::vector<ReplicaInfo>> ListReplicas(int64_t alive_within_ms) override;
  Result<QueueStats> Stats() override;
  Result<int64_t> PollDepth(int64_t exact_above, int64_t limit) override;
  Result<int64_t> NowMs() override;
  Result<UserProfile> GetUser(const std::string& project, const std::string& user_id) override;
  Result<std::vector<CounterPoint>> QueryCounters(const CounterQuery& q) override;
  const char* kind() const override { return "sqlite"; }
  Status PublishReplicaStats(const std::string& id, const std::string& stats_json) override;
  Result<BacklogScan> ScanBacklog(const BacklogScanRequest& req) override;
  Result<RunLease> ClaimJobRuns(const JobClaimRequest& req) override;
  Result<int64_t> ExtendJobRuns(int64_t token, int64_t lease_ttl_ms) override;
  Status CompleteJobRun(int64_t token, const JobRef& ref) override;
  Result<FailResult> FailJobRun(int64_t token, const JobRef& ref, const std::string& error,
                                const BackoffPolicy& backoff) override;
  Result<std::vector<JobRow>> ListJobs(const JobFilter& filter) override;
  Result<std::vector<JobStats>> JobStatsByName() override;
  Result<std::vector<DeadRun>> ListDeadRuns(const JobFilter& filter) override;
  Result<int64_t> RequeueDeadRuns(const JobFilter& filter) override;
  Result<int64_t> PurgeDeadRuns(const JobFilter& filter) override;

 private:
  // The dedup bucket registry, ascending id, read inside the caller's transaction.
  static Result<std::vector<DedupBucket>> ReadDedupBuckets(SqliteConn& c);
  SqliteStore(const StoreOptions& options, Clock* clock, std::unique_ptr<SqliteConn> writer,
              std::unique_ptr<SqlitePool> pool, std::unique_ptr<SqliteCheckpointer> checkpointer);

  // Runs fn(conn, now) inside BEGIN IMMEDIATE ... COMMIT; rolls back when fn
  // fails. `now` is the store clock read once at the start of the
  // transaction (the write lock is held, so it orders with every other write).
  // fn must assign its outputs from scratch. fn is store code only (it may
  // not throw): nothing of a caller's runs inside a transaction.
  //
  // kDurable (ingest, admin) commits wait for the WAL fsync when sync is on.
  // kLease (claim, extend, mark, complete, fail) do not: every holder of a
  // lease runs on this host, so an OS crash that loses such a commit also
  // kills every process that saw it, and what is lost is a suffix of the
  // WAL: the rows go back to their earlier state and are claimed again
  // (effects and done bits commit together, so nothing is applied twice).
  // docs/claim-protocol-sqlite.md, "Durability".
  enum class Durability { kDurable, kLease };
  using WriteFn = std::function<Status(SqliteConn& c, int64_t now)>;
  Status Write(const WriteFn& fn, Durability durability = Durability::kDurable);
  // Runs fn(conn, now) inside a read transaction (one consistent snapshot).
  Status Read(const WriteFn& fn);

  Result<Lease> ClaimAtomic(const ClaimRequest& req);
  // Every row `token` holds now (seq, done_mask), ascending seq, inside a
  // write transaction.
  Status ReadHeldLocked(SqliteConn& c, int64_t now, int64_t token, std::vector<HeldRow>* held);
  // The shared body of MarkDone and Complete (`all_bits` set: Complete),
  // inside a write transaction: reads the held rows, plans the write
  // (lease_logic.h) and, when the plan is kApply, applies the effects and
  // writes the new masks. Rows to delete are left to the caller. kLeaseLost
  // when none of `events` is held. lease_rows: rows the token holds in all.
  Result<MarkPlan> MarkLocked(SqliteConn& c, int64_t now, int64_t token,
                              std::span<const ClaimedEvent> events, uint64_t external_bits,
                              const std::vector<InStoreEffects>& in_store,
                              std::optional<uint64_t> all_bits, int64_t* lease_rows);
  // Calls fn with the seqs of each page of dead rows matching `filter`
  // (ascending seq, 1,000 rows read at a time), inside a write transaction.
  // fn may write them.
  Status ForEachDeadPageLocked(SqliteConn& c, const DeadFilter& filter,
                               const std::function<Status(std::span<const int64_t>)>& fn);
  // Applies `effects` inside a write transaction; `now` is its store clock
  // (job schedules are computed on it).
  Status ApplyEffectsLocked(SqliteConn& c, const Effects& effects);  // all but effects.jobs
  // Upserts each delta's (job, project, key) row (sqlite_store_jobs.cc).
  Status ApplyJobDeltasLocked(SqliteConn& c, int64_t now, const std::vector<JobDelta>& jobs);

  // Constant after construction.
  const StoreOptions options_;
  Clock* const clock_;
  // Every write transaction of this process runs on writer_ (under
  // write_mu_): one connection keeps its page cache warm from one transaction
  // to the next, where alternating pool connections would each find their
  // cache invalidated by the other's commit and re-read every page. Reads
  // use the pool.
  const std::unique_ptr<SqliteConn> writer_;  // GUARDED_BY(write_mu_) when used
  const std::unique_ptr<SqlitePool> pool_;
  // Declared after pool_: destroyed first, while the connections it watches
  // still exist.
  const std::unique_ptr<SqliteCheckpointer> checkpointer_;

  // Serializes this process's write transactions on writer_ (the file lock
  // serializes them across processes anyway; queuing here avoids busy-wait
  // sleeps).
  std::mutex write_mu_;
};

}  // namespace sluice
