#include "ingest/ingest_service.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>

#include "common/http_status.h"
#include "common/strings.h"
#include "http/http_util.h"
#include "ingest/formats/gzip.h"
#include "ingest/group_commit.h"

namespace sluice {
namespace {

// How often the cached queue depth (for the high-water check) is refreshed.
constexpr int64_t kDepthRefreshMs = 200;
// Longest Origin / Access-Control-Request-Headers value echoed back.
constexpr size_t kMaxCorsValue = 1024;

// A refused request: the status to answer and the `reason` label of
// sluice_ingest_rejected_total.
struct Refusal {
  Status status;
  const char* reason;
};

HttpResponse NotFound() {
  HttpResponse r;
  r.status = HttpStatusFor(Code::kNotFound);
  r.body = JsonErrorBody("not found");
  return r;
}

}  // namespace

struct IngestService::Impl {
  Impl(Store* s, IngestOptions l, AuthOptions a, Metrics* m, std::vector<FormatPtr> f,
       std::function<void()> on_commit, GroupCommitter::Committed on_committed, Clock* c)
      : store(s),
        limits(std::move(l)),
        auth(std::move(a)),
        metrics(m),
        clock(c),
        formats(std::move(f)),
        committer(s,
                  GroupCommitOptions{
                      .max_group_events = std::max(1, limits.group_max_events),
                      .max_queued_events = std::max<int64_t>(int64_t{10} * limits.group_max_events,
                                                             10 * limits.max_events),
                      .max_queued_bytes = std::max<int64_t>(256 << 20, 8 * limits.max_body_bytes),
                  },
                  m, std::move(on_commit), std::move(on_committed), c),
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
  Clock* const clock;
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
    // Only "depth > slow_down" and "depth > high_water" are read, so the
    // depth must be exact above the lower bound and up to one past the upper
    // one: PollDepth's O(1) upper bound answers while the queue is below both
    // (the usual case), instead of Stats()'s count of every live row five
    // times a second; above, it counts at most max + 1 rows.
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    const int64_t top = std::clamp<int64_t>(std::max(limits.slow_down, limits.high_water), 0, kMax - 1);
    const int64_t limit = top + 1;
    const int64_t exact_above = std::clamp<int64_t>(std::min(limits.slow_down, limits.high_water), 0, top);
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      lock.unlock();
      auto polled = store->PollDepth(exact_above, limit);
      if (polled.ok()) {
        const int64_t d = *polled;
        depth.store(d);
        committer.SetSlowDown(d > limits.slow_down);
      }
      lock.lock();
      clock->WaitFor(lock, cv, kDepthRefreshMs, [this] { return stopping; });
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

  // ---- the request, step by step (Handle at the end) ----

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
  void Preflight(const HttpRequest& http, const Responder& respond) const {
    bool served = false;
    for (const auto& f : formats) {
      served = served || f->Matches("POST", http.path) || f->Matches("GET", http.path);
    }
    if (!served) return respond(NotFound());
    HttpResponse r;
    r.status = kHttpNoContent;
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

  // The format that owns the route, nullptr for none.
  const Format* Route(const HttpRequest& http) const {
    for (const auto& f : formats) {
      if (f->Matches(http.method, http.path)) return f.get();
    }
    return nullptr;
  }

  // The body as the format reads it: gunzipped or inflated per
  // Content-Encoding into `*storage`, the decompressed size bounded as well
  // as the wire size.
  std::optional<Refusal> Inflate(const HttpRequest& http, std::string* storage,
                                 std::string_view* body) const {
    *body = http.body;
    const std::string encoding = ToLower(Trim(http.Header("content-encoding")));
    if (encoding.empty() || encoding == "identity") return std::nullopt;
    Compression kind;
    if (encoding == "gzip" || encoding == "x-gzip") {
      kind = Compression::kGzip;
    } else if (encoding == "deflate") {
      kind = Compression::kDeflate;
    } else {
      return Refusal{Status::InvalidArgument("unsupported Content-Encoding '" + encoding + "'"),
                     "encoding"};
    }
    auto out = Decompress(http.body, kind, limits.max_decompressed_bytes);
    if (!out.ok()) {
      return Refusal{out.status(),
                     out.status().code() == Code::kTooLarge ? "too_large" : "encoding"};
    }
    *storage = std::move(out).value();
    *body = *storage;
    return std::nullopt;
  }

  // The project of the first key the request carries — the one the format
  // found in the body, else the Basic user, else the Bearer token; "default"
  // without auth. Every configured key is compared (constant time).
  Result<std::string> Authenticate(std::string_view format_key,
                                   const HttpCredentials& creds) const {
    if (!auth.enabled()) return std::string("default");
    std::string_view key = format_key;
    if (key.empty()) key = creds.basic_user;
    if (key.empty()) key = creds.bearer;
    if (key.empty()) return Status::Unauthorized("a write key is required");
    const std::string* found = nullptr;
    for (const auto& [k, project] : auth.write_keys) {
      if (ConstantTimeEquals(k, key) && found == nullptr) found = &project;
    }
    if (found == nullptr) return Status::Unauthorized("unknown write key");
    return *found;
  }

  std::optional<Refusal> CheckBackpressure() const {
    if (depth.load() <= limits.high_water) return std::nullopt;
    return Refusal{Status::Busy("queue above its high-water mark (" +
                                std::to_string(limits.high_water) + " events); retry later"),
                   "high_water"};
  }

  // The queue rows of the decoded events, stamped with project and receive
  // time; TooLarge (with the index in `outcome`) for a stored body over
  // max_event_bytes.
  std::optional<Refusal> ToRows(std::vector<Event>* events, const std::string& project,
                                IngestOutcome* outcome, std::vector<NewEvent>* rows) const {
    rows->reserve(events->size());
    for (size_t i = 0; i < events->size(); ++i) {
      Event& ev = (*events)[i];
      ev.project = project;
      ev.received_ms = outcome->now_ms;
      NewEvent row{project, std::move(ev.insert_id), ToBody(ev)};
      if (static_cast<int64_t>(row.body.size()) > limits.max_event_bytes) {
        outcome->index = static_cast<int32_t>(i);
        return Refusal{
            Status::TooLarge("event over " + std::to_string(limits.max_event_bytes) + " bytes"),
            "too_large"};
      }
      rows->push_back(std::move(row));
    }
    return std::nullopt;
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

  // Answers `outcome` failed with `status`; Retry-After when the code asks to
  // come back later.
  void AnswerFailure(const Format& format, Status status, IngestOutcome* outcome,
                     const Responder& respond) const {
    outcome->status = std::move(status);
    if (HttpRetryLater(outcome->status.code())) {
      outcome->retry_after_s = std::max(1, limits.retry_after_s);
    }
    Answer(format, *outcome, respond);
  }

  void Refuse(const Format& format, Refusal refusal, IngestOutcome* outcome,
              const Responder& respond) {
    CountRejected(refusal.reason, outcome->events);
    AnswerFailure(format, std::move(refusal.status), outcome, respond);
  }

  // Queues `rows` for the group commit; the answer is written after the
  // group's transaction, on the committer thread.
  void Commit(const Format* format, IngestOutcome outcome, std::vector<NewEvent> rows,
              const Responder& respond) {
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
      // Nothing of the group is stored: the client must retry, so the answer
      // asks it to come back later (Busy or Unavailable, + Retry-After)
      // whatever the store said.
      CountRejected("commit_failed", outcome.events);
      AnswerFailure(*format,
                    HttpRetryLater(r.status().code())
                        ? r.status()
                        : Status::Unavailable("store commit failed: " + r.status().message()),
                    &outcome, respond);
    });
    if (!st.ok()) {
      // Busy (commit queue full: counted by the committer) or Unavailable (stopping).
      rejected->Inc(std::max<int64_t>(1, outcome.events));
      AnswerFailure(*format, std::move(st), &outcome, respond);
    }
  }

  // routing/CORS -> decompress -> credentials -> decode -> auth ->
  // backpressure -> rows -> group commit -> answer.
  void Handle(const HttpRequest& http, const Responder& respond_plain) {
    const Responder respond = WithCors(http, respond_plain);
    if (http.method == "OPTIONS") return Preflight(http, respond);
    const Format* format = Route(http);
    if (format == nullptr) return respond(NotFound());

    IngestOutcome outcome;
    outcome.now_ms = clock->WallMs();
    outcome.body_bytes = static_cast<int64_t>(http.body.size());
    std::string inflated;
    std::string_view body;
    if (auto refused = Inflate(http, &inflated, &body)) {
      return Refuse(*format, std::move(*refused), &outcome, respond);
    }
    const HttpCredentials creds = ParseAuthorization(http.Header("authorization"));

    IngestRequest req;
    req.method = http.method;
    req.path = http.path;
    req.query = http.query;
    req.content_type = http.Header("content-type");
    req.body = body;
    req.basic_user = creds.basic_user;
    req.bearer = creds.bearer;
    req.now_ms = outcome.now_ms;
    DecodeResult decoded = format->Decode(req, limits);
    outcome.events = static_cast<int64_t>(decoded.events.size());
    outcome.reply_context = std::move(decoded.reply_context);
    if (!decoded.status.ok()) {
      outcome.index = decoded.index;
      outcome.field = decoded.field;
      const char* reason = decoded.status.code() == Code::kTooLarge ? "too_large" : "invalid";
      return Refuse(*format, {std::move(decoded.status), reason}, &outcome, respond);
    }

    Result<std::string> project = Authenticate(decoded.write_key, creds);
    if (!project.ok()) {
      return Refuse(*format, {project.status(), "unauthorized"}, &outcome, respond);
    }
    if (auto refused = CheckBackpressure()) {
      return Refuse(*format, std::move(*refused), &outcome, respond);
    }
    std::vector<NewEvent> rows;
    if (auto refused = ToRows(&decoded.events, *project, &outcome, &rows)) {
      return Refuse(*format, std::move(*refused), &outcome, respond);
    }
    if (rows.empty()) return Answer(*format, outcome, respond);
    Commit(format, std::move(outcome), std::move(rows), respond);
  }
};

IngestService::IngestService(Store* store, IngestOptions limits, AuthOptions auth, Metrics* metrics,
                             std::vector<FormatPtr> formats, std::function<void()> on_commit,
                             GroupCommitter::Committed on_committed, Clock* clock)
    : impl_(std::make_unique<Impl>(store, std::move(limits), std::move(auth), metrics,
                                   std::move(formats), std::move(on_commit),
                                   std::move(on_committed), clock)) {}

IngestService::~IngestService() { impl_->Stop(); }

void IngestService::RegisterRoutes(HttpServer* server) {
  Impl* impl = impl_.get();
  server->Fallback(
      [impl](const HttpRequest& req, Responder respond) { impl->Handle(req, respond); });
}

void IngestService::Stop() { impl_->Stop(); }

}  // namespace sluice
