#include "consumers/webhook/webhook_consumer.h"

#include <algorithm>
#include <functional>
#include <optional>

#include "common/clock.h"
#include "common/event.h"
#include "common/time.h"
#include "consumers/api/option_reader.h"
#include "http_client/s3_client.h"

namespace sluice {
namespace {

constexpr const char* kEventVars[] = {"event",   "user_id",    "anonymous_id", "distinct_id",
                                      "project", "insert_id",  "type",         "seq",
                                      "time",    "properties", "json"};
constexpr const char* kBatchVars[] = {"count", "first_seq", "last_seq", "lines", "events"};

// JSON string content without the surrounding quotes.
std::string Escape(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out.substr(1, out.size() - 2);
}

using Lookup = std::function<std::optional<std::string>(std::string_view)>;

// Replaces each {{name}} by lookup(name); unknown names stay as written.
std::string Render(std::string_view tpl, const Lookup& lookup) {
  std::string out;
  out.reserve(tpl.size() + 64);
  size_t pos = 0;
  while (pos < tpl.size()) {
    const size_t open = tpl.find("{{", pos);
    if (open == std::string_view::npos) break;
    const size_t close = tpl.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    out.append(tpl.substr(pos, open - pos));
    std::string_view name = tpl.substr(open + 2, close - open - 2);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (std::optional<std::string> v = lookup(name)) {
      out.append(*v);
    } else {
      out.append(tpl.substr(open, close + 2 - open));
    }
    pos = close + 2;
  }
  out.append(tpl.substr(pos));
  return out;
}

// Names used in `tpl` that are not in `known`.
std::optional<std::string> UnknownVar(std::string_view tpl, std::span<const char* const> known) {
  std::optional<std::string> unknown;
  Render(tpl, [&](std::string_view name) -> std::optional<std::string> {
    for (const char* k : known) {
      if (name == k) return std::string();
    }
    if (!unknown) unknown = std::string(name);
    return std::string();
  });
  return unknown;
}

// The event as one raw JSON object: queue columns, then the stored body.
std::string EventJson(const ClaimedEvent& row) {
  std::string out = "{\"project\":";
  AppendJsonString(row.project, &out);
  out.append(",\"insert_id\":");
  AppendJsonString(row.insert_id, &out);
  out.append(",\"seq\":").append(std::to_string(row.seq));
  if (row.body.size() > 2) {
    out.push_back(',');
    out.append(std::string_view(row.body).substr(1));
  } else {
    out.push_back('}');
  }
  return out;
}

Lookup EventLookup(const ClaimedEvent& row, const Event& ev) {
  return [&row, &ev](std::string_view name) -> std::optional<std::string> {
    if (name == "event") return Escape(ev.event);
    if (name == "user_id") return Escape(ev.user_id);
    if (name == "anonymous_id") return Escape(ev.anonymous_id);
    if (name == "distinct_id") return Escape(ev.distinct_id());
    if (name == "project") return Escape(row.project);
    if (name == "insert_id") return Escape(row.insert_id);
    if (name == "type") return Escape(ev.type);
    if (name == "seq") return std::to_string(row.seq);
    if (name == "time") return FormatIso8601Ms(ev.time_ms);
    if (name == "properties") return Escape(ev.properties.empty() ? "{}" : ev.properties);
    if (name == "json") return EventJson(row);
    return std::nullopt;
  };
}

}  // namespace

Result<WebhookOptions> ParseWebhookOptions(const ConsumerConfig& config) {
  WebhookOptions o;
  o.http.timeout_ms = 10000;
  OptionReader r(config.options, "consumer " + config.name);
  r.String("url", &o.url);
  std::string mode = "per_event";
  r.String("mode", &mode);
  r.String("template", &o.template_text);
  r.String("batch_template", &o.batch_template);
  r.String("line_template", &o.line_template);
  int64_t max_lines = o.max_lines;
  r.Int("max_lines", &max_lines, 1, 10000);
  o.max_lines = static_cast<int32_t>(max_lines);
  r.String("idempotency_header", &o.idempotency_header);
  r.DurationMs("timeout", &o.http.timeout_ms);
  r.DurationMs("connect_timeout", &o.http.connect_timeout_ms);
  r.Bool("verify_tls", &o.http.verify_tls);
  r.DurationMs("max_retry_after", &o.max_retry_after_ms);
  for (const auto& [k, v] : config.options) {
    if (k.starts_with("headers.") && k.size() > 8) {
      std::string value;
      r.String(k, &value);
      const std::string name = k.substr(8);
      if (name.find_first_of(":\r\n ") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos) {
        return r.Error("header " + name + " is malformed");
      }
      o.headers.emplace_back(name, value);
    }
  }
  SLUICE_RETURN_IF_ERROR(r.Finish());
  if (!o.url.starts_with("http://") && !o.url.starts_with("https://")) {
    return r.Error("url is required and must start with http:// or https://");
  }
  if (mode != "per_event" && mode != "per_batch") {
    return r.Error("mode must be \"per_event\" or \"per_batch\"");
  }
  o.per_batch = mode == "per_batch";
  if (o.idempotency_header.find_first_of(":\r\n ") != std::string::npos) {
    return r.Error("idempotency_header is malformed");
  }
  Status st = WebhookConsumer::ValidateTemplates(o);
  if (!st.ok()) return r.Error(st.message());
  return o;
}

Result<ConsumerPtr> MakeWebhookConsumer(const ConsumerConfig& config, uint64_t bit,
                                        Metrics* metrics) {
  SLUICE_ASSIGN_OR_RETURN(WebhookOptions o, ParseWebhookOptions(config));
  return ConsumerPtr(std::make_unique<WebhookConsumer>(config.name, bit, std::move(o), metrics));
}

Status WebhookConsumer::ValidateTemplates(const WebhookOptions& o) {
  if (auto u = UnknownVar(o.template_text, kEventVars)) {
    return Status::InvalidArgument("template: unknown placeholder {{" + *u + "}}");
  }
  if (auto u = UnknownVar(o.line_template, kEventVars)) {
    return Status::InvalidArgument("line_template: unknown placeholder {{" + *u + "}}");
  }
  if (auto u = UnknownVar(o.batch_template, kBatchVars)) {
    return Status::InvalidArgument("batch_template: unknown placeholder {{" + *u + "}}");
  }
  return Status::Ok();
}

std::string WebhookConsumer::EventKey(const ClaimedEvent& row) {
  std::string s = row.project;
  s.push_back('\0');
  s.append(row.insert_id);
  return Sha256Hex(s);
}

std::string WebhookConsumer::BatchKey(std::span<const DecodedEvent> events) {
  std::vector<std::string> ids;
  ids.reserve(events.size());
  for (const DecodedEvent& e : events) {
    const ClaimedEvent* r = e.row;
    std::string s = r->project;
    s.push_back('\0');
    s.append(r->insert_id).push_back('\n');
    ids.push_back(std::move(s));
  }
  std::sort(ids.begin(), ids.end());
  std::string all;
  for (const std::string& s : ids) all.append(s);
  return Sha256Hex(all);
}

WebhookConsumer::WebhookConsumer(std::string name, uint64_t bit, WebhookOptions options,
                                 Metrics* metrics, Clock* clock)
    : Consumer(std::move(name), bit),
      options_(std::move(options)),
      clock_(clock),
      http_(options_.http, metrics, this->name(), clock) {
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<Metrics>();
    metrics = own_metrics_.get();
  }
  const std::string l = Labels({{"consumer", this->name()}});
  posted_ = &metrics->GetCounter("sluice_webhook_posts_total",
                                 "Webhook requests the receiver acknowledged (2xx)", l);
  rate_limited_ = &metrics->GetCounter("sluice_webhook_rate_limited_total",
                                       "Webhook answers 429 (Retry-After honoured)", l);
  failed_ = &metrics->GetCounter("sluice_webhook_failures_total",
                                 "Webhook requests that failed (transport or non-2xx)", l);
  skipped_ =
      &metrics->GetCounter("sluice_webhook_skipped_total",
                           "Redelivered webhook payloads not sent again (already acknowledged)", l);
}

bool WebhookConsumer::Delivered(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return delivered_.contains(key);
}

void WebhookConsumer::Remember(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (options_.remember_delivered <= 0 || !delivered_.insert(key).second) return;
  delivered_order_.push_back(key);
  while (delivered_order_.size() > static_cast<size_t>(options_.remember_delivered)) {
    delivered_.erase(delivered_order_.front());
    delivered_order_.pop_front();
  }
}

int64_t WebhookConsumer::RetryAfterMs() const {
  return std::max<int64_t>(0, not_before_mono_ms_.load() - clock_->MonoMs());
}

Status WebhookConsumer::Post(const std::string& body, const std::string& key, int64_t deadline) {
  const int64_t wait = not_before_mono_ms_.load() - clock_->MonoMs();
  if (wait > 0) {
    return Status::Unavailable("webhook " + name() + ": receiver asked to wait (Retry-After), " +
                               std::to_string(wait) + " ms left");
  }
  ClientRequest r;
  r.method = "POST";
  r.url = options_.url;
  r.body = body;
  r.headers.emplace_back("Content-Type", "application/json");
  r.headers.emplace_back(options_.idempotency_header, key);
  for (const auto& h : options_.headers) r.headers.push_back(h);
  r.deadline_mono_ms = deadline;
  Result<ClientResponse> resp = http_.Send(r);
  if (!resp.ok()) {
    failed_->Inc();
    return resp.status();
  }
  const int64_t code = resp->status;
  if (code >= 200 && code < 300) {
    posted_->Inc();
    return Status::Ok();
  }
  failed_->Inc();
  const std::string* ra = resp->Header("retry-after");
  if (code == 429 || (code == 503 && ra != nullptr)) {
    if (code == 429) rate_limited_->Inc();
    std::optional<int64_t> ms;
    if (ra != nullptr) ms = ParseRetryAfterMs(*ra, clock_->WallMs());
    const int64_t delay =
        std::min(ms.value_or(options_.default_retry_after_ms), options_.max_retry_after_ms);
    // Keep the later of concurrent answers' deadlines.
    const int64_t until = clock_->MonoMs() + delay;
    int64_t prev = not_before_mono_ms_.load();
    while (prev < until && !not_before_mono_ms_.compare_exchange_weak(prev, until)) {
    }
    return Status::Unavailable("webhook " + name() + ": HTTP " + std::to_string(code) +
                               ", retry after " + std::to_string(delay) + " ms");
  }
  return StatusFromHttp("webhook " + name(), *resp);
}

Status WebhookConsumer::Deliver(const Delivery& delivery) {
  if (delivery.events.empty()) return Status::Ok();
  if (!options_.per_batch) {
    for (const DecodedEvent& e : delivery.events) {
      const ClaimedEvent* row = e.row;
      const std::string key = EventKey(*row);
      if (Delivered(key)) {
        skipped_->Inc();
        continue;
      }
      if (e.event == nullptr) {
        return Status::Internal("webhook: event seq " + std::to_string(row->seq) +
                                ": body does not parse");
      }
      SLUICE_RETURN_IF_ERROR(Post(Render(options_.template_text, EventLookup(*row, *e.event)), key,
                                  delivery.deadline_mono_ms));
      Remember(key);
    }
    return Status::Ok();
  }
  const std::string key = BatchKey(delivery.events);
  if (Delivered(key)) {
    skipped_->Inc();
    return Status::Ok();
  }
  std::string lines;
  std::string events;
  int32_t shown = 0;
  for (const DecodedEvent& e : delivery.events) {
    const ClaimedEvent* row = e.row;
    if (e.event == nullptr) {
      return Status::Internal("webhook: event seq " + std::to_string(row->seq) +
                              ": body does not parse");
    }
    if (shown < options_.max_lines) {
      if (shown > 0) lines.append("\\n");
      lines.append(Render(options_.line_template, EventLookup(*row, *e.event)));
      ++shown;
    }
    if (!events.empty()) events.push_back(',');
    events.append(EventJson(*row));
  }
  const size_t n = delivery.events.size();
  if (n > static_cast<size_t>(shown)) {
    lines.append("\\n... and " + std::to_string(n - static_cast<size_t>(shown)) + " more");
  }
  const std::string body =
      Render(options_.batch_template, [&](std::string_view name) -> std::optional<std::string> {
        if (name == "count") return std::to_string(n);
        if (name == "first_seq") return std::to_string(delivery.events.front().row->seq);
        if (name == "last_seq") return std::to_string(delivery.events.back().row->seq);
        if (name == "lines") return lines;
        if (name == "events") return events;
        return std::nullopt;
      });
  SLUICE_RETURN_IF_ERROR(Post(body, key, delivery.deadline_mono_ms));
  Remember(key);
  return Status::Ok();
}

}  // namespace sluice
