// FakeClock: a Clock whose time moves only when a test says so (Advance,
// Set). Sleepers and waiters re-check the fake time every millisecond of real
// time, so they return within about 1 ms of the Advance that releases them
// (or of a notify on their condition variable). Starts at an arbitrary,
// non-zero time. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/clock.h"

namespace sluice::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_mono_ms = 1'000'000, int64_t start_wall_ms = 1'714'557'600'000)
      : mono_(start_mono_ms), wall_offset_(start_wall_ms - start_mono_ms) {}

  int64_t MonoMs() const override { return mono_.load(); }
  int64_t WallMs() const override { return mono_.load() + wall_offset_; }
  void SleepMs(int64_t ms) override;
  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 int64_t deadline_mono_ms, const std::function<bool()>& pred) override;

  // Moves time forward by `ms` (>= 0).
  void Advance(int64_t ms) { mono_.fetch_add(ms > 0 ? ms : 0); }
  // Threads blocked in SleepMs/WaitUntil right now (for tests that must know
  // a component is waiting before they advance).
  int waiters() const { return waiters_.load(); }

 private:
  std::atomic<int64_t> mono_;
  const int64_t wall_offset_;
  std::atomic<int> waiters_{0};
};

}  // namespace sluice::testing
