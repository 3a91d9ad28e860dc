// Consumer input for tests: claimed rows with their bodies decoded, as the
// watcher hands them to filters and consumers (consumers/api/consumer.h). A
// decoded body is kept for the life of the test process, one per distinct
// body text, so the pointers stay valid however a test copies or slices the
// result. Thread-safe.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "common/event.h"
#include "consumers/api/consumer.h"
#include "queue/store.h"

namespace sluice::testing {

// ParseBody(body), cached; null when the body does not parse.
const Event* ParsedBody(std::string_view body);

// Each row with its parsed body (event null when it does not parse).
std::vector<DecodedEvent> Decoded(std::span<const ClaimedEvent> rows);
std::vector<DecodedEvent> Decoded(std::span<const ClaimedEvent* const> rows);

}  // namespace sluice::testing
