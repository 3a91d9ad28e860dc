// PostgresStore: the Store on one PostgreSQL database, for replicas on many
// hosts. Same semantics as SqliteStore (the conformance suite runs on both);
// the claim is one UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP
// LOCKED), times come from the server clock, tokens from a sequence.
// SQL and operations: docs/architecture.md ("PostgreSQL"), docs/operations.md.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "queue/lease_logic.h"
#include "queue/postgres/pg_conn.h"
#include "queue/postgres/pg_listener.h"
#include "queue/store.h"

namespace sluice {

class PostgresStore final : public Store {
 public:
  // Connects, migrates (under an advisory lock) and returns the store. Pool
  // waits, reconnect backoff and the low-water-mark interval run on `clock`.
  // REQUIRES: clock outlives the store.
  static Result<StorePtr> Open(const StoreOptions& options, Clock* clock = &Clock::Real());
  ~PostgresStore() override;

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
  const char* kind() const override { return "postgres"; }
  Status PublishReplicaStats(const std::string& id, const std::string& stats_json) override;
  Result<BacklogScan> ScanBacklog(const BacklogScanRequest& req) override;
  void SetWakeCallback(std::function<void()> cb) override;
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
  PostgresStore(const StoreOptions& options, Clock* clock);

  using TxnFn = std::function<Status(PgConn&)>;
  // Runs fn inside BEGIN ... COMMIT on a pooled connection; rolls back when
  // fn fails. fn is store code only (it may not throw): nothing of a caller's
  // runs inside a transaction. fn must assign its outputs from scratch: it is re-run after a
  // deadlock/serialization failure, and on a fresh connection when a pooled
  // one turns out dead (server restart) before COMMIT was sent. A failure of
  // COMMIT itself is never retried (the outcome is unknown): kUnavailable.
  Status Txn(const TxnFn& fn);
  // Runs fn (one statement, autocommit) on a pooled connection. Re-run on a
  // fresh connection only when `idempotent`: a statement that failed with the
  // connection may have committed.
  Status Single(const TxnFn& fn, bool idempotent);
  // Runs a lease-extending statement (params: $1 ttl ms, $2 token; one row:
  // rows extended, new deadline in epoch ms) for Extend and ExtendJobRuns:
  // the new deadline, or kLeaseLost naming `what` when the token holds none.
  Result<int64_t> ExtendLease(const char* sql, const char* what, int64_t token,
                              int64_t lease_ttl_ms);
  // Like Txn, but fn sends BEGIN and COMMIT itself, in the pipelines of its
  // first and last statements (so they cost no round trip of their own), and
  // sets *commit_sent just before it sends COMMIT.
  using PipelinedFn = std::function<Status(PgConn&, bool* commit_sent)>;
  Status TxnPipelined(const PipelinedFn& fn);
  // Runs `sql` as its own transaction, in one round trip. With
  // Flush::kNoWait the commit does not wait for the WAL flush (when
  // options_.sync; docs: "Commit durability"). `set_local`, when given, is a
  // "SET LOCAL ..." statement run first.
  enum class Flush { kWait, kNoWait };
  Result<PgResult> ExecTxn(PgConn& c, const char* sql, const PgParams& params,
                           const char* set_local, Flush flush) const;
  // The statements that open a transaction about claimed rows: BEGIN, and
  // SET LOCAL synchronous_commit = off when options_.sync.
  std::vector<PgStatement> BeginNoFlush() const;
  // Raises the claim's low-water mark (sluice_refresh_head) when this store
  // has not tried for kHeadRefreshMs; called after a Complete.
  void MaybeRefreshHead();

  Result<Lease> ClaimAtomic(const ClaimRequest& req);
  // Reads the dedup bucket registry into dedup_live_ (ascending id).
  Status RefreshDedupBuckets();
  // One try of the enqueue statement against `live` (this store's view of
  // the registry). *stale: the registry changed since (the statement stored
  // nothing); refresh and try again.
  Status EnqueueOnce(std::span<const DedupBucket> live, const PgParams& params,
                     std::vector<int64_t>* accepted, bool* stale);
  // The shared body of MarkDone and Complete (`all_bits` set: Complete):
  // opens the transaction (BeginNoFlush) and locks the rows still held under
  // token in one round trip, and plans the write (lease_logic.h); kLeaseLost
  // when none of `events` is held. The caller writes the rows and commits
  // with ApplyEffects when the plan is kApply.
  Result<MarkPlan> MarkLocked(PgConn& c, int64_t token, std::span<const ClaimedEvent> events,
                              uint64_t external_bits, const std::vector<InStoreEffects>& in_store,
                              std::optional<uint64_t> all_bits);
  // Runs `before` (the caller's row writes), then every in-store effect with
  // set-based SQL (users, then counters, then jobs), then COMMIT, in one round trip (two
  // when user properties must be merged: the merge needs the stored ones).
  // Sets *commit_sent.
  // Fills the parameters of UpsertJobsSql() from every in-store consumer's
  // job deltas, merged per key; false when there are none (pg_store_jobs.cc).
  static bool PrepareJobs(std::span<const InStoreEffects> in_store, PgParams* out);
  static const char* UpsertJobsSql();
  static Status ApplyEffects(PgConn& c, std::span<const InStoreEffects> in_store,
                             std::span<const PgStatement> before, bool* commit_sent);

  // Constant after construction.
  const StoreOptions options_;
  Clock* const clock_;
  const PgSessionOptions session_;
  std::unique_ptr<PgPool> pool_;
  std::unique_ptr<PgListener> listener_;

  // This store's view of the dedup bucket registry; refreshed when an
  // enqueue finds it stale.
  std::mutex dedup_mu_;
  std::vector<DedupBucket> dedup_live_;  // GUARDED_BY(dedup_mu_)

  // clock_->MonoMs() of this store's last sluice_refresh_head attempt.
  std::atomic<int64_t> last_head_refresh_ms_{0};
};

}  // namespace sluice
