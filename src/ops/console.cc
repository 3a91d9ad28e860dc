#include "ops/console.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include "common/clock.h"
#include "common/event.h"
#include "common/http_status.h"
#include "common/time.h"
#include "http/http_util.h"
#include "ops/console_assets.h"

namespace sluice {
namespace {

// The page loads nothing but its own files and talks only to this server.
constexpr const char* kPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

std::string_view FindAsset(std::string_view name) {
  for (const ConsoleAsset& a : ConsoleAssets()) {
    if (a.name == name) return a.content;
  }
  return {};
}

void AddSecurityHeaders(HttpResponse* r) {
  r->headers.emplace_back("Content-Security-Policy", kPageCsp);
  r->headers.emplace_back("X-Content-Type-Options", "nosniff");
  r->headers.emplace_back("X-Frame-Options", "DENY");
  r->headers.emplace_back("Referrer-Policy", "no-referrer");
  r->headers.emplace_back("Cache-Control", "no-store");
}

void ReplaceAll(std::string* s, std::string_view from, std::string_view to) {
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size())) {
    s->replace(at, from.size(), to);
  }
}

}  // namespace

Console::Console(Store* store, Metrics* metrics, ConsoleOptions options, const AdminAuth* auth,
                 EventTail* tail, std::vector<ConsumerSpec> local_consumers,
                 int64_t alive_within_ms, std::string replica_id)
    : store_(store),
      metrics_(metrics),
      options_(std::move(options)),
      auth_(auth),
      tail_(tail),
      local_consumers_(std::move(local_consumers)),
      replica_id_(std::move(replica_id)) {
  overview_options_.alive_within_ms = alive_within_ms;
  overview_options_.delay_warning_ms = options_.delay_warning_ms;
  overview_options_.scan.max_live = std::max<int64_t>(1, options_.backlog_scan_events);
  overview_options_.scan.max_dead = std::max<int64_t>(1, options_.dead_scan_events);
  overview_options_.scan.samples = std::max<int64_t>(1, options_.backlog_samples);
  scan_seconds_ = &metrics_->GetHistogram(
      "sluice_console_overview_seconds",
      "Time to collect one console overview (bounded backlog scan + replicas)");
  const char* rej_help = "Ops/admin/read API requests refused, by reason";
  bad_request_ = &metrics_->GetCounter("sluice_ops_rejected_total", rej_help,
                                       Labels({{"reason", "bad_request"}}));
  store_errors_ = &metrics_->GetCounter("sluice_ops_rejected_total", rej_help,
                                        Labels({{"reason", "store_error"}}));
  metrics_->AddCollector([this] { RefreshGauges(); });
}

std::vector<OpsRoute> Console::Routes() {
  auto sync = [this](HttpResponse (Console::*fn)(const HttpRequest&)) -> Handler {
    return [this, fn](const HttpRequest& req, Responder respond) { respond((this->*fn)(req)); };
  };
  if (!options_.enabled) return {};
  return {
      {"GET", "/console", sync(&Console::Page)},
      {"GET", "/console/*", sync(&Console::Page)},
      {"GET", "/console/session", sync(&Console::Session)},
      {"POST", "/console/login", sync(&Console::Login)},
      {"POST", "/console/logout", sync(&Console::Logout)},
      {"GET", "/admin/overview", sync(&Console::AdminOverview)},
      {"GET", "/admin/tail", sync(&Console::AdminTail)},
  };
}

HttpResponse Console::Page(const HttpRequest& req) {
  std::string_view name = req.path;
  if (name == "/console" || name == "/console/") {
    name = "index.html";
  } else {
    name.remove_prefix(std::string_view("/console/").size());
  }
  const std::string_view content = FindAsset(name);
  if (content.empty() || name.find('/') != std::string_view::npos) {
    return JsonError(Code::kNotFound, "not found");
  }
  HttpResponse r;
  r.status = kHttpOk;
  if (name.ends_with(".html")) {
    r.content_type = "text/html; charset=utf-8";
    std::string page(content);
    ReplaceAll(&page, "{{REFRESH_MS}}", std::to_string(options_.refresh_ms));
    r.body = std::move(page);
  } else {
    r.content_type = name.ends_with(".js")    ? "text/javascript; charset=utf-8"
                     : name.ends_with(".css") ? "text/css; charset=utf-8"
                     : name.ends_with(".svg") ? "image/svg+xml"
                                              : "application/octet-stream";
    r.body = std::string(content);
  }
  AddSecurityHeaders(&r);
  return r;
}

HttpResponse Console::Session(const HttpRequest& req) {
  HttpResponse r = auth_->Session(req, WallNowMs());
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse Console::Login(const HttpRequest& req) { return auth_->Login(req, WallNowMs()); }

HttpResponse Console::Logout(const HttpRequest& req) {
  if (auto refused = auth_->Check(req, /*write=*/true)) return *refused;
  return auth_->Logout(req);
}

Result<std::shared_ptr<const Overview>> Console::CurrentOverview() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Clock::Real().MonoMs();
  if (cached_ != nullptr && now - cached_at_mono_ms_ < options_.cache_ms) return cached_;
  const auto start = std::chrono::steady_clock::now();
  Result<Overview> o = CollectOverview(store_, local_consumers_, overview_options_);
  scan_seconds_->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (!o.ok()) return o.status();
  cached_ = std::make_shared<const Overview>(std::move(o).value());
  cached_at_mono_ms_ = Clock::Real().MonoMs();
  return cached_;
}

void Console::RefreshGauges() {
  Result<std::shared_ptr<const Overview>> o = CurrentOverview();
  if (!o.ok()) return;  // sluice_store_up (OpsService) reports the store being down
  for (const ConsumerBacklog& c : (*o)->consumers) {
    const std::string labels = Labels({{"consumer", c.spec.name}});
    metrics_
        ->GetGauge("sluice_consumer_backlog_events",
                   "Events a consumer has not processed yet (pending or leased, not dead); "
                   "estimated beyond console.backlog_scan_events",
                   labels)
        .Set(c.backlog);
    metrics_
        ->GetGauge("sluice_consumer_oldest_age_seconds",
                   "Age of the oldest event a consumer has not processed, store clock; 0 when "
                   "none among the scanned head of the queue",
                   labels)
        .Set(std::max<int64_t>(0, c.oldest_age_ms) / 1000);
  }
}

HttpResponse Console::AdminOverview(const HttpRequest& req) {
  if (auto refused = auth_->Check(req, /*write=*/false)) return *refused;
  Result<std::shared_ptr<const Overview>> o = CurrentOverview();
  if (!o.ok()) {
    store_errors_->Inc();
    return StatusError(o.status());
  }
  std::string body = RenderOverviewJson(**o);
  // Which replica answered (the live tail is this replica's).
  body.pop_back();
  body += ",\"served_by\":";
  AppendJsonString(replica_id_, &body);
  body += ",\"refresh_ms\":" + std::to_string(options_.refresh_ms) + "}";
  HttpResponse r = JsonResponse(kHttpOk, std::move(body));
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

HttpResponse Console::AdminTail(const HttpRequest& req) {
  if (auto refused = auth_->Check(req, /*write=*/false)) return *refused;
  if (tail_ == nullptr) return JsonError(Code::kNotFound, "the live tail is off on this replica");
  TailFilter filter;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"project", &filter.project},
                          {"event", &filter.event},
                          {"user", &filter.user}}) {
    std::optional<std::string> v = QueryValue(req.query, key);
    if (!v) continue;
    if (v->size() > kMaxTailFilterBytes) {
      bad_request_->Inc();
      return JsonError(Code::kInvalidArgument, std::string(key) + ": at most " +
                                std::to_string(kMaxTailFilterBytes) + " bytes");
    }
    *out = std::move(*v);
  }
  int64_t after = 0;
  std::string_view last = req.Header("last-event-id");
  std::optional<std::string> after_q = QueryValue(req.query, "after");
  if (last.empty() && after_q) last = *after_q;
  if (!last.empty()) {
    const auto [ptr, ec] = std::from_chars(last.data(), last.data() + last.size(), after);
    if (ec != std::errc() || ptr != last.data() + last.size() || after < 0) {
      bad_request_->Inc();
      return JsonError(Code::kInvalidArgument, "Last-Event-ID / after: expected a non-negative integer");
    }
  }
  return tail_->Open(filter, after);
}

}  // namespace sluice
