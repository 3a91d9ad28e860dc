#include "common/clock.h"

namespace sluice {
namespace {

class RealClock final : public Clock {
 public:
  int64_t MonoMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Clock& Clock::Real() {
  static RealClock clock;
  return clock;
}

}  // namespace sluice
