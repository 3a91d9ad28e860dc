// Shared test fixtures: temp dirs, free ports, waiting for conditions,
// reading Prometheus text.
// Wait for conditions, never sleep for a fixed time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace sluice::testing {

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// Polls `pred` every `poll` until it is true (returns true) or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(10));

// Sum of a Prometheus metric's samples in `metrics_text` whose label set
// contains `label_filter` (e.g. "consumer=\"users\""; "" = every sample of
// that name).
int64_t MetricSum(const std::string& metrics_text, const std::string& name,
                  const std::string& label_filter = "");

}  // namespace sluice::testing
