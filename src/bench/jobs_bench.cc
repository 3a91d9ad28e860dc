#include "bench/jobs_bench.h"

#include <sys/resource.h>

#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "jobs/job_runner.h"

namespace sluice {
namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

constexpr uint64_t kJobBit = uint64_t{1} << 3;

// Schedules one due run per key, 1,000 keys per events batch.
Status Schedule(Store* store, int64_t keys) {
  constexpr int64_t kChunk = 1000;
  for (int64_t done = 0; done < keys; done += kChunk) {
    const int64_t n = std::min(kChunk, keys - done);
    std::vector<NewEvent> events;
    for (int64_t i = 0; i < n; ++i) {
      events.push_back({"bench", "job-" + std::to_string(done + i), "{}"});
    }
    EnqueueBatch batch{events};
    SLUICE_RETURN_IF_ERROR(store->Enqueue(std::span<const EnqueueBatch>(&batch, 1)).status());
    SLUICE_ASSIGN_OR_RETURN(Lease lease,
                            store->Claim(ClaimRequest{"bench", static_cast<int32_t>(n), 60000}));
    CompleteRequest req{lease.token, lease.events, kJobBit, 0, {}};
    InStoreEffects part{.bit = kJobBit, .effects = {}};
    for (const ClaimedEvent& e : lease.events) {
      part.effects.jobs.push_back(JobDelta{"bench", "bench", e.insert_id, 1, 0, 0, 0, 0});
    }
    req.in_store.push_back(std::move(part));
    SLUICE_RETURN_IF_ERROR(store->Complete(req).status());
  }
  return Status::Ok();
}

}  // namespace

Result<JobsBenchResult> RunJobsBench(Store* store, const JobsBenchOptions& o) {
  if (o.keys <= 0 || o.loops <= 0 || o.url.empty()) {
    return Status::InvalidArgument("bench jobs: --keys, --loops and --url are required");
  }
  SLUICE_ASSIGN_OR_RETURN(std::vector<JobStats> before, store->JobStatsByName());
  if (!before.empty()) return Status::InvalidArgument("bench jobs: the store already has jobs");
  JobsBenchResult r;
  const auto t0 = std::chrono::steady_clock::now();
  SLUICE_RETURN_IF_ERROR(Schedule(store, o.keys));
  const auto t1 = std::chrono::steady_clock::now();
  r.schedule_seconds = std::chrono::duration<double>(t1 - t0).count();

  JobOptions job;
  job.name = "bench";
  job.bit = 3;
  job.url = o.url;
  job.delay_ms = 0;
  job.max_delay_ms = 0;
  job.key = "property:k";  // no profile lookup: the handler call and the store writes only
  SLUICE_RETURN_IF_ERROR(ValidateJobOptions("bench", &job));
  JobRunnerOptions ro;
  ro.loops = o.loops;
  ro.batch = o.batch;
  ro.idle_poll_min_ms = 1;
  ro.idle_poll_max_ms = 20;
  Metrics metrics;
  const double cpu0 = CpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  JobRunner runner(store, {job}, ro, "bench", &metrics);
  runner.Start();
  const auto deadline = start + std::chrono::seconds(o.timeout_s);
  // The runner's own count of completed runs (reading the store's job stats
  // while timing would scan the table and cost as much as the runs).
  Counter& ok = metrics.GetCounter("sluice_job_runs_total", "Job runs by outcome",
                                   Labels({{"job", "bench"}, {"result", "ok"}}));
  while (ok.value() < o.keys) {
    if (std::chrono::steady_clock::now() > deadline) {
      runner.Drain();
      return Status::Unavailable("bench jobs: timed out after " + std::to_string(ok.value()) +
                                 " runs");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto end = std::chrono::steady_clock::now();
  r.cpu_s = CpuSeconds() - cpu0;
  runner.Drain();
  SLUICE_ASSIGN_OR_RETURN(std::vector<JobStats> after, store->JobStatsByName());
  if (after.empty() || after.front().runs_done != o.keys) {
    return Status::Internal("bench jobs: the store does not count every run done");
  }
  r.runs = o.keys;
  r.seconds = std::chrono::duration<double>(end - start).count();
  r.runs_per_s = static_cast<double>(r.runs) / r.seconds;
  return r;
}

}  // namespace sluice
