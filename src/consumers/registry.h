// Builds the configured consumers. Each consumer's done bit is stable: taken
// from its config (`bit`) or assigned by name (users 0, counters 1); two
// consumers never share a bit.
#pragma once

#include <vector>

#include "common/metrics.h"
#include "config/config.h"
#include "consumers/consumer.h"

namespace sluice {

Result<std::vector<ConsumerPtr>> MakeConsumers(const std::vector<ConsumerConfig>& configs,
                                               Metrics* metrics);

}  // namespace sluice
