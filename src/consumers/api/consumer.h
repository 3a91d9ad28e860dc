// Consumer: one destination of claimed events (DESIGN §4).
//
// Each consumer owns a stable bit in the queue's done_mask and sees only the
// events whose bit is not set yet. Two kinds:
//  - in-store (users, counters): BuildEffects turns events into deltas, pure
//    C++, outside any store transaction; the watcher hands the deltas to the
//    store, which applies them inside the fenced transaction that sets the
//    bit (exactly-once effect).
//  - external (archive, clickhouse, webhook): Deliver writes them out,
//    at-least-once, idempotent by deterministic keys; the watcher then marks
//    the bit with a fenced MarkDone.
// The watcher decodes each claimed body once (ParseBody) and hands every
// consumer the same decoded events, read-only (DecodedEvent).
// Implementations are thread-safe: the watcher's loops call them concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/status.h"
#include "queue/effects.h"
#include "queue/store.h"

namespace sluice {

// One [[consumer]] table. `options` keeps the type-specific keys as strings
// (the consumer's factory parses them); nested tables are flattened "a.b".
struct ConsumerConfig {
  std::string type;  // "users", "counters", "archive", "clickhouse", "webhook", ...
  std::string name;  // stable; defaults to type
  int32_t bit = -1;  // done_mask bit 0..62; -1 = assigned (users 0, counters 1)
  std::map<std::string, std::string> options;
  std::vector<std::string> projects;  // filter; empty = all
  std::vector<std::string> events;    // filter; empty = all
};

// One claimed row and its body decoded once by the watcher. Both point into
// the watcher's batch and stay valid for the duration of the call they are
// passed to.
struct DecodedEvent {
  const ClaimedEvent* row = nullptr;  // never null
  // The parsed body; null when it did not parse (the watcher counts those in
  // sluice_bad_bodies_total). Ingest stores only bodies ToBody wrote, so this
  // means a bug or a hand-edited row: in-store consumers skip such rows,
  // external ones fail the delivery.
  const Event* event = nullptr;
};

struct Delivery {
  std::span<const DecodedEvent> events;  // ascending seq, all lacking this consumer's bit
  int64_t token = 0;                     // the lease's fencing token (for logs)
  // Deadline for the whole delivery, monotonic ms on the watcher's clock
  // (Clock::MonoMs; the real clock in the shipped binary); a consumer that
  // cannot finish by then returns kUnavailable.
  int64_t deadline_mono_ms = 0;
  // Set by the watcher when the lease was lost or the replica's drain deadline
  // passed: the result will be ignored, so a long delivery may stop early
  // (returning kUnavailable). May be null.
  const std::atomic<bool>* cancelled = nullptr;
  bool Cancelled() const { return cancelled != nullptr && cancelled->load(); }
};

class Consumer {
 public:
  virtual ~Consumer() = default;

  const std::string& name() const { return name_; }
  // This consumer's done_mask bit as a mask (1 << index), exactly one bit set.
  uint64_t bit() const { return bit_; }

  virtual bool in_store() const = 0;
  // In-store consumers: append deltas for `events` (ascending seq) to `out`.
  // Pure; runs outside any store transaction.
  virtual void BuildEffects(std::span<const DecodedEvent> /*events*/, Effects* /*out*/) const {}
  // External consumers: write the events out. Ok means every event is
  // durable at the destination (or deliberately filtered out).
  virtual Status Deliver(const Delivery& /*delivery*/) { return Status::Ok(); }
  // External consumers: after a failed Deliver, how long (ms from now) the
  // destination asked to be left alone (e.g. a webhook's 429 Retry-After); 0 =
  // no request. A watcher may use it as the minimum retry delay of the batch.
  virtual int64_t RetryAfterMs() const { return 0; }

 protected:
  Consumer(std::string name, uint64_t bit) : name_(std::move(name)), bit_(bit) {}

 private:
  const std::string name_;
  const uint64_t bit_;
};

using ConsumerPtr = std::unique_ptr<Consumer>;

}  // namespace sluice
