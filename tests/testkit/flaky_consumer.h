// FlakyConsumer: the test-only consumer type "test" (system tests, chaos,
// benchmarks). External by default; it writes nothing but can sleep per batch
// (an I/O-bound sink), fail at a rate or for its first N batches, hang past a
// lease, and always fail batches holding a poison event. It records what it
// was handed so tests can check who was called again.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "consumers/registry/registry.h"

namespace sluice {

struct FlakyConsumerOptions {
  bool in_store = false;       // true: an in-store consumer with no effects
  int64_t sleep_ms = 0;        // per batch, before answering (I/O-bound sink); default 0
  double fail_rate = 0;        // probability that a batch fails, 0..1; default 0
  int32_t fail_first_n = 0;    // the first N batches fail; default 0
  int64_t hang_ms = 0;         // the first hang_first_n batches stall this long; default 0
  int32_t hang_first_n = 1;    // how many batches hang when hang_ms > 0; default 1
  std::string poison_event;    // batches holding an event of this name always fail; "" = none
  uint64_t seed = 1;           // for fail_rate
};

// Parses the `[[consumer]]` options of type "test" (keys as the fields above).
Result<FlakyConsumerOptions> ParseFlakyConsumerOptions(
    const std::map<std::string, std::string>& options);

class FlakyConsumer final : public Consumer {
 public:
  // `metrics` may be null; else sluice_test_consumer_events_total{consumer}
  // counts events delivered successfully.
  FlakyConsumer(std::string name, uint64_t bit, FlakyConsumerOptions options,
                Metrics* metrics = nullptr);

  bool in_store() const override { return options_.in_store; }
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;
  Status Deliver(const Delivery& delivery) override;

  // Called at the start of every Deliver (tests: block, observe). Set before use.
  void set_hook(std::function<void(const Delivery&)> hook) { hook_ = std::move(hook); }

  int64_t calls() const { return calls_.load(); }        // Deliver/BuildEffects calls
  int64_t failures() const { return failures_.load(); }  // calls that returned an error
  int64_t delivered() const { return delivered_.load(); }  // events of successful calls
  // Seqs of every event handed over (successful or not), in call order.
  std::vector<int64_t> seen_seqs() const;
  // Seqs of events of successful calls; may repeat (at-least-once).
  std::vector<int64_t> delivered_seqs() const;

 private:
  Status DecideLocked(const Delivery& d, int64_t call_index);

  const FlakyConsumerOptions options_;
  Counter* const delivered_metric_;
  std::function<void(const Delivery&)> hook_;

  mutable std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> failures_{0};
  mutable std::atomic<int64_t> delivered_{0};
  mutable std::mutex mu_;
  std::mt19937_64 rng_;                  // GUARDED_BY(mu_)
  mutable std::vector<int64_t> seen_;       // GUARDED_BY(mu_)
  mutable std::vector<int64_t> delivered_seqs_;  // GUARDED_BY(mu_)
};

// The consumer type "test" for MakeConsumers (a FlakyConsumer from its options).
Result<ConsumerPtr> MakeTestConsumer(const ConsumerConfig& config, uint64_t bit, Metrics* metrics);
inline constexpr ConsumerType kTestConsumerTypes[] = {{"test", -1, &MakeTestConsumer}};

}  // namespace sluice
