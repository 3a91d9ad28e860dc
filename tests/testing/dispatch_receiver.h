// DispatchReceiver: an independent count of what sluice dispatched. A webhook
// consumer (src/consumers/webhook, mode "per_batch", the batch template of
// ConsumerToml) posts here; the receiver records, for every event of every
// request it answered 200, its "project/insert_id" and when it arrived. A bug
// that dispatched twice and skipped sluice's own counters would still show
// here: the system tests and chaos rounds compare this count with
// sluice_deliveries_total, and the naive-claim control must show its
// duplicates here.
//
// ExplainRedeliveries then names the fault behind each repeated delivery: a
// second dispatch needs a lease that expired or failed, so some fault (a kill,
// a pause, a database restart or crash) must lie between the two deliveries.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::testing {

class HttpReceiver;

// Steady-clock milliseconds: the receiver's and the harnesses' common time.
int64_t SteadyNowMs();

class DispatchReceiver {
 public:
  DispatchReceiver();
  ~DispatchReceiver();
  DispatchReceiver(const DispatchReceiver&) = delete;
  DispatchReceiver& operator=(const DispatchReceiver&) = delete;

  std::string url() const;
  // A `[[consumer]]` table for a webhook consumer named `name` on done bit
  // `bit` that posts every batch here.
  std::string ConsumerToml(const std::string& name, int bit) const;

  struct Counts {
    int64_t requests = 0;     // POSTs answered 200
    int64_t deliveries = 0;   // events in them, repeats included
    int64_t distinct = 0;     // distinct project/insert_id
    int64_t duplicated = 0;   // distinct events received more than once
    int64_t repeats = 0;      // deliveries - distinct
    int64_t malformed = 0;    // bodies that were not {"events":[...]} (answered 400)
  };
  Counts counts() const;
  // "project/insert_id" -> arrival times (SteadyNowMs), in arrival order.
  std::map<std::string, std::vector<int64_t>> deliveries() const;
  // Up to `max` events received more than once, "key xN".
  std::vector<std::string> Duplicated(size_t max) const;

 private:
  std::unique_ptr<HttpReceiver> http_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<int64_t>> seen_;  // GUARDED_BY(mu_)
  int64_t requests_ = 0;                              // GUARDED_BY(mu_)
  int64_t deliveries_ = 0;                            // GUARDED_BY(mu_)
  int64_t malformed_ = 0;                             // GUARDED_BY(mu_)
};

// A fault as the harness injected it, on the SteadyNowMs clock.
struct FaultWindow {
  std::string cause;  // "kill -9", "pause", "pg immediate", ...
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // when it was over (the process resumed, the server was back)
};

struct RedeliveryExplanation {
  int64_t repeats = 0;      // deliveries after an event's first
  int64_t explained = 0;
  int64_t unexplained = 0;  // no fault between the two deliveries: must be 0
  std::map<std::string, int64_t> by_cause;
  std::vector<std::string> examples;  // a few unexplained ones
  std::string Summary() const;        // "12 (kill -9 8, pause 4), unexplained 0"
};

// A repeated delivery (previous at t1, this one at t2) is explained by a
// fault with start <= t2 and end + slack_ms >= t1: it began before the second
// delivery and was not over long before the first (slack: a lease that
// expired during the fault may be delivered by its old holder just after it
// ended, and taken over one lease later). Of the faults that fit, the latest
// to start is named as the cause. With faults every few seconds nearly any
// repeat fits one; the check has teeth where faults are sparse or absent.
RedeliveryExplanation ExplainRedeliveries(
    const std::map<std::string, std::vector<int64_t>>& deliveries,
    const std::vector<FaultWindow>& faults, int64_t slack_ms);

}  // namespace sluice::testing
