// CountingStore: a Store that forwards every call to another and counts what
// the benchmarks need (claims, claimed events, deletions, fenced refusals,
// claim/complete latency). Thread-safe, like the store it wraps.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "queue/store.h"

namespace sluice {

// Shared by every replica of one benchmark run.
struct StoreCounters {
  std::atomic<int64_t> claims{0};          // non-empty claims
  std::atomic<int64_t> claimed_events{0};  // events over all non-empty claims
  std::atomic<int64_t> deleted{0};         // events deleted by Complete
  std::atomic<int64_t> lease_lost{0};      // calls answered kLeaseLost
  std::atomic<int64_t> last_delete_us{0};  // NowMicros() of the latest deleting Complete

  std::mutex mu;
  std::vector<int64_t> claim_us;     // GUARDED_BY(mu)
  std::vector<int64_t> complete_us;  // GUARDED_BY(mu)
};

class CountingStore final : public Store {
 public:
  // REQUIRES: counters outlives this store.
  CountingStore(StorePtr inner, StoreCounters* counters) : inner_(std::move(inner)), c_(counters) {}

  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) override {
    return inner_->Enqueue(batches);
  }
  Result<Lease> Claim(const ClaimRequest& req) override;
  Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) override {
    return Count(inner_->Extend(token, lease_ttl_ms));
  }
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override {
    return Count(inner_->MarkDone(req));
  }
  Result<CompleteResult> Complete(const CompleteRequest& req) override;
  Result<FailResult> Fail(const FailRequest& req) override { return Count(inner_->Fail(req)); }
  Result<std::vector<DeadEvent>> ListDead(const DeadFilter& f) override {
    return inner_->ListDead(f);
  }
  Result<int64_t> RequeueDead(const DeadFilter& f) override { return inner_->RequeueDead(f); }
  Result<int64_t> PurgeDead(const DeadFilter& f) override { return inner_->PurgeDead(f); }
  Result<int64_t> AcquireNamedLease(const std::string& name, const std::string& owner,
                                    int64_t ttl_ms) override {
    return inner_->AcquireNamedLease(name, owner, ttl_ms);
  }
  Status ReleaseNamedLease(const std::string& name, int64_t token) override {
    return inner_->ReleaseNamedLease(name, token);
  }
  Result<int64_t> PruneDedup(int64_t token, int64_t limit) override {
    return inner_->PruneDedup(token, limit);
  }
  Status RegisterReplica(const ReplicaInfo& info) override { return inner_->RegisterReplica(info); }
  Status HeartbeatReplica(const std::string& id) override { return inner_->HeartbeatReplica(id); }
  Status RemoveReplica(const std::string& id) override { return inner_->RemoveReplica(id); }
  Result<std::vector<ReplicaInfo>> ListReplicas(int64_t alive_within_ms) override {
    return inner_->ListReplicas(alive_within_ms);
  }
  Result<QueueStats> Stats() override { return inner_->Stats(); }
  Result<int64_t> NowMs() override { return inner_->NowMs(); }
  Result<UserProfile> GetUser(const std::string& project, const std::string& user_id) override {
    return inner_->GetUser(project, user_id);
  }
  Result<std::vector<CounterPoint>> QueryCounters(const CounterQuery& q) override {
    return inner_->QueryCounters(q);
  }
  const char* kind() const override { return inner_->kind(); }
  void SetWakeCallback(std::function<void()> cb) override {
    inner_->SetWakeCallback(std::move(cb));
  }

 private:
  template <typename T>
  Result<T> Count(Result<T> r) {
    if (!r.ok() && r.status().code() == Code::kLeaseLost) c_->lease_lost.fetch_add(1);
    return r;
  }

  const StorePtr inner_;
  StoreCounters* const c_;
};

}  // namespace sluice
