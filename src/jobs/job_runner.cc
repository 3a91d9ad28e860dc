#include "jobs/job_runner.h"

#include <algorithm>
#include <chrono>

#include "common/event.h"
#include "fmt/format.h"
#include "spdlog/spdlog.h"

namespace sluice {

std::string JobIdempotencyKey(const JobRef& ref, int64_t run) {
  std::string in;
  in.reserve(ref.job.size() + ref.project.size() + ref.key.size() + 24);
  in.append(ref.job).push_back('\0');
  in.append(ref.project).push_back('\0');
  in.append(ref.key).push_back('\0');
  in.append(std::to_string(run));
  return "job-" + Sha256Hex(in).substr(0, 32);
}

std::string ProfileJson(const UserProfile& p) {
  std::string out = "{\"user_id\":";
  AppendJsonString(p.user_id, &out);
  out += fmt::format(",\"first_seen\":{},\"last_seen\":{},\"events\":{},\"event_counts\":{{",
                     p.first_seen_ms, p.last_seen_ms, p.events);
  for (size_t i = 0; i < p.event_counts.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(p.event_counts[i].first, &out);
    out += fmt::format(":{}", p.event_counts[i].second);
  }
  out += "},\"properties\":";
  out += p.properties.empty() ? "{}" : p.properties;
  out.push_back('}');
  return out;
}

std::string JobRequestBody(const ClaimedRun& run, const std::string& profile_json) {
  std::string out = "{\"job\":";
  AppendJsonString(run.ref.job, &out);
  out += ",\"project\":";
  AppendJsonString(run.ref.project, &out);
  out += ",\"key\":";
  AppendJsonString(run.ref.key, &out);
  out += fmt::format(",\"run\":{},\"events_since_last_run\":{},\"first_event\":{},"
                     "\"last_event\":{},\"profile\":",
                     run.run, run.events, run.first_event_ms, run.last_event_ms);
  out += profile_json.empty() ? "null" : profile_json;
  out.push_back('}');
  return out;
}

JobRunner::JobRunner(Store* store, std::vector<JobOptions> jobs, JobRunnerOptions options,
                     std::string replica_id, Metrics* metrics, Clock* clock)
    : store_(store),
      options_(options),
      replica_id_(std::move(replica_id)),
      metrics_(metrics),
      clock_(clock) {
  claim_errors_ = &metrics_->GetCounter("sluice_job_claim_errors_total",
                                        "Job claims or heartbeats the store failed");
  for (JobOptions& o : jobs) {
    names_.push_back(o.name);
    Job& j = jobs_[o.name];
    HttpClientOptions http;
    http.timeout_ms = o.timeout_ms;
    http.connect_timeout_ms = std::min<int64_t>(o.timeout_ms, 5000);
    http.max_response_bytes = options_.max_response_bytes;
    j.client = std::make_unique<HttpClient>(http, metrics_, "job:" + o.name, clock_);
    auto runs = [&](const char* result) {
      return &metrics_->GetCounter("sluice_job_runs_total", "Job runs by outcome",
                                   Labels({{"job", o.name}, {"result", result}}));
    };
    j.ok = runs("ok");
    j.retry = runs("retry");
    j.dead = runs("dead");
    j.fenced = runs("fenced");
    j.coalesced = &metrics_->GetCounter(
        "sluice_job_coalesced_events_total",
        "Events of completed runs beyond the first of each run (work saved by coalescing)",
        Labels({{"job", o.name}}));
    j.seconds = &metrics_->GetHistogram("sluice_job_run_seconds", "Handler call time per run",
                                        Labels({{"job", o.name}}));
    j.options = std::move(o);
  }
}

JobRunner::~JobRunner() { Drain(); }

void JobRunner::Start() {
  if (started_ || jobs_.empty() || options_.loops <= 0) return;
  started_ = true;
  for (int i = 0; i < options_.loops; ++i) threads_.emplace_back([this, i] { LoopMain(i); });
  threads_.emplace_back([this] { HeartbeatMain(); });
  threads_.emplace_back([this] { StatsMain(); });
}

void JobRunner::Drain() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    drain_deadline_ = clock_->MonoMs() + options_.drain_timeout_ms;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

bool JobRunner::Wait(int64_t ms) {
  std::unique_lock lock(mu_);
  return !clock_->WaitFor(lock, cv_, ms, [this] { return stopping_; });
}

bool JobRunner::DrainDeadlinePassed() {
  std::lock_guard lock(mu_);
  return stopping_ && clock_->MonoMs() >= drain_deadline_;
}

void JobRunner::LoopMain(int index) {
  const std::string owner = replica_id_ + "/jobs/" + std::to_string(index);
  int64_t idle = options_.idle_poll_min_ms;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    JobClaimRequest req{owner, names_, options_.batch, options_.lease_ttl_ms};
    Result<RunLease> lease = store_->ClaimJobRuns(req);
    if (!lease.ok()) {
      claim_errors_->Inc();
      spdlog::warn("job claim failed: {}", lease.status().ToString());
      if (!Wait(options_.idle_poll_max_ms)) return;
      continue;
    }
    if (lease->runs.empty()) {
      if (!Wait(idle)) return;
      idle = std::min(idle * 2, options_.idle_poll_max_ms);
      continue;
    }
    idle = options_.idle_poll_min_ms;
    const int64_t token = lease->token;
    {
      std::lock_guard lock(mu_);
      ++in_flight_[token];
    }
    for (const ClaimedRun& run : lease->runs) {
      // Runs not started by the drain deadline are left to their lease's
      // expiry: another replica claims them then, with the same content.
      if (DrainDeadlinePassed()) break;
      {
        std::lock_guard lock(mu_);
        if (lost_[token]) break;
      }
      if (!RunOne(token, run)) break;
    }
    {
      std::lock_guard lock(mu_);
      if (--in_flight_[token] == 0) {
        in_flight_.erase(token);
        lost_.erase(token);
      }
    }
    cv_.notify_all();  // the heartbeat may be waiting for the last claim of a drain
  }
}

bool JobRunner::RunOne(int64_t token, const ClaimedRun& run) {
  auto it = jobs_.find(run.ref.job);
  if (it == jobs_.end()) return true;  // not claimed: the claim names our jobs only
  Job& job = it->second;
  std::string profile;
  if (job.options.key_kind == JobKeyKind::kUser) {
    // The profile as the store has it now; the users consumer (if
    // configured) may not have applied this run's last events yet.
    Result<UserProfile> p = store_->GetUser(run.ref.project, run.ref.key);
    if (p.ok()) profile = ProfileJson(*p);
  }
  const std::string body = JobRequestBody(run, profile);
  ClientRequest req;
  req.method = "POST";
  req.url = job.options.url;
  req.headers = {{"Content-Type", "application/json"},
                 {"Idempotency-Key", JobIdempotencyKey(run.ref, run.run)},
                 {"X-Sluice-Job", run.ref.job},
                 {"X-Sluice-Attempt", std::to_string(run.attempts)}};
  req.body = body;
  const auto started = std::chrono::steady_clock::now();
  Result<ClientResponse> resp = job.client->Send(req);
  job.seconds->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  std::string error;
  int64_t retry_after_ms = 0;
  if (!resp.ok()) {
    error = "job " + run.ref.job + ": " + resp.status().ToString();
  } else if (resp->status >= 200 && resp->status < 300) {
    Status st = store_->CompleteJobRun(token, run.ref);
    if (st.ok()) {
      job.ok->Inc();
      if (run.events > 1) job.coalesced->Inc(run.events - 1);
      return true;
    }
    if (st.code() == Code::kLeaseLost) {
      job.fenced->Inc();
      return false;
    }
    claim_errors_->Inc();
    spdlog::warn("job {}: completing run {} failed: {}", run.ref.job, run.run, st.ToString());
    return true;  // the lease expires and the run is retried (same key)
  } else {
    error = fmt::format("job {}: handler answered {}", run.ref.job, resp->status);
    if (const std::string* ra = resp->Header("retry-after")) {
      if (auto ms = ParseRetryAfterMs(*ra, clock_->WallMs())) retry_after_ms = *ms;
    }
  }
  BackoffPolicy backoff = job.options.backoff;
  backoff.min_delay_ms = std::max(backoff.min_delay_ms, retry_after_ms);
  Result<FailResult> failed = store_->FailJobRun(token, run.ref, error, backoff);
  if (!failed.ok()) {
    if (failed.status().code() == Code::kLeaseLost) {
      job.fenced->Inc();
      return false;
    }
    claim_errors_->Inc();
    return true;
  }
  (failed->dead > 0 ? job.dead : job.retry)->Inc();
  return true;
}

void JobRunner::HeartbeatMain() {
  const int64_t every = options_.heartbeat_ms > 0
                            ? options_.heartbeat_ms
                            : std::max<int64_t>(1, options_.lease_ttl_ms / 3);
  // Runs until the runner stops with no claim in flight: a draining loop's
  // runs keep their leases.
  while (true) {
    std::vector<int64_t> tokens;
    {
      std::unique_lock lock(mu_);
      auto done = [this] { return stopping_ && in_flight_.empty(); };
      clock_->WaitFor(lock, cv_, every, done);
      if (done()) return;
      for (const auto& [token, n] : in_flight_) {
        if (!lost_[token]) tokens.push_back(token);
      }
    }
    for (int64_t token : tokens) {
      Result<int64_t> until = store_->ExtendJobRuns(token, options_.lease_ttl_ms);
      if (!until.ok() && until.status().code() == Code::kLeaseLost) {
        std::lock_guard lock(mu_);
        if (in_flight_.count(token) > 0) lost_[token] = true;
      } else if (!until.ok()) {
        claim_errors_->Inc();
      }
    }
  }
}

void JobRunner::StatsMain() {
  do {
    Result<std::vector<JobStats>> stats = store_->JobStatsByName();
    if (!stats.ok()) continue;
    for (const JobStats& s : *stats) {
      if (jobs_.count(s.job) == 0) continue;
      const std::string l = Labels({{"job", s.job}});
      metrics_->GetGauge("sluice_job_lag_ms", "Age of the oldest due job run, store clock", l)
          .Set(s.oldest_due_ms);
      metrics_->GetGauge("sluice_job_due", "Job runs due now (or with an expired lease)", l)
          .Set(s.due);
      metrics_->GetGauge("sluice_job_dead_runs", "Dead job runs kept", l).Set(s.dead);
    }
  } while (Wait(options_.stats_interval_ms));
}

}  // namespace sluice
