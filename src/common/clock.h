// Clock: injected time source for backoff, polling and timeouts.
// Lease expiry is NOT taken from here: it is always the store's clock.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds, for timeouts and intervals.
  virtual int64_t MonoMs() const = 0;
  static Clock& Real();
};

}  // namespace sluice
