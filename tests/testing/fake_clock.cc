#include "testing/fake_clock.h"

#include <chrono>
#include <thread>

namespace sluice::testing {

void FakeClock::SleepMs(int64_t ms) {
  const int64_t until = MonoMs() + ms;
  waiters_.fetch_add(1);
  while (MonoMs() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  waiters_.fetch_sub(1);
}

bool FakeClock::WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          int64_t deadline_mono_ms, const std::function<bool()>& pred) {
  waiters_.fetch_add(1);
  while (!pred() && MonoMs() < deadline_mono_ms) {
    cv.wait_for(lock, std::chrono::milliseconds(1));
  }
  waiters_.fetch_sub(1);
  return pred();
}

}  // namespace sluice::testing
