// Builds the configured consumers. Each consumer's done bit is stable: taken
// from its config (`bit`) or assigned by name (users 0, counters 1); two
// consumers never share a bit.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/metrics.h"
#include "consumers/api/consumer.h"

namespace sluice {

// A consumer type the registry can build.
struct ConsumerType {
  const char* type;
  // The done bit used when the config gives none; -1: `bit` is required. Only
  // the built-in in-store consumers have one: a bit must never change for a
  // consumer whose events are in flight, so external ones name theirs.
  int default_bit;
  Result<ConsumerPtr> (*make)(const ConsumerConfig& config, uint64_t bit, Metrics* metrics);
};

// Builds `configs` (empty: users + counters) from the built-in types and
// `extra_types` (a binary's own additions: sluice-testkit's "test"; the
// shipped binary adds none).
Result<std::vector<ConsumerPtr>> MakeConsumers(const std::vector<ConsumerConfig>& configs,
                                               Metrics* metrics,
                                               std::span<const ConsumerType> extra_types = {});

}  // namespace sluice
