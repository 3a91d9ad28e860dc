#include "bench/counting_store.h"

#include "bench/bench_util.h"

namespace sluice {

Result<Lease> CountingStore::Claim(const ClaimRequest& req) {
  const int64_t t0 = NowMicros();
  Result<Lease> r = inner()->Claim(req);
  const int64_t us = NowMicros() - t0;
  // Only non-empty claims are timed: idle polls of an empty queue say nothing
  // about the claim under load.
  if (r.ok() && !r->events.empty()) {
    c_->claims.fetch_add(1);
    c_->claimed_events.fetch_add(static_cast<int64_t>(r->events.size()));
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->claim_us.push_back(us);
  }
  return r;
}

Result<CompleteResult> CountingStore::Complete(const CompleteRequest& req) {
  const int64_t t0 = NowMicros();
  Result<CompleteResult> r = Count(inner()->Complete(req));
  const int64_t t1 = NowMicros();
  if (r.ok()) {
    if (!r->deleted.empty()) {
      c_->deleted.fetch_add(static_cast<int64_t>(r->deleted.size()));
      int64_t prev = c_->last_delete_us.load();
      while (prev < t1 && !c_->last_delete_us.compare_exchange_weak(prev, t1)) {
      }
    }
    std::lock_guard<std::mutex> lock(c_->mu);
    c_->complete_us.push_back(t1 - t0);
  }
  return r;
}

}  // namespace sluice
