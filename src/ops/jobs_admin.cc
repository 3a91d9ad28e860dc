#include "ops/jobs_admin.h"

#include <algorithm>
#include <charconv>

#include "common/event.h"
#include "common/strings.h"
#include "fmt/format.h"
#include "http/http_util.h"

namespace sluice {
namespace {

bool ParseInt64(std::string_view s, int64_t* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

Status ParseJobFilter(const HttpRequest& req, JobFilter* f, bool* all) {
  *all = false;
  if (auto v = QueryValue(req.query, "job")) f->job = *v;
  if (auto v = QueryValue(req.query, "project")) f->project = *v;
  if (auto v = QueryValue(req.query, "key")) f->key = *v;
  for (const std::string& id : QueryValues(req.query, "id")) {
    int64_t n = 0;
    if (!ParseInt64(id, &n) || n <= 0) return Status::InvalidArgument("id: expected a dead run id");
    f->ids.push_back(n);
  }
  if (auto a = QueryValue(req.query, "all")) *all = (*a == "true" || *a == "1");
  if (auto l = QueryValue(req.query, "limit")) {
    int64_t n = 0;
    if (!ParseInt64(*l, &n) || n < 0) {
      return Status::InvalidArgument("limit: expected a non-negative integer");
    }
    f->limit = static_cast<int32_t>(std::min<int64_t>(n, kMaxJobList));
  }
  return Status::Ok();
}

bool JobFilterIsEmpty(const JobFilter& f) {
  return f.job.empty() && f.project.empty() && f.key.empty() && f.ids.empty();
}

std::string JobStatsJson(const JobStats& s) {
  std::string out = "{\"name\":";
  AppendJsonString(s.job, &out);
  out += fmt::format(
      ",\"keys\":{},\"waiting\":{},\"due\":{},\"leased\":{},\"dead\":{},\"lag_ms\":{},"
      "\"runs_done\":{}}}",
      s.keys, s.waiting, s.due, s.leased, s.dead, s.oldest_due_ms, s.runs_done);
  return out;
}

std::string RenderJobsJson(int64_t now_ms, const std::vector<JobStats>& stats,
                           const std::vector<JobRow>& rows, const std::vector<DeadRun>& dead) {
  std::string out = fmt::format("{{\"now_ms\":{},\"jobs\":[", now_ms);
  for (size_t i = 0; i < stats.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += JobStatsJson(stats[i]);
  }
  out += "],\"rows\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const JobRow& r = rows[i];
    if (i > 0) out.push_back(',');
    out += "{\"job\":";
    AppendJsonString(r.ref.job, &out);
    out += ",\"project\":";
    AppendJsonString(r.ref.project, &out);
    out += ",\"key\":";
    AppendJsonString(r.ref.key, &out);
    out += ",\"state\":";
    AppendJsonString(r.state, &out);
    out += fmt::format(
        ",\"run\":{},\"attempts\":{},\"visible_at_ms\":{},\"run_events\":{},"
        "\"pending_events\":{},\"pending_since_ms\":{},\"pending_due_ms\":{},\"runs_done\":{},"
        "\"last_run_ms\":{},\"lease_owner\":",
        r.run, r.attempts, r.visible_at_ms, r.run_events, r.pending_events, r.pending_since_ms,
        r.pending_due_ms, r.runs_done, r.last_run_ms);
    AppendJsonString(r.lease_owner, &out);
    out += ",\"last_error\":";
    AppendJsonString(r.last_error, &out);
    out.push_back('}');
  }
  out += "],\"dead\":[";
  for (size_t i = 0; i < dead.size(); ++i) {
    const DeadRun& d = dead[i];
    if (i > 0) out.push_back(',');
    out += fmt::format("{{\"id\":{},\"job\":", d.id);
    AppendJsonString(d.ref.job, &out);
    out += ",\"project\":";
    AppendJsonString(d.ref.project, &out);
    out += ",\"key\":";
    AppendJsonString(d.ref.key, &out);
    out += fmt::format(
        ",\"run\":{},\"events\":{},\"first_event\":{},\"last_event\":{},\"attempts\":{},"
        "\"died_at_ms\":{},\"last_error\":",
        d.run, d.events, d.first_event_ms, d.last_event_ms, d.attempts, d.died_at_ms);
    AppendJsonString(d.last_error, &out);
    out.push_back('}');
  }
  out += "]}";
  return out;
}

namespace {

std::string Ago(int64_t now_ms, int64_t at_ms) {
  if (at_ms <= 0) return "-";
  const int64_t d = at_ms - now_ms;
  return d >= 0 ? fmt::format("in {:.1f}s", d / 1000.0) : fmt::format("{:.1f}s ago", -d / 1000.0);
}

}  // namespace

std::string RenderJobsText(int64_t now_ms, const std::vector<JobStats>& stats,
                           const std::vector<JobRow>& rows, const std::vector<DeadRun>& dead) {
  std::string out = fmt::format("{:<20} {:>8} {:>8} {:>8} {:>8} {:>6} {:>10} {:>10}\n", "JOB",
                                "KEYS", "WAITING", "DUE", "LEASED", "DEAD", "LAG", "RUNS");
  for (const JobStats& s : stats) {
    out += fmt::format("{:<20} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9.1f}s {:>10}\n", s.job, s.keys,
                       s.waiting, s.due, s.leased, s.dead, s.oldest_due_ms / 1000.0, s.runs_done);
  }
  if (!rows.empty()) {
    out += fmt::format("\n{:<16} {:<12} {:<24} {:<8} {:>5} {:>4} {:>7} {:>7} {:<14}\n", "JOB",
                       "PROJECT", "KEY", "STATE", "RUN", "ATT", "RUNEV", "PENDEV", "DUE/LEASE");
    for (const JobRow& r : rows) {
      out += fmt::format("{:<16} {:<12} {:<24} {:<8} {:>5} {:>4} {:>7} {:>7} {:<14}\n", r.ref.job,
                         r.ref.project, r.ref.key, r.state, r.run, r.attempts, r.run_events,
                         r.pending_events, Ago(now_ms, r.visible_at_ms));
      if (!r.last_error.empty()) out += "    last error: " + r.last_error + "\n";
    }
  }
  if (!dead.empty()) {
    out += fmt::format("\n{:>6} {:<16} {:<12} {:<24} {:>5} {:>6} {:>4} {:<12} {}\n", "ID", "JOB",
                       "PROJECT", "KEY", "RUN", "EVENTS", "ATT", "DIED", "ERROR");
    for (const DeadRun& d : dead) {
      out += fmt::format("{:>6} {:<16} {:<12} {:<24} {:>5} {:>6} {:>4} {:<12} {}\n", d.id,
                         d.ref.job, d.ref.project, d.ref.key, d.run, d.events, d.attempts,
                         Ago(now_ms, d.died_at_ms), d.last_error);
    }
  }
  return out;
}

}  // namespace sluice
