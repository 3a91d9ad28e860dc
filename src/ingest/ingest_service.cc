#include "ingest/ingest_service.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/time.h"
#include "ingest/group_commit.h"
#include "ingest/formats/gzip.h"

namespace sluice {
namespace {

// How often the cached queue depth (for the high-water check) is refreshed.
constexpr int64_t kDepthRefreshMs = 200;
// Longest Origin / Access-Control-Request-Headers value echoed back.
constexpr size_t kMaxCorsValue = 1024;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Standard base64 (padding optional); nullopt on anything else.
std::optional<std::string> Base64Decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// Compares without an early exit, so response time does not reveal how much
// of a guessed key was right.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

struct IngestService::Impl {
  Impl(Store* s, IngestOptions l, AuthOptions a, Metrics* m, std::vector<FormatPtr> f,
       std::function<void()> on_commit, GroupCommitter::Committed on_committed)
      : store(s),
        limits(std::move(l)),
        auth(std::move(a)),
        metrics(m),
        formats(std::move(f)),
        committer(s,
                  GroupCommitOptions{
                      .max_group_events = std::max(1, limits.group_max_events),
                      .max_queued_events = std::max<int64_t>(int64_t{10} * limits.group_max_events,
                                                             10 * limits.max_events),
                      .max_queued_bytes = std::max<int64_t>(256 << 20, 8 * limits.max_body_bytes),
                  },
                  m, std::move(on_commit), std::move(on_committed)),
        accepted(&m->GetCounter("sluice_ingest_events_total", "Ingested events by result.",
                                Labels({{"result", "accepted"}}))),
        duplicates(&m->GetCounter("sluice_ingest_events_total", "Ingested events by result.",
                                  Labels({{"result", "duplicate"}}))),
        rejected(&m->GetCounter("sluice_ingest_events_total", "Ingested events by result.",
                                Labels({{"result", "rejected"}}))) {
    depth_thread = std::thread([this] { RefreshDepthLoop(); });
  }

  // Constant after construction.
  Store* const store;
  const IngestOptions limits;
  const AuthOptions auth;
  Metrics* const metrics;
  const std::vector<FormatPtr> formats;
  GroupCommitter committer;
  Counter* const accepted;
  Counter* const duplicates;
  Counter* const rejected;

  // Pending + leased events, refreshed by depth_thread; -1 until first known.
  std::atomic<int64_t> depth{-1};
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;  // GUARDED_BY(mu)
  std::thread depth_thread;

  void CountRejected(const char* reason, int64_t events) {
    metrics
        ->GetCounter("sluice_ingest_rejected_total", "Ingest requests refused, by reason.",
                     Labels({{"reason", reason}}))
        .Inc();
    // A request rejected before its events were known counts as one event.
    rejected->Inc(std::max<int64_t>(1, events));
  }

  void RefreshDepthLoop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      lock.unlock();
      auto stats = store->Stats();
      if (stats.ok()) {
        const int64_t d = stats->pending + stats->leased;
        depth.store(d);
        committer.SetSlowDown(d > limits.slow_down);
      }
      lock.lock();
      cv.wait_for(lock, std::chrono::milliseconds(kDepthRefreshMs), [this] { return stopping; });
    }
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    cv.notify_all();
    if (depth_thread.joinable()) depth_thread.join();
    committer.Stop();
  }

  // Write key -> project. Every configured key is compared (constant time).
  std::optional<std::string> ProjectFor(std::string_view key) const {
    if (key.empty()) return std::nullopt;
    const std::string* found = nullptr;
    for (const auto& [k, project] : auth.write_keys) {
      if (ConstantTimeEquals(k, key) && found == nullptr) found = &project;
    }
    if (found == nullptr) return std::nullopt;
    return *found;
  }

  static void Answer(const Format& format, const IngestOutcome& outcome, const Responder& respond) {
    IngestReply reply = format.Reply(outcome);
    HttpResponse r;
    r.status = reply.status;
    r.content_type = std::move(reply.content_type);
    r.body = std::move(reply.body);
    if (reply.retry_after_s > 0) {
      r.headers.emplace_back("Retry-After", std::to_string(reply.retry_after_s));
    }
    respond(std::move(r));
  }

  // Browser SDKs (posthog-js, the Amplitude and Segment browser libraries)
  // post cross-origin. The write key, not the origin, admits events, so every
  // origin is allowed: answers to a request with an Origin echo it.
  static Responder WithCors(const HttpRequest& http, const Responder& respond) {
    const std::string_view origin = http.Header("origin");
    if (origin.empty() || origin.size() > kMaxCorsValue) return respond;
    return [respond, origin = std::string(origin)](HttpResponse r) {
      r.headers.emplace_back("Access-Control-Allow-Origin", origin);
      r.headers.emplace_back("Vary", "Origin");
      respond(std::move(r));
    };
  }

  // The preflight of a cross-origin POST: 204 on any path a format serves.
  void Preflight(const HttpRequest& http, const Responder& respond) {
    bool served = false;
    for (const auto& f : formats) {
      served = served || f->Matches("POST", http.path) || f->Matches("GET", http.path);
    }
    HttpResponse r;
    if (!served) {
      r.status = 404;
      r.body = "{\"error\":\"not found\"}";
      respond(std::move(r));
      return;
    }
    r.status = 204;
    r.content_type = "text/plain";
    r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    // Echo the headers asked for when they look like a header-name list;
    // else the ones the SDKs send.
    std::string_view asked = http.Header("access-control-request-headers");
    const bool plain = asked.size() <= kMaxCorsValue &&
                       std::all_of(asked.begin(), asked.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                c == '_' || c == ',' || c == ' ';
                       });
    r.headers.emplace_back("Access-Control-Allow-Headers",
                           !asked.empty() && plain
                               ? std::string(asked)
                               : "Content-Type, Content-Encoding, Authorization");
    r.headers.emplace_back("Access-Control-Max-Age", "86400");
    respond(std::move(r));
  }

  void Handle(const HttpRequest& http, const Responder& respond_plain) {
    const Responder respond = WithCors(http, respond_plain);
    if (http.method == "OPTIONS") return Preflight(http, respond);
    const Format* format = nullptr;
    for (const auto& f : formats) {
      if (f->Matches(http.method, http.path)) {
        format = f.get();
        break;
      }
    }
    if (format == nullptr) {
      HttpResponse r;
      r.status = 404;
      r.body = "{\"error\":\"not found\"}";
      respond(std::move(r));
      return;
    }

    IngestOutcome outcome;
    outcome.now_ms = WallNowMs();
    outcome.body_bytes = static_cast<int64_t>(http.body.size());
    auto fail = [&](Status st, const char* reason) {
      outcome.status = std::move(st);
      if (outcome.status.code() == Code::kBusy || outcome.status.code() == Code::kUnavailable) {
        outcome.retry_after_s = std::max(1, limits.retry_after_s);
      }
      CountRejected(reason, outcome.events);
      Answer(*format, outcome, respond);
    };

    // Bounded gunzip: the decompressed size is limited as well as the wire size.
    std::string inflated;
    std::string_view body = http.body;
    const std::string encoding = Lower(Trim(http.Header("content-encoding")));
    if (!encoding.empty() && encoding != "identity") {
      Compression kind;
      if (encoding == "gzip" || encoding == "x-gzip") {
        kind = Compression::kGzip;
      } else if (encoding == "deflate") {
        kind = Compression::kDeflate;
      } else {
        return fail(Status::InvalidArgument("unsupported Content-Encoding '" + encoding + "'"),
                    "encoding");
      }
      auto out = Decompress(http.body, kind, limits.max_decompressed_bytes);
      if (!out.ok()) {
        return fail(out.status(),
                    out.status().code() == Code::kTooLarge ? "too_large" : "encoding");
      }
      inflated = std::move(out).value();
      body = inflated;
    }

    // Credentials: Basic user (the SDK convention: key as user, empty password) or Bearer.
    std::string basic_user;
    std::string_view bearer;
    const std::string_view authz = Trim(http.Header("authorization"));
    if (authz.size() > 6 && Lower(authz.substr(0, 6)) == "basic ") {
      if (auto decoded = Base64Decode(Trim(authz.substr(6)))) {
        basic_user = decoded->substr(0, decoded->find(':'));
      }
    } else if (authz.size() > 7 && Lower(authz.substr(0, 7)) == "bearer ") {
      bearer = Trim(authz.substr(7));
    }

    IngestRequest req;
    req.method = http.method;
    req.path = http.path;
    req.query = http.query;
    req.content_type = http.Header("content-type");
    req.body = body;
    req.basic_user = basic_user;
    req.bearer = bearer;
    req.now_ms = outcome.now_ms;
    DecodeResult decoded = format->Decode(req, limits);
    outcome.events = static_cast<int64_t>(decoded.events.size());
    outcome.reply_context = std::move(decoded.reply_context);
    if (!decoded.status.ok()) {
      outcome.index = decoded.index;
      outcome.field = decoded.field;
      return fail(std::move(decoded.status),
                  decoded.status.code() == Code::kTooLarge ? "too_large" : "invalid");
    }

    std::string project = "default";
    if (auth.enabled()) {
      std::string_view key = decoded.write_key;
      if (key.empty()) key = basic_user;
      if (key.empty()) key = bearer;
      auto p = ProjectFor(key);
      if (!p) {
        return fail(
            Status::Unauthorized(key.empty() ? "a write key is required" : "unknown write key"),
            "unauthorized");
      }
      project = std::move(*p);
    }

    const int64_t d = depth.load();
    if (d > limits.high_water) {
      return fail(Status::Busy("queue above its high-water mark (" +
                               std::to_string(limits.high_water) + " events); retry later"),
                  "high_water");
    }

    std::vector<NewEvent> rows;
    rows.reserve(decoded.events.size());
    for (size_t i = 0; i < decoded.events.size(); ++i) {
      Event& ev = decoded.events[i];
      ev.project = project;
      ev.received_ms = outcome.now_ms;
      NewEvent row{project, std::move(ev.insert_id), ToBody(ev)};
      if (static_cast<int64_t>(row.body.size()) > limits.max_event_bytes) {
        outcome.index = static_cast<int32_t>(i);
        return fail(
            Status::TooLarge("event over " + std::to_string(limits.max_event_bytes) + " bytes"),
            "too_large");
      }
      rows.push_back(std::move(row));
    }

    if (rows.empty()) {
      Answer(*format, outcome, respond);
      return;
    }
    Status st = committer.Submit(std::move(rows), [this, format, outcome,
                                                   respond](Result<EnqueueResult> r) mutable {
      if (r.ok()) {
        outcome.accepted = r->accepted;
        outcome.duplicates = r->duplicates;
        accepted->Inc(r->accepted);
        duplicates->Inc(r->duplicates);
        Answer(*format, outcome, respond);
        return;
      }
      // Nothing of the group is stored: the client must retry, so answer
      // 503 + Retry-After whatever the store said.
      outcome.status = r.status().code() == Code::kBusy || r.status().code() == Code::kUnavailable
                           ? r.status()
                           : Status::Unavailable("store commit failed: " + r.status().message());
      outcome.retry_after_s = std::max(1, limits.retry_after_s);
      CountRejected("commit_failed", outcome.events);
      Answer(*format, outcome, respond);
    });
    if (!st.ok()) {
      outcome.status = std::move(st);
      outcome.retry_after_s = std::max(1, limits.retry_after_s);
      rejected->Inc(std::max<int64_t>(1, outcome.events));
      Answer(*format, outcome, respond);
    }
  }
};

IngestService::IngestService(Store* store, IngestOptions limits, AuthOptions auth, Metrics* metrics,
                             std::vector<FormatPtr> formats, std::function<void()> on_commit,
                             GroupCommitter::Committed on_committed)
    : impl_(std::make_unique<Impl>(store, std::move(limits), std::move(auth), metrics,
                                   std::move(formats), std::move(on_commit),
                                   std::move(on_committed))) {}

IngestService::~IngestService() { impl_->Stop(); }

void IngestService::RegisterRoutes(HttpServer* server) {
  Impl* impl = impl_.get();
  server->Fallback(
      [impl](const HttpRequest& req, Responder respond) { impl->Handle(req, respond); });
}

void IngestService::Stop() { impl_->Stop(); }

}  // namespace sluice
