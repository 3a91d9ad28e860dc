// `sluice bench jobs`: job runs per second of one replica's JobRunner. The
// store is loaded with `keys` due runs of one job (scheduled through the
// fenced Complete of an events batch, as the job consumer does), then the
// runner POSTs every run to `url` (a local receiver answering 200) and the
// clock stops when the runner has completed every run (the store is checked
// afterwards). Thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

struct JobsBenchOptions {
  int64_t keys = 10000;    // runs to do (one per key)
  int32_t loops = 4;       // runner claim loops
  int32_t batch = 16;      // runs per claim
  std::string url;         // the handler; REQUIRES: answers 2xx
  int64_t timeout_s = 600;
};

struct JobsBenchResult {
  int64_t runs = 0;
  double seconds = 0;
  double runs_per_s = 0;
  double schedule_seconds = 0;  // loading the runs (not timed in runs_per_s)
  double cpu_s = 0;             // this process, during the timed part
};

Result<JobsBenchResult> RunJobsBench(Store* store, const JobsBenchOptions& options);

}  // namespace sluice
