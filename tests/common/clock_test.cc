#include "common/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "testing/fake_clock.h"

namespace sluice {
namespace {

TEST(RealClock, WaitUntilReturnsAtTheDeadlineWithoutThePredicate) {
  Clock& clock = Clock::Real();
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  const int64_t t0 = clock.MonoMs();
  EXPECT_FALSE(clock.WaitFor(lock, cv, 30, [] { return false; }));
  EXPECT_GE(clock.MonoMs() - t0, 30);
}

TEST(FakeClock, SleepReturnsOnlyWhenTimeIsAdvanced) {
  testing::FakeClock clock;
  std::atomic<bool> done{false};
  std::thread sleeper([&] {
    clock.SleepMs(5000);
    done = true;
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());
  clock.Advance(4999);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());
  clock.Advance(1);
  sleeper.join();
  EXPECT_TRUE(done.load());
}

TEST(FakeClock, WaitUntilWakesOnThePredicateOrTheFakeDeadline) {
  testing::FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool flag = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(clock.WaitFor(lock, cv, 60'000, [&] { return flag; }));
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  {
    std::lock_guard<std::mutex> lock(mu);
    flag = true;
  }
  cv.notify_all();
  waiter.join();

  std::thread timeout([&] {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_FALSE(clock.WaitFor(lock, cv, 1000, [] { return false; }));
  });
  while (clock.waiters() == 0) std::this_thread::yield();
  clock.Advance(1000);
  timeout.join();
  EXPECT_GT(clock.WallMs(), clock.MonoMs());
}

}  // namespace
}  // namespace sluice
