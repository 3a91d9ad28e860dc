// Deliberately broken and fault-injecting stores, for tests only.
//
// Each wraps a real store (StoreWrapper) and changes a few calls, so a test
// can show that its checker fails when the guarantee it checks is broken:
//  - NaiveClaimStore: Claim in two steps, select then update in separate
//    transactions (DESIGN §1, the bug sluice exists to prevent);
//  - UnfencedStore: Extend/MarkDone/Complete/Fail ignore the fencing token
//    (any live row counts as held, whoever holds it), and so do
//    CompleteJobRun/FailJobRun (any claimed job run counts as held);
//  - IngestFaultStore: the first N enqueued requests fail (before or after
//    their commit), as SDK retry tests need.
// None of this is linked into the shipped binary; the test binary
// sluice-testkit selects them with test-only config keys (testkit.h).
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "queue/store_wrapper.h"

namespace sluice {

class SqliteConn;
class PgConn;

// Raw SQL access to the same database as a store, for the broken variants.
class RawSql {
 public:
  static Result<std::unique_ptr<RawSql>> Open(const StoreOptions& options);
  ~RawSql();

  // The naive claim: candidates in one statement, then leased by seq in
  // another transaction without re-checking their state.
  Result<Lease> NaiveClaim(const ClaimRequest& req);
  // Makes `token` the holder of every live row of `events` with an unexpired
  // lease, whoever held them: the next fenced write under `token` then passes.
  Status Reown(int64_t token, std::span<const ClaimedEvent> events);
  Status Reown(int64_t token, std::span<const int64_t> seqs);
  // Extend without the expiry check: rows whose lease expired come back.
  Result<int64_t> ExtendUnfenced(int64_t token, int64_t lease_ttl_ms);
  // Makes `token` the holder of the job row `ref` when it is leased or
  // waiting for a retry, whoever held it, with a fresh lease.
  Status ReownJob(int64_t token, const JobRef& ref);

 private:
  RawSql() = default;
  std::mutex mu_;
  std::unique_ptr<SqliteConn> sqlite_;  // GUARDED_BY(mu_) one of the two is set
  std::unique_ptr<PgConn> pg_;          // GUARDED_BY(mu_)
};

class NaiveClaimStore final : public StoreWrapper {
 public:
  NaiveClaimStore(StorePtr inner, std::unique_ptr<RawSql> sql)
      : StoreWrapper(std::move(inner)), sql_(std::move(sql)) {}
  Result<Lease> Claim(const ClaimRequest& req) override { return sql_->NaiveClaim(req); }

 private:
  const std::unique_ptr<RawSql> sql_;
};

class UnfencedStore final : public StoreWrapper {
 public:
  UnfencedStore(StorePtr inner, std::unique_ptr<RawSql> sql)
      : StoreWrapper(std::move(inner)), sql_(std::move(sql)) {}
  Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) override;
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override;
  Result<CompleteResult> Complete(const CompleteRequest& req) override;
  Result<FailResult> Fail(const FailRequest& req) override;
  Status CompleteJobRun(int64_t token, const JobRef& ref) override;
  Result<FailResult> FailJobRun(int64_t token, const JobRef& ref, const std::string& error,
                                const BackoffPolicy& backoff) override;

 private:
  const std::unique_ptr<RawSql> sql_;
};

struct IngestFaultOptions {
  int32_t fail_first_requests = 0;  // the first N enqueued requests fail (503)
  // true: those requests are committed first, then reported failed (an
  // acknowledgement lost after commit: the client's retry must be deduplicated).
  bool fail_after_commit = false;
};

class IngestFaultStore final : public StoreWrapper {
 public:
  IngestFaultStore(StorePtr inner, IngestFaultOptions options)
      : StoreWrapper(std::move(inner)), options_(options) {}
  // Borrows `inner`. REQUIRES: inner outlives this store.
  IngestFaultStore(Store* inner, IngestFaultOptions options)
      : StoreWrapper(inner), options_(options) {}
  // A group commit holds one batch per request: the group fails while any of
  // its requests is among the first N (so a group can fail more than N).
  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) override;

 private:
  const IngestFaultOptions options_;
  std::atomic<int64_t> requests_{0};
};

}  // namespace sluice
