#include "ops/ops_service.h"

#include <charconv>

#include "common/event.h"
#include "common/http_status.h"
#include "common/strings.h"
#include "common/time.h"
#include "ops/dlq.h"
#include "ops/jobs_admin.h"
#include "http/http_util.h"
#include "ops/status_report.h"
#include "ops/user_json.h"

namespace sluice {
namespace {

constexpr size_t kMaxUserIdBytes = 1024;  // longer ids in a path are refused (400)

int64_t BucketSizeMs(Granularity g) {
  switch (g) {
    case Granularity::kMinute:
      return 60LL * 1000;
    case Granularity::kHour:
      return 3600LL * 1000;
    case Granularity::kDay:
      return 24LL * 3600 * 1000;
  }
  return 3600LL * 1000;
}

}  // namespace

OpsService::OpsService(Store* store, sluice::Metrics* metrics, OpsOptions options,
                       const std::atomic<bool>* draining)
    : store_(store),
      metrics_(metrics),
      options_(std::move(options)),
      draining_(draining),
      auth_(options_.auth, options_.session_ttl_ms, metrics) {
  const char* depth_help = "Events in the queue by state (refreshed from the store at scrape)";
  pending_ = &metrics_->GetGauge("sluice_queue_events", depth_help, Labels({{"state", "pending"}}));
  leased_ = &metrics_->GetGauge("sluice_queue_events", depth_help, Labels({{"state", "leased"}}));
  dead_ = &metrics_->GetGauge("sluice_queue_events", depth_help, Labels({{"state", "dead"}}));
  oldest_pending_age_ms_ = &metrics_->GetGauge("sluice_queue_oldest_pending_age_ms",
                                               "Age of the oldest pending event, store clock, ms");
  const char* links_help =
      "Identity links (docs/users.md): applied = ids merged into another person, refused = "
      "links that would merge two persons (store-wide, refreshed from the store at scrape)";
  links_applied_ = &metrics_->GetGauge("sluice_identity_links", links_help,
                                       Labels({{"state", "applied"}}));
  links_refused_ = &metrics_->GetGauge("sluice_identity_links", links_help,
                                       Labels({{"state", "refused"}}));
  store_up_ = &metrics_->GetGauge("sluice_store_up",
                                  "1 when the last scrape-time store query succeeded, else 0");
  const char* rej_help = "Ops/admin/read API requests refused, by reason";
  unauthorized_ = &metrics_->GetCounter("sluice_ops_rejected_total", rej_help,
                                        Labels({{"reason", "unauthorized"}}));
  bad_request_ = &metrics_->GetCounter("sluice_ops_rejected_total", rej_help,
                                       Labels({{"reason", "bad_request"}}));
  store_errors_ = &metrics_->GetCounter("sluice_ops_rejected_total", rej_help,
                                        Labels({{"reason", "store_error"}}));
  metrics_->AddCollector([this] { RefreshQueueGauges(); });
}

void OpsService::RefreshQueueGauges() {
  Result<QueueStats> stats = store_->Stats();
  if (!stats.ok()) {
    store_up_->Set(0);
    return;
  }
  store_up_->Set(1);
  pending_->Set(stats->pending);
  leased_->Set(stats->leased);
  dead_->Set(stats->dead);
  oldest_pending_age_ms_->Set(stats->oldest_pending_age_ms);
  links_applied_->Set(stats->identity_links_applied);
  links_refused_->Set(stats->identity_links_refused);
}

std::vector<OpsRoute> OpsService::Routes() {
  auto sync = [this](HttpResponse (OpsService::*fn)(const HttpRequest&)) -> Handler {
    return [this, fn](const HttpRequest& req, Responder respond) { respond((this->*fn)(req)); };
  };
  return {
      {"GET", "/metrics", sync(&OpsService::Prometheus)},
      {"GET", "/healthz", sync(&OpsService::Healthz)},
      {"GET", "/readyz", sync(&OpsService::Readyz)},
      {"GET", "/admin/status", sync(&OpsService::AdminStatus)},
      {"GET", "/admin/dlq", sync(&OpsService::AdminDlqList)},
      {"POST", "/admin/dlq/requeue", sync(&OpsService::AdminDlqRequeue)},
      {"POST", "/admin/dlq/purge", sync(&OpsService::AdminDlqPurge)},
      {"GET", "/admin/jobs", sync(&OpsService::AdminJobs)},
      {"POST", "/admin/jobs/requeue", sync(&OpsService::AdminJobsRequeue)},
      {"POST", "/admin/jobs/purge", sync(&OpsService::AdminJobsPurge)},
      {"GET", "/v1/users/*", sync(&OpsService::GetUser)},
      {"GET", "/v1/counters", sync(&OpsService::GetCounters)},
  };
}

HttpResponse OpsService::Prometheus(const HttpRequest& /*req*/) {
  HttpResponse r;
  r.status = kHttpOk;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metrics_->RenderPrometheus();
  return r;
}

HttpResponse OpsService::Healthz(const HttpRequest& /*req*/) {
  return JsonResponse(kHttpOk, "{\"status\":\"ok\"}");
}

HttpResponse OpsService::Readyz(const HttpRequest& /*req*/) {
  if (draining_ != nullptr && draining_->load()) {
    return JsonResponse(HttpStatusFor(Code::kUnavailable), "{\"status\":\"draining\"}");
  }
  Result<int64_t> now = store_->NowMs();
  if (!now.ok()) {
    std::string body = "{\"status\":\"store unavailable\",\"error\":";
    AppendJsonString(now.status().ToString(), &body);
    body += "}";
    return JsonResponse(HttpStatusFor(Code::kUnavailable), std::move(body));
  }
  if (options_.store_write_status) {
    // Reads answer but writes fail (a full disk): ingest answers 503 to every
    // request, so a load balancer should send clients elsewhere.
    Status writes = options_.store_write_status();
    if (!writes.ok()) {
      std::string body = "{\"status\":\"store writes failing\",\"error\":";
      AppendJsonString(writes.ToString(), &body);
      body += "}";
      return JsonResponse(HttpStatusFor(Code::kUnavailable), std::move(body));
    }
  }
  return JsonResponse(kHttpOk, "{\"status\":\"ready\"}");
}

std::optional<HttpResponse> OpsService::CheckAdmin(const HttpRequest& req) {
  return auth_.Check(req, /*write=*/req.method != "GET");
}

std::optional<HttpResponse> OpsService::CheckRead(const HttpRequest& req, std::string* project) {
  std::optional<std::string> asked = QueryValue(req.query, "project");
  *project = asked.value_or("");
  if (!options_.auth.enabled()) return std::nullopt;
  const std::string cred = RequestCredential(req);
  if (!options_.auth.admin_token.empty() && ConstantTimeEquals(cred, options_.auth.admin_token)) {
    return std::nullopt;
  }
  // Compare against every key so timing does not reveal which key matched.
  const std::string* key_project = nullptr;
  for (const auto& [key, proj] : options_.auth.write_keys) {
    if (!cred.empty() && ConstantTimeEquals(cred, key)) key_project = &proj;
  }
  if (key_project == nullptr) {
    unauthorized_->Inc();
    HttpResponse r = JsonError(Code::kUnauthorized,
                               "reads need Authorization: Bearer <write key or admin token>");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (asked && !asked->empty() && *asked != *key_project) {
    unauthorized_->Inc();
    return JsonError(Code::kForbidden, "this write key may read only its own project");
  }
  *project = *key_project;
  return std::nullopt;
}

HttpResponse OpsService::AdminStatus(const HttpRequest& req) {
  if (auto refused = CheckAdmin(req)) return *refused;
  Result<StatusReport> report = CollectStatus(store_, options_.replica_alive_within_ms);
  if (!report.ok()) {
    store_errors_->Inc();
    return StatusError(report.status());
  }
  return JsonResponse(kHttpOk, RenderStatusJson(*report));
}

HttpResponse OpsService::AdminDlqList(const HttpRequest& req) {
  if (auto refused = CheckAdmin(req)) return *refused;
  DeadFilter filter;
  bool all = false;
  HttpRequest query_only = req;
  query_only.body.clear();  // GET: the filter comes from the query
  Status st = ParseDeadFilter(query_only, &filter, &all);
  if (!st.ok()) {
    bad_request_->Inc();
    return StatusError(st);
  }
  Result<std::vector<DeadEvent>> dead = store_->ListDead(filter);
  if (!dead.ok()) {
    store_errors_->Inc();
    return StatusError(dead.status());
  }
  return JsonResponse(kHttpOk, RenderDeadJson(*dead));
}

// Stats of every job, the rows matching the query (job, project, key,
// limit) and the dead runs matching it.
std::optional<HttpResponse> OpsService::AdminJobFilter(const HttpRequest& req, JobFilter* filter,
                                                       bool* all) {
  if (auto refused = CheckAdmin(req)) return refused;
  Status st = ParseJobFilter(req, filter, all);
  if (!st.ok()) {
    bad_request_->Inc();
    return StatusError(st);
  }
  return std::nullopt;
}

HttpResponse OpsService::AdminJobs(const HttpRequest& req) {
  JobFilter filter;
  bool all = false;
  if (auto refused = AdminJobFilter(req, &filter, &all)) return *refused;
  Result<int64_t> now = store_->NowMs();
  Result<std::vector<JobStats>> stats = store_->JobStatsByName();
  Result<std::vector<JobRow>> rows = store_->ListJobs(filter);
  Result<std::vector<DeadRun>> dead = store_->ListDeadRuns(filter);
  for (const Status* s : {&now.status(), &stats.status(), &rows.status(), &dead.status()}) {
    if (!s->ok()) {
      store_errors_->Inc();
      return StatusError(*s);
    }
  }
  return JsonResponse(kHttpOk, RenderJobsJson(*now, *stats, *rows, *dead));
}

HttpResponse OpsService::AdminJobsRequeue(const HttpRequest& req) {
  JobFilter filter;
  bool all = false;
  if (auto refused = AdminJobFilter(req, &filter, &all)) return *refused;
  // An empty filter requeues every dead run: harmless, they run again.
  Result<int64_t> n = store_->RequeueDeadRuns(filter);
  if (!n.ok()) {
    store_errors_->Inc();
    return StatusError(n.status());
  }
  return JsonResponse(kHttpOk, "{\"requeued\":" + std::to_string(*n) + "}");
}

HttpResponse OpsService::AdminJobsPurge(const HttpRequest& req) {
  JobFilter filter;
  bool all = false;
  if (auto refused = AdminJobFilter(req, &filter, &all)) return *refused;
  if (JobFilterIsEmpty(filter) && !all) {
    bad_request_->Inc();
    return JsonError(Code::kInvalidArgument, "purge needs job, project, key or id, or all=true");
  }
  Result<int64_t> n = store_->PurgeDeadRuns(filter);
  if (!n.ok()) {
    store_errors_->Inc();
    return StatusError(n.status());
  }
  return JsonResponse(kHttpOk, "{\"purged\":" + std::to_string(*n) + "}");
}

HttpResponse OpsService::AdminDlqRequeue(const HttpRequest& req) {
  if (auto refused = CheckAdmin(req)) return *refused;
  DeadFilter filter;
  bool all = false;
  Status st = ParseDeadFilter(req, &filter, &all);
  if (!st.ok()) {
    bad_request_->Inc();
    return StatusError(st);
  }
  // An empty filter requeues every dead event: harmless, they are retried.
  Result<int64_t> n = store_->RequeueDead(filter);
  if (!n.ok()) {
    store_errors_->Inc();
    return StatusError(n.status());
  }
  return JsonResponse(kHttpOk, "{\"requeued\":" + std::to_string(*n) + "}");
}

HttpResponse OpsService::AdminDlqPurge(const HttpRequest& req) {
  if (auto refused = CheckAdmin(req)) return *refused;
  DeadFilter filter;
  bool all = false;
  Status st = ParseDeadFilter(req, &filter, &all);
  if (!st.ok()) {
    bad_request_->Inc();
    return StatusError(st);
  }
  // Purging loses events for good: an empty filter must be explicit.
  if (DeadFilterIsEmpty(filter) && !all) {
    bad_request_->Inc();
    return JsonError(Code::kInvalidArgument,
                     "purge needs seqs, project or consumer, or \"all\":true");
  }
  Result<int64_t> n = store_->PurgeDead(filter);
  if (!n.ok()) {
    store_errors_->Inc();
    return StatusError(n.status());
  }
  return JsonResponse(kHttpOk, "{\"purged\":" + std::to_string(*n) + "}");
}

HttpResponse OpsService::GetUser(const HttpRequest& req) {
  std::string project;
  if (auto refused = CheckRead(req, &project)) return *refused;
  constexpr std::string_view kPrefix = "/v1/users/";
  std::string user_id =
      req.path.size() > kPrefix.size() ? req.path.substr(kPrefix.size()) : std::string();
  if (user_id.empty() || user_id.size() > kMaxUserIdBytes) {
    bad_request_->Inc();
    return JsonError(Code::kInvalidArgument,
                     "expected /v1/users/{user_id} with a user id of 1..1024 bytes");
  }
  Result<UserProfile> user = store_->GetUser(project, user_id);
  if (!user.ok()) {
    if (user.status().code() == Code::kNotFound) {
      std::string body = "{\"error\":\"unknown user\",\"user_id\":";
      AppendJsonString(user_id, &body);
      body += "}";
      return JsonResponse(HttpStatusFor(Code::kNotFound), std::move(body));
    }
    store_errors_->Inc();
    return StatusError(user.status());
  }
  return JsonResponse(kHttpOk, UserProfileJson(*user));
}

HttpResponse OpsService::GetCounters(const HttpRequest& req) {
  std::string project;
  if (auto refused = CheckRead(req, &project)) return *refused;
  auto bad = [this](std::string_view msg) {
    bad_request_->Inc();
    return JsonError(Code::kInvalidArgument, msg);
  };
  CounterQuery q;
  q.project = project;
  q.event = QueryValue(req.query, "event").value_or("");
  if (q.event.empty()) return bad("event= is required");
  const std::string bucket = QueryValue(req.query, "bucket").value_or("hour");
  if (bucket == "minute") {
    q.granularity = Granularity::kMinute;
  } else if (bucket == "hour") {
    q.granularity = Granularity::kHour;
  } else if (bucket == "day") {
    q.granularity = Granularity::kDay;
  } else {
    return bad("bucket must be minute, hour or day");
  }
  int64_t to = WallNowMs();
  if (auto t = QueryValue(req.query, "to")) {
    std::optional<int64_t> v = ParseTimeMs(*t);
    if (!v) return bad("to: expected epoch milliseconds or ISO-8601");
    to = *v;
  }
  int64_t from = to - options_.default_counter_range_ms;
  if (auto f = QueryValue(req.query, "from")) {
    std::optional<int64_t> v = ParseTimeMs(*f);
    if (!v) return bad("from: expected epoch milliseconds or ISO-8601");
    from = *v;
  }
  if (from >= to) return bad("from must be before to");
  const int64_t size = BucketSizeMs(q.granularity);
  q.from_ms = BucketStartMs(q.granularity, from);
  q.to_ms = to;
  const int64_t buckets = (q.to_ms - q.from_ms + size - 1) / size;
  if (buckets > options_.max_counter_buckets) {
    return bad("range spans " + std::to_string(buckets) + " " + bucket + " buckets; at most " +
               std::to_string(options_.max_counter_buckets) + " per request");
  }
  Result<std::vector<CounterPoint>> points = store_->QueryCounters(q);
  if (!points.ok()) {
    store_errors_->Inc();
    return StatusError(points.status());
  }
  std::string out = "{\"event\":";
  AppendJsonString(q.event, &out);
  out += ",\"bucket\":";
  AppendJsonString(bucket, &out);
  out += ",\"from\":" + std::to_string(q.from_ms) + ",\"to\":" + std::to_string(q.to_ms);
  out += ",\"series\":[";
  bool first = true;
  for (const CounterPoint& p : *points) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"ts\":" + std::to_string(p.bucket_ms) + ",\"count\":" + std::to_string(p.count) +
           ",\"users\":" + std::to_string(p.users) + "}";
  }
  out += "]}";
  return JsonResponse(kHttpOk, std::move(out));
}

}  // namespace sluice
