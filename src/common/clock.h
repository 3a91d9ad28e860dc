// Clock: the injected time source for backoff, polling, deadlines and
// timeouts. Every component that waits or measures takes a Clock* (default
// Clock::Real()); tests inject a FakeClock (tests/testing/fake_clock.h) and
// move time by hand.
//
// Lease expiry is NOT taken from here: it is always the store's clock.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace sluice {

class Clock {
 public:
  virtual ~Clock() = default;

  // Monotonic milliseconds, for timeouts and intervals.
  virtual int64_t MonoMs() const = 0;
  // Wall-clock epoch milliseconds (system_clock), for receive times.
  virtual int64_t WallMs() const = 0;
  // Blocks the calling thread until MonoMs() has advanced by `ms`.
  virtual void SleepMs(int64_t ms) = 0;
  // Waits on `cv` (REQUIRES: `lock` holds its mutex) until pred() is true or
  // MonoMs() >= deadline_mono_ms; returns pred(). Like
  // condition_variable::wait_until with a predicate, on this clock.
  virtual bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                         int64_t deadline_mono_ms, const std::function<bool()>& pred) = 0;

  // The same, `ms` from now.
  bool WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, int64_t ms,
               const std::function<bool()>& pred) {
    return WaitUntil(lock, cv, MonoMs() + ms, pred);
  }

  // The process's real clock (steady_clock / system_clock).
  static Clock& Real();
};

}  // namespace sluice
