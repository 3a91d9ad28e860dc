// Console: the live web console of a replica and the JSON API behind it.
//
//   GET  /console                the page (HTML/JS/CSS built into the binary:
//   GET  /console/app.js         src/ops/console/, no external requests; a
//   GET  /console/app.css        strict Content-Security-Policy)
//   GET  /console/session        who is logged in, the CSRF token (ops/admin_auth.h)
//   POST /console/login          admin token -> session cookie
//   POST /console/logout
//   GET  /admin/overview         replicas, queue, per-consumer backlog, rates (ops/overview.h)
//   GET  /admin/tail             live tail, Server-Sent Events (?project=&event=&user=)
// Dead letters are browsed and acted on through /admin/dlq* (OpsService).
//
// The overview is computed at most once per `cache_ms` and shared by every
// viewer and by /metrics, which exports sluice_consumer_backlog_events and
// sluice_consumer_oldest_age_seconds per consumer from it. Everything but the
// static files and login needs AdminAuth::Check. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "ops/admin_auth.h"
#include "ops/event_tail.h"
#include "ops/ops_service.h"
#include "ops/overview.h"
#include "queue/store.h"

namespace sluice {

struct ConsoleOptions {
  bool enabled = true;                       // serve /console and its API; default true
  int64_t refresh_ms = 2000;                 // the page polls the overview this often; default 2 s
  int64_t cache_ms = 1000;                   // an overview is reused this long; default 1 s
  int64_t delay_warning_ms = 60000;          // banner: a consumer's oldest event is older; 1 min
  int64_t backlog_scan_events = 20000;       // live events the backlog scan reads, at most
  int64_t dead_scan_events = 20000;          // dead events the scan reads, at most
  int64_t backlog_samples = 1000;            // probes of the seqs behind the head scan
  int64_t session_ttl_ms = 12LL * 3600 * 1000;  // console login lifetime; default 12 h
  TailOptions tail;
};

// Longest value of a tail filter parameter; longer ones are refused (400).
inline constexpr size_t kMaxTailFilterBytes = 256;

class Console {
 public:
  // REQUIRES: store, metrics, auth outlive the console; `tail` may be null (no
  // live tail: /admin/tail answers 404). `local_consumers`: this replica's
  // consumers. `alive_within_ms`: a replica with an older heartbeat is stale.
  Console(Store* store, Metrics* metrics, ConsoleOptions options, const AdminAuth* auth,
          EventTail* tail, std::vector<ConsumerSpec> local_consumers, int64_t alive_within_ms,
          std::string replica_id);

  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  std::vector<OpsRoute> Routes();

  HttpResponse Page(const HttpRequest& req);
  HttpResponse Session(const HttpRequest& req);
  HttpResponse Login(const HttpRequest& req);
  HttpResponse Logout(const HttpRequest& req);
  HttpResponse AdminOverview(const HttpRequest& req);
  HttpResponse AdminTail(const HttpRequest& req);

 private:
  // The overview of at most cache_ms ago, or a fresh one.
  Result<std::shared_ptr<const Overview>> CurrentOverview();
  void RefreshGauges();

  // Constant after construction.
  Store* const store_;
  Metrics* const metrics_;
  const ConsoleOptions options_;
  const AdminAuth* const auth_;
  EventTail* const tail_;
  const std::vector<ConsumerSpec> local_consumers_;
  const std::string replica_id_;
  OverviewOptions overview_options_;
  Histogram* scan_seconds_;
  Counter* bad_request_;
  Counter* store_errors_;

  std::mutex mu_;  // held while an overview is computed: concurrent viewers share it
  std::shared_ptr<const Overview> cached_;  // GUARDED_BY(mu_)
  int64_t cached_at_mono_ms_ = 0;           // GUARDED_BY(mu_)
};

}  // namespace sluice
