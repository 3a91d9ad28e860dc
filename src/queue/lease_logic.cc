#include "queue/lease_logic.h"

#include <algorithm>
#include <random>
#include <string>

namespace sluice {
namespace {

bool BySeq(const HeldRow& a, const HeldRow& b) { return a.seq < b.seq; }

// The row of `sorted` (ascending seq) with `seq`, or null.
const HeldRow* Find(const std::vector<HeldRow>& sorted, int64_t seq) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), HeldRow{seq, 0}, BySeq);
  return it != sorted.end() && it->seq == seq ? &*it : nullptr;
}

MarkPlan Plan(std::span<const ClaimedEvent> events, std::span<const HeldRow> held_now,
              bool complete, uint64_t all_bits, uint64_t external_bits, uint64_t in_store_bits) {
  MarkPlan plan;
  // Both stores read the held rows in seq order; sort anyway rather than
  // trust a caller's order for a decision about exactly-once.
  std::vector<HeldRow> now(held_now.begin(), held_now.end());
  if (!std::is_sorted(now.begin(), now.end(), BySeq)) std::sort(now.begin(), now.end(), BySeq);

  bool stale = false;
  plan.held.reserve(events.size());
  for (const ClaimedEvent& e : events) {
    const HeldRow* row = Find(now, e.seq);
    // Every in-store bit the caller believed missing must still be missing
    // (and held); every one it believed set must still be set. Then the rows
    // a bit flips on below are exactly the rows its effects were built for.
    if (row == nullptr) {
      if ((~e.done_mask & in_store_bits) != 0) stale = true;
      continue;
    }
    if (((row->done_mask ^ e.done_mask) & in_store_bits) != 0) stale = true;
    plan.held.push_back(*row);
  }
  std::sort(plan.held.begin(), plan.held.end(), BySeq);
  plan.held.erase(std::unique(plan.held.begin(), plan.held.end()), plan.held.end());
  if (plan.held.empty()) {
    plan.outcome = MarkPlan::Outcome::kLeaseLost;
    return plan;
  }
  if (stale) {
    plan.outcome = MarkPlan::Outcome::kStale;
    return plan;
  }
  plan.outcome = MarkPlan::Outcome::kApply;
  const uint64_t want = external_bits | in_store_bits;
  for (const HeldRow& row : plan.held) {
    const uint64_t next = row.done_mask | want;
    const bool changed = next != row.done_mask;
    if (changed) plan.marked.push_back(row.seq);
    if (complete && (next & all_bits) == all_bits) {
      // Deleted in the same transaction: writing its mask first would only
      // rewrite a row that is about to go.
      plan.deleted.push_back(row.seq);
      continue;
    }
    if (complete) plan.remaining.push_back(row.seq);
    if (changed) plan.mask_writes.push_back(HeldRow{row.seq, next});
  }
  return plan;
}

}  // namespace

MarkPlan PlanMarkDone(std::span<const ClaimedEvent> events, std::span<const HeldRow> held_now,
                      uint64_t external_bits, uint64_t in_store_bits) {
  return Plan(events, held_now, /*complete=*/false, 0, external_bits, in_store_bits);
}

MarkPlan PlanComplete(std::span<const ClaimedEvent> events, std::span<const HeldRow> held_now,
                      uint64_t all_bits, uint64_t external_bits, uint64_t in_store_bits) {
  return Plan(events, held_now, /*complete=*/true, all_bits, external_bits, in_store_bits);
}

uint64_t InStoreBits(std::span<const InStoreEffects> in_store) {
  uint64_t bits = 0;
  for (const InStoreEffects& e : in_store) bits |= e.bit;
  return bits;
}

int64_t BackoffDelayMs(const BackoffPolicy& p, int64_t attempts, double u) {
  int64_t delay = std::max<int64_t>(p.base_ms, 0);
  // Doubling stops at the cap, so it cannot overflow.
  for (int64_t i = 1; i < attempts && delay < p.cap_ms; ++i) delay *= 2;
  delay = std::max<int64_t>(std::min(delay, p.cap_ms), 0);
  const double jitter = std::clamp(p.jitter, 0.0, 1.0);
  const double scale = 1.0 - jitter * std::clamp(u, 0.0, 1.0);
  return std::max<int64_t>(p.min_delay_ms,
                           static_cast<int64_t>(static_cast<double>(delay) * scale));
}

FailStep PlanFail(const BackoffPolicy& p, int64_t attempts, double u) {
  if (attempts >= p.max_attempts) return FailStep{.dead = true, .delay_ms = 0};
  return FailStep{.dead = false, .delay_ms = BackoffDelayMs(p, attempts, u)};
}

double BackoffJitter() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

bool LastErrorNamesConsumer(std::string_view last_error, std::string_view consumer) {
  if (consumer.empty()) return true;
  std::string prefix = "consumer ";
  prefix.append(consumer);
  prefix.push_back(':');
  if (last_error.starts_with(prefix)) return true;
  prefix.insert(0, "; ");
  return last_error.find(prefix) != std::string_view::npos;
}

bool LastErrorContains(std::string_view last_error, std::string_view text) {
  if (text.empty()) return true;
  auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  auto it = std::search(last_error.begin(), last_error.end(), text.begin(), text.end(),
                        [&](char a, char b) { return fold(a) == fold(b); });
  return it != last_error.end();
}

bool DeadLetterMatches(const DeadFilter& filter, std::string_view last_error) {
  return LastErrorNamesConsumer(last_error, filter.consumer) &&
         LastErrorContains(last_error, filter.error);
}

Status CheckPollDepth(int64_t exact_above, int64_t limit) {
  if (exact_above < 0 || limit <= exact_above) {
    return Status::InvalidArgument("poll depth: needs 0 <= exact_above < limit");
  }
  return Status::Ok();
}

}  // namespace sluice
