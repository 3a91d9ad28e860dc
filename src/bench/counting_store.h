// CountingStore: a StoreWrapper that counts what
// the benchmarks need (claims, claimed events, deletions, fenced refusals,
// claim/complete latency). Thread-safe, like the store it wraps.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "queue/store_wrapper.h"

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

class CountingStore final : public StoreWrapper {
 public:
  // REQUIRES: counters outlives this store.
  CountingStore(StorePtr inner, StoreCounters* counters)
      : StoreWrapper(std::move(inner)), c_(counters) {}

  Result<Lease> Claim(const ClaimRequest& req) override;
  Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) override {
    return Count(inner()->Extend(token, lease_ttl_ms));
  }
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override {
    return Count(inner()->MarkDone(req));
  }
  Result<CompleteResult> Complete(const CompleteRequest& req) override;
  Result<FailResult> Fail(const FailRequest& req) override { return Count(inner()->Fail(req)); }

 private:
  template <typename T>
  Result<T> Count(Result<T> r) {
    if (!r.ok() && r.status().code() == Code::kLeaseLost) c_->lease_lost.fetch_add(1);
    return r;
  }

  StoreCounters* const c_;
};

}  // namespace sluice
