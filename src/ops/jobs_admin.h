// The operator's view of keyed jobs (docs/jobs.md): GET /admin/jobs,
// POST /admin/jobs/requeue|purge (OpsService) and `sluice jobs` (app) read
// and render the same documents. Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "http/http_server.h"
#include "queue/store.h"

namespace sluice {

// Most rows or dead runs one list returns.
inline constexpr int32_t kMaxJobList = 1000;

// The filter of a request's query: job, project, key, id (repeatable dead
// run ids), limit (<= kMaxJobList); `all` = "all=true".
Status ParseJobFilter(const HttpRequest& req, JobFilter* f, bool* all);
bool JobFilterIsEmpty(const JobFilter& f);

// {"now_ms":N,"jobs":[stats...],"rows":[...],"dead":[...]}; rows and dead
// may be empty.
std::string RenderJobsJson(int64_t now_ms, const std::vector<JobStats>& stats,
                           const std::vector<JobRow>& rows, const std::vector<DeadRun>& dead);
// The same as aligned text tables (times relative to now_ms).
std::string RenderJobsText(int64_t now_ms, const std::vector<JobStats>& stats,
                           const std::vector<JobRow>& rows, const std::vector<DeadRun>& dead);
// One entry of the status documents: {"name":..,"keys":..,"due":..,...}.
std::string JobStatsJson(const JobStats& s);

}  // namespace sluice
