// OpsService: the operational HTTP endpoints of a replica.
//
//   GET  /metrics              Prometheus text 0.0.4 (queue depth refreshed from the store)
//   GET  /healthz              200 while the process runs
//   GET  /readyz               200 when the store answers, its writes do not fail and the
//                              replica is not draining; else 503 naming why
//   GET  /admin/status         queue depth + live replicas (ops/status_report.h)
//   GET  /admin/dlq            dead events (?project=&consumer=&limit=)
//   POST /admin/dlq/requeue    dead events back to pending (JSON body or query filter)
//   POST /admin/dlq/purge      delete dead events (a filter or "all":true is required)
//   GET  /v1/users/{user_id}   per-user profile (?project=)
//   GET  /v1/counters          time series (?event=&bucket=&from=&to=&project=)
//
// Access (ops/admin_auth.h): admin endpoints need `Authorization: Bearer
// <admin_token>` or a console login when an admin token is configured, and
// are open to loopback clients only when it is not; POSTs from a browser also
// pass the console's CSRF check. Reads (/v1/users, /v1/counters) are open when
// no write keys are configured (the server then listens on loopback only);
// with write keys they need the admin token (any project) or a write key
// (that key's project only).
//
// ops never sees Beast: it hands (method, path, handler) routes to whoever
// owns the HttpServer. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "http/auth.h"
#include "http/http_server.h"
#include "ops/admin_auth.h"
#include "queue/store.h"

namespace sluice {

struct OpsOptions {
  AuthOptions auth;                         // admin token + write keys, as configured
  int64_t replica_alive_within_ms = 10000;  // /admin/status liveness window; default 10 s
  int64_t max_counter_buckets = 100000;     // /v1/counters refuses wider ranges (400)
  int64_t default_counter_range_ms = 24LL * 3600 * 1000;  // from = to - this; default 24 h
  int64_t session_ttl_ms = 12LL * 3600 * 1000;  // console login lifetime; default 12 h
  // Ok while the replica's store writes succeed, else the last failing write's
  // error (app/write_health.h); /readyz answers 503 with it. Null: not checked.
  std::function<Status()> store_write_status;
};

struct OpsRoute {
  std::string method;  // "GET", "POST"
  std::string path;    // exact, or a prefix ending in "/*"
  Handler handler;
};

class OpsService {
 public:
  // REQUIRES: store and metrics outlive the service. `draining` (may be null)
  // tells /readyz that the replica is shutting down. Registers the queue-depth
  // collector on `metrics`.
  OpsService(Store* store, Metrics* metrics, OpsOptions options, const std::atomic<bool>* draining);

  OpsService(const OpsService&) = delete;
  OpsService& operator=(const OpsService&) = delete;

  std::vector<OpsRoute> Routes();
  // The admin check of every admin endpoint (shared with the console).
  const AdminAuth* admin_auth() const { return &auth_; }

  // The handlers, synchronous (each answers before returning).
  HttpResponse Prometheus(const HttpRequest& req);
  HttpResponse Healthz(const HttpRequest& req);
  HttpResponse Readyz(const HttpRequest& req);
  HttpResponse AdminStatus(const HttpRequest& req);
  HttpResponse AdminDlqList(const HttpRequest& req);
  HttpResponse AdminDlqRequeue(const HttpRequest& req);
  HttpResponse AdminDlqPurge(const HttpRequest& req);
  HttpResponse AdminJobs(const HttpRequest& req);
  HttpResponse AdminJobsRequeue(const HttpRequest& req);
  HttpResponse AdminJobsPurge(const HttpRequest& req);
  HttpResponse GetUser(const HttpRequest& req);
  HttpResponse GetCounters(const HttpRequest& req);

 private:
  // nullopt when the request may use admin endpoints, else the refusal.
  std::optional<HttpResponse> CheckAdmin(const HttpRequest& req);
  // CheckAdmin, then the job filter of the query (ops/jobs_admin.h); the
  // answer to send instead when either refuses.
  std::optional<HttpResponse> AdminJobFilter(const HttpRequest& req, JobFilter* filter, bool* all);
  // Resolves the project a read may see: Ok with *project set, or the refusal.
  std::optional<HttpResponse> CheckRead(const HttpRequest& req, std::string* project);
  void RefreshQueueGauges();

  // Constant after construction.
  Store* const store_;
  Metrics* const metrics_;
  const OpsOptions options_;
  const std::atomic<bool>* const draining_;
  const AdminAuth auth_;
  Gauge* pending_;
  Gauge* leased_;
  Gauge* dead_;
  Gauge* oldest_pending_age_ms_;
  Gauge* links_applied_;
  Gauge* links_refused_;
  Gauge* store_up_;
  Counter* unauthorized_;
  Counter* bad_request_;
  Counter* store_errors_;
};

}  // namespace sluice
