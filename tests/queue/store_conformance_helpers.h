// Helpers of the Store conformance suite (store_conformance_test.cc,
// store_conformance_stale_test.cc): events, claims, the in-store builders
// (as the users and counters consumers build their effects) and counter
// totals, all through the Store interface.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "common/event.h"
#include "queue/store.h"
#include "testing/in_store.h"
#include "testing/testing.h"

namespace sluice::conformance {

using std::chrono::milliseconds;
using testing::WaitUntil;

inline constexpr int64_t kT0 = 1'700'000'000'000;  // event times: 2023-11-14T22:13:20Z
inline constexpr milliseconds kWait{10'000};

inline std::string Body(const std::string& event, const std::string& user, int64_t time_ms,
                        const std::string& set = "", const std::string& set_once = "") {
  Event e;
  e.event = event;
  e.user_id = user;
  e.time_ms = time_ms;
  e.set = set;
  e.set_once = set_once;
  return ToBody(e);
}

inline std::vector<NewEvent> MakeEvents(int n, const std::string& prefix = "id",
                                        const std::string& project = "p") {
  std::vector<NewEvent> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({project, prefix + std::to_string(i),
                   Body("view", "u" + std::to_string(i % 3), kT0 + i * 1000)});
  }
  return out;
}

inline EnqueueResult EnqueueOne(Store& s, const std::vector<NewEvent>& events) {
  EnqueueBatch batch{events};
  auto r = s.Enqueue(std::span<const EnqueueBatch>(&batch, 1));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->at(0) : EnqueueResult{};
}

inline Lease ClaimOk(Store& s, const std::string& owner, int n, int64_t ttl_ms = 30000) {
  auto r = s.Claim(ClaimRequest{owner, n, ttl_ms});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : Lease{};
}

inline std::vector<int64_t> Seqs(const std::vector<ClaimedEvent>& events) {
  std::vector<int64_t> out;
  for (const auto& e : events) out.push_back(e.seq);
  return out;
}

inline int64_t Now(Store& s) {
  auto r = s.NowMs();
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : 0;
}

// Waits until the store clock has passed `until_ms` (a lease deadline).
inline void WaitPast(Store& s, int64_t until_ms) {
  ASSERT_TRUE(WaitUntil([&] { return Now(s) > until_ms; }, kWait));
}

using testing::CompleteBuilding;
using testing::InStoreBuilder;
using testing::MarkDoneBuilding;

// Counts per-minute events and distinct users, like the counters consumer.
// `calls` / `events_seen` count the applications (calls that applied it, and
// their rows).
inline InStoreBuilder CounterWork(uint64_t bit, std::atomic<int>* calls = nullptr,
                                  std::atomic<int>* events_seen = nullptr) {
  return InStoreBuilder{
      bit,
      [](std::span<const ClaimedEvent* const> events, Effects* out) {
        for (const ClaimedEvent* c : events) {
          Event e;
          ASSERT_TRUE(ParseBody(c->body, &e).ok()) << c->body;
          for (Granularity g : kAllGranularities) {
            out->counters.push_back(CounterDelta{
                c->project, e.event, g, BucketStartMs(g, e.time_ms), 1, {e.distinct_id()}});
          }
        }
      },
      [calls, events_seen](std::span<const ClaimedEvent* const> events) {
        if (calls) ++*calls;
        if (events_seen) *events_seen += static_cast<int>(events.size());
      }};
}

// Per-id profile deltas, as the users consumer builds them.
inline InStoreBuilder UserWork(uint64_t bit) {
  return InStoreBuilder{bit,
                        [](std::span<const ClaimedEvent* const> events, Effects* out) {
                          ProfileBatch batch;
                          for (const ClaimedEvent* c : events) {
                            Event e;
                            ASSERT_TRUE(ParseBody(c->body, &e).ok());
                            AddEvent(c->project, c->insert_id, e, &batch);
                          }
                          for (auto& [key, state] : batch) {
                            out->users.push_back(IdDelta{key.first, key.second, std::move(state)});
                          }
                        },
                        {}};
}

inline int64_t CountTotal(Store& s, const std::string& project, const std::string& event,
                          Granularity g = Granularity::kDay) {
  auto r = s.QueryCounters(CounterQuery{project, event, g, 0, kT0 * 2});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  int64_t total = 0;
  if (r.ok()) {
    for (const auto& p : *r) total += p.count;
  }
  return total;
}

}  // namespace sluice::conformance
