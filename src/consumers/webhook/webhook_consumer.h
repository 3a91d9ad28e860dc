// WebhookConsumer (`type = "webhook"`): POSTs events to a URL, one request per
// event (mode = "per_event", default) or per delivered batch ("per_batch"),
// with a JSON body rendered from a small template (Discord-compatible
// `{"content": "..."}` by default) and an `Idempotency-Key` header:
//   per event: sha256_hex(project "\0" insert_id)
//   per batch: sha256_hex of the sorted "project\0insert_id\n" lines
// so a retried request carries the same key. Events acknowledged (2xx) by the
// receiver are remembered (bounded) and not sent again when a partly failed
// batch is redelivered to this process.
//
// 429 (and 503 with Retry-After): Retry-After is honoured — Deliver returns
// kUnavailable naming the wait, and until it has passed further Deliver calls
// return kUnavailable without contacting the receiver. 5xx, 408 and transport
// errors are kUnavailable, other non-2xx answers kIoError.
//
// Templates: {{name}} is replaced by the value, JSON-escaped without quotes
// (so it belongs inside a JSON string). Per event: event, user_id,
// anonymous_id, distinct_id, project, insert_id, type, seq, time (ISO-8601),
// properties (the properties object as text); {{json}} is the whole event as a
// raw JSON object (not escaped). Per batch (batch_template): count, first_seq,
// last_seq, lines (line_template per event joined by "\n", at most max_lines),
// events (the raw JSON objects joined by ",": `{"events":[{{events}}]}`).
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "http_client/http_client.h"

namespace sluice {

struct WebhookOptions {
  std::string url;         // REQUIRES: http:// or https://
  bool per_batch = false;  // mode: false = one POST per event
  std::string template_text = R"({"content":"{{event}} from {{distinct_id}} in {{project}}"})";
  std::string batch_template = R"({"content":"{{count}} events\n{{lines}}"})";
  std::string line_template = "{{event}} from {{distinct_id}} in {{project}}";
  int32_t max_lines = 20;  // {{lines}} shows at most this many, then "... and N more"
  std::string idempotency_header = "Idempotency-Key";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (`headers.NAME`)
  int64_t default_retry_after_ms = 1000;  // 429 without (valid) Retry-After; default 1 s
  int64_t max_retry_after_ms = 300000;    // Retry-After is capped to this; default 5 min
  int32_t remember_delivered = 100000;    // acknowledged keys kept to skip on redelivery
  HttpClientOptions http;                 // timeouts (default 10 s total), TLS
};

// Parses `[[consumer]] type = "webhook"` options: url, mode, template,
// batch_template, line_template, max_lines, idempotency_header, headers.NAME,
// timeout, connect_timeout, verify_tls, max_retry_after.
Result<WebhookOptions> ParseWebhookOptions(const ConsumerConfig& config);

// Registry factory.
Result<ConsumerPtr> MakeWebhookConsumer(const ConsumerConfig& config, uint64_t bit,
                                        Metrics* metrics);

class WebhookConsumer final : public Consumer {
 public:
  // `metrics` may be null. Templates must be valid (see ValidateTemplates).
  // `clock` (REQUIRES: outlives the consumer) times the Retry-After window and
  // the requests' deadlines.
  WebhookConsumer(std::string name, uint64_t bit, WebhookOptions options, Metrics* metrics,
                  Clock* clock = &Clock::Real());

  bool in_store() const override { return false; }
  Status Deliver(const Delivery& delivery) override;
  // Time left of the last Retry-After (0 when none is pending).
  int64_t RetryAfterMs() const override;

  // InvalidArgument naming the first unknown {{placeholder}}.
  static Status ValidateTemplates(const WebhookOptions& options);
  // The Idempotency-Key of one event / of a batch.
  static std::string EventKey(const ClaimedEvent& row);
  static std::string BatchKey(std::span<const DecodedEvent> events);

 private:
  Status Post(const std::string& body, const std::string& key, int64_t deadline);
  bool Delivered(const std::string& key);
  void Remember(const std::string& key);

  // Constant after construction.
  const WebhookOptions options_;
  Clock* const clock_;
  HttpClient http_;
  std::unique_ptr<Metrics> own_metrics_;
  Counter* posted_ = nullptr;
  Counter* rate_limited_ = nullptr;
  Counter* failed_ = nullptr;
  Counter* skipped_ = nullptr;

  // Retry-After: no request before this clock_->MonoMs().
  std::atomic<int64_t> not_before_mono_ms_{0};

  std::mutex mu_;
  std::unordered_set<std::string> delivered_;  // GUARDED_BY(mu_)
  std::deque<std::string> delivered_order_;    // GUARDED_BY(mu_), FIFO eviction
};

}  // namespace sluice
