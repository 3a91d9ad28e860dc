#include "common/clock.h"

#include <thread>

namespace sluice {
namespace {

class RealClock final : public Clock {
 public:
  int64_t MonoMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  int64_t WallMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  void SleepMs(int64_t ms) override {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 int64_t deadline_mono_ms, const std::function<bool()>& pred) override {
    const auto deadline = std::chrono::steady_clock::time_point(
        std::chrono::milliseconds(deadline_mono_ms));
    return cv.wait_until(lock, deadline, pred);
  }
};

}  // namespace

Clock& Clock::Real() {
  static RealClock clock;
  return clock;
}

}  // namespace sluice
