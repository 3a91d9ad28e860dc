// StoreWrapper: a Store that forwards every call to another one. Derive from
// it to observe or perturb a few calls (the benchmarks' counting store, the
// tests' fault-injecting stores) without restating the whole interface.
// Thread-safe when the wrapped store is and the overrides are.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "queue/store.h"

namespace sluice {

// Settings only the test binary sluice-testkit acts on, as (key, value): a
// deliberately broken claim, fencing off, ingest fault injection, the "test"
// consumer type. The shipped binary refuses any (app/app_hooks.h).
using TestOnlySettings = std::vector<std::pair<std::string, std::string>>;

// Wraps a store a binary has just opened and returns the store to use: the
// test binary's broken and fault-injecting variants (tests/testkit), chosen by
// `settings`. The shipped binary has none.
using StoreDecorator = std::function<Result<StorePtr>(
    StorePtr store, const StoreOptions& options, const TestOnlySettings& settings)>;

class StoreWrapper : public Store {
 public:
  // Owns `inner`.
  explicit StoreWrapper(StorePtr inner) : owned_(std::move(inner)), inner_(owned_.get()) {}
  // Borrows `inner`. REQUIRES: inner outlives this wrapper.
  explicit StoreWrapper(Store* inner) : inner_(inner) {}

  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) override {
    return inner_->Enqueue(batches);
  }
  Result<Lease> Claim(const ClaimRequest& req) override { return inner_->Claim(req); }
  Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) override {
    return inner_->Extend(token, lease_ttl_ms);
  }
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override {
    return inner_->MarkDone(req);
  }
  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    return inner_->Complete(req);
  }
  Result<FailResult> Fail(const FailRequest& req) override { return inner_->Fail(req); }
  Result<std::vector<DeadEvent>> ListDead(const DeadFilter& filter) override {
    return inner_->ListDead(filter);
  }
  Result<int64_t> RequeueDead(const DeadFilter& filter) override {
    return inner_->RequeueDead(filter);
  }
  Result<int64_t> PurgeDead(const DeadFilter& filter) override { return inner_->PurgeDead(filter); }
  Result<int64_t> AcquireNamedLease(const std::string& name, const std::string& owner,
                                    int64_t ttl_ms) override {
    return inner_->AcquireNamedLease(name, owner, ttl_ms);
  }
  Status ReleaseNamedLease(const std::string& name, int64_t token) override {
    return inner_->ReleaseNamedLease(name, token);
  }
  Result<DedupMaintenance> MaintainDedup(int64_t named_lease_token) override {
    return inner_->MaintainDedup(named_lease_token);
  }
  Status RegisterReplica(const ReplicaInfo& info) override { return inner_->RegisterReplica(info); }
  Status HeartbeatReplica(const std::string& id) override { return inner_->HeartbeatReplica(id); }
  Status RemoveReplica(const std::string& id) override { return inner_->RemoveReplica(id); }
  Result<std::vector<ReplicaInfo>> ListReplicas(int64_t alive_within_ms) override {
    return inner_->ListReplicas(alive_within_ms);
  }
  Result<QueueStats> Stats() override { return inner_->Stats(); }
  Result<int64_t> PollDepth(int64_t exact_above, int64_t limit) override {
    return inner_->PollDepth(exact_above, limit);
  }
  Result<int64_t> NowMs() override { return inner_->NowMs(); }
  Result<UserProfile> GetUser(const std::string& project, const std::string& user_id) override {
    return inner_->GetUser(project, user_id);
  }
  Result<std::vector<CounterPoint>> QueryCounters(const CounterQuery& q) override {
    return inner_->QueryCounters(q);
  }
  const char* kind() const override { return inner_->kind(); }
  Status PublishReplicaStats(const std::string& id, const std::string& stats_json) override {
    return inner_->PublishReplicaStats(id, stats_json);
  }
  Result<BacklogScan> ScanBacklog(const BacklogScanRequest& req) override {
    return inner_->ScanBacklog(req);
  }
  Result<RunLease> ClaimJobRuns(const JobClaimRequest& req) override {
    return inner_->ClaimJobRuns(req);
  }
  Result<int64_t> ExtendJobRuns(int64_t token, int64_t lease_ttl_ms) override {
    return inner_->ExtendJobRuns(token, lease_ttl_ms);
  }
  Status CompleteJobRun(int64_t token, const JobRef& ref) override {
    return inner_->CompleteJobRun(token, ref);
  }
  Result<FailResult> FailJobRun(int64_t token, const JobRef& ref, const std::string& error,
                                const BackoffPolicy& backoff) override {
    return inner_->FailJobRun(token, ref, error, backoff);
  }
  Result<std::vector<JobRow>> ListJobs(const JobFilter& filter) override {
    return inner_->ListJobs(filter);
  }
  Result<std::vector<JobStats>> JobStatsByName() override { return inner_->JobStatsByName(); }
  Result<std::vector<DeadRun>> ListDeadRuns(const JobFilter& filter) override {
    return inner_->ListDeadRuns(filter);
  }
  Result<int64_t> RequeueDeadRuns(const JobFilter& filter) override {
    return inner_->RequeueDeadRuns(filter);
  }
  Result<int64_t> PurgeDeadRuns(const JobFilter& filter) override {
    return inner_->PurgeDeadRuns(filter);
  }
  void SetWakeCallback(std::function<void()> cb) override {
    inner_->SetWakeCallback(std::move(cb));
  }

 protected:
  Store* inner() const { return inner_; }

 private:
  const StorePtr owned_;  // null when borrowed
  Store* const inner_;
};

}  // namespace sluice
