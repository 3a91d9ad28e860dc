#include "ops/event_tail.h"

#include <algorithm>
#include <chrono>

#include "common/clock.h"
#include "common/event.h"
#include "common/http_status.h"
#include "common/time.h"
#include "http/http_util.h"

namespace sluice {

struct EventTail::Entry {
  int64_t id = 0;
  int64_t at_ms = 0;  // when this replica committed it (wall clock)
  std::string project;
  std::string insert_id;
  std::string body;  // as stored, or its first max_body_bytes when `truncated`
  bool truncated = false;
  int64_t duplicates_in_request = 0;
  // Filled on first use. Touched by the pump thread only (or at Publish,
  // before the entry is shared, for truncated bodies).
  bool parsed = false;
  std::string event;
  std::string user_id;
  std::string anonymous_id;

  int64_t bytes() const {
    return static_cast<int64_t>(body.size() + project.size() + insert_id.size() + event.size() +
                                user_id.size() + anonymous_id.size() + 64);
  }
  void Parse() {
    if (parsed) return;
    parsed = true;
    Event e;
    if (ParseBody(body, &e).ok()) {
      event = std::move(e.event);
      user_id = std::move(e.user_id);
      anonymous_id = std::move(e.anonymous_id);
    }
  }
};

struct EventTail::Stream {
  explicit Stream(std::shared_ptr<std::atomic<int>> w) : watchers(std::move(w)) {}
  ~Stream() { watchers->fetch_sub(1); }

  const std::shared_ptr<std::atomic<int>> watchers;
  TailFilter filter;
  int64_t cursor = 0;  // the last event id considered
  ResponseStreamPtr sink;  // set once the server started the response
  double tokens = 0;
  int64_t last_refill_mono_ms = 0;
  int64_t last_write_mono_ms = 0;
  int64_t dropped = 0;  // not reported yet
};

namespace {

bool Matches(const TailFilter& f, const std::string& project, const std::string& event,
             const std::string& user_id, const std::string& anonymous_id) {
  if (!f.project.empty() && f.project != project) return false;
  if (!f.event.empty() && f.event != event) return false;
  if (!f.user.empty() && f.user != user_id && f.user != anonymous_id) return false;
  return true;
}

}  // namespace

EventTail::EventTail(TailOptions options, std::string replica_id, Metrics* metrics)
    : options_(options), replica_id_(std::move(replica_id)) {
  const char* help = "Live-tail events not sent to a stream, by reason";
  dropped_rate_ =
      &metrics->GetCounter("sluice_tail_dropped_total", help, Labels({{"reason", "rate"}}));
  dropped_ring_ =
      &metrics->GetCounter("sluice_tail_dropped_total", help, Labels({{"reason", "ring"}}));
  refused_streams_ = &metrics->GetCounter("sluice_ops_rejected_total",
                                          "Ops/admin/read API requests refused, by reason",
                                          Labels({{"reason", "tail_streams"}}));
  published_ = &metrics->GetCounter("sluice_tail_events_total",
                                    "Committed events copied into the live-tail ring");
  pump_ = std::thread([this] { PumpMain(); });
}

EventTail::~EventTail() { Stop(); }

void EventTail::Stop() {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !pump_.joinable()) return;
    stopping_ = true;
    streams.swap(streams_);
    ring_.clear();
    ring_bytes_ = 0;
  }
  cv_.notify_all();
  if (pump_.joinable()) pump_.join();
  for (auto& s : streams) {
    if (s->sink) s->sink->End();
  }
}

void EventTail::Publish(std::span<const EnqueueBatch> batches,
                        std::span<const EnqueueResult> results) {
  if (watchers_->load(std::memory_order_relaxed) == 0) return;
  size_t total = 0;
  for (const EnqueueBatch& b : batches) total += b.events.size();
  // Only the newest max_events can stay in the ring: copy no more than that.
  size_t skip = total > static_cast<size_t>(std::max(0, options_.max_events))
                    ? total - static_cast<size_t>(std::max(0, options_.max_events))
                    : 0;
  const int64_t now = WallNowMs();
  const size_t max_body = static_cast<size_t>(std::max(256, options_.max_body_bytes));
  std::vector<std::shared_ptr<Entry>> fresh;
  fresh.reserve(std::min(total, static_cast<size_t>(std::max(0, options_.max_events))));
  for (size_t b = 0; b < batches.size(); ++b) {
    const int64_t dups = b < results.size() ? results[b].duplicates : 0;
    if (b < results.size() && results[b].accepted == 0 && dups > 0) {
      // Every event of this request was a duplicate: the store kept none.
      skip -= std::min(skip, batches[b].events.size());
      continue;
    }
    for (const NewEvent& e : batches[b].events) {
      if (skip > 0) {
        --skip;
        continue;
      }
      auto entry = std::make_shared<Entry>();
      entry->at_ms = now;
      entry->project = e.project;
      entry->insert_id = e.insert_id;
      entry->duplicates_in_request = dups;
      if (e.body.size() > max_body) {
        entry->body = e.body;
        entry->Parse();  // while the whole body is at hand
        entry->body.resize(max_body);
        entry->truncated = true;
      } else {
        entry->body = e.body;
      }
      fresh.push_back(std::move(entry));
    }
  }
  if (fresh.empty()) return;
  published_->Inc(static_cast<int64_t>(fresh.size()));
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  for (auto& entry : fresh) {
    entry->id = next_id_++;
    ring_bytes_ += entry->bytes();
    ring_.push_back(std::move(entry));
  }
  while (!ring_.empty() && (static_cast<int64_t>(ring_.size()) > options_.max_events ||
                            ring_bytes_ > options_.max_bytes)) {
    ring_bytes_ -= ring_.front()->bytes();
    ring_.pop_front();
  }
}

HttpResponse EventTail::Open(const TailFilter& filter, int64_t after) {
  if (watchers_->fetch_add(1) >= options_.max_streams) {
    watchers_->fetch_sub(1);
    refused_streams_->Inc();
    HttpResponse r = JsonError(Code::kBusy, "too many live-tail streams open on this replica (at most " +
                                        std::to_string(options_.max_streams) + ")");
    r.headers.emplace_back("Retry-After", "5");
    return r;
  }
  // The stream owns one watcher count from here on (released when it goes).
  auto stream = std::make_shared<Stream>(watchers_);
  stream->filter = filter;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t last = next_id_ - 1;
    stream->cursor = after > 0 && after <= last ? after : last;
  }
  HttpResponse r;
  r.status = kHttpOk;
  r.content_type = "text/event-stream; charset=utf-8";
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Accel-Buffering", "no");
  std::string hello = "retry: 2000\nevent: hello\ndata: {\"replica\":";
  AppendJsonString(replica_id_, &hello);
  hello += ",\"max_events_per_s\":" + std::to_string(options_.max_events_per_s) + "}\n\n";
  r.body = std::move(hello);
  r.stream = [this, stream](ResponseStreamPtr sink) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      sink->End();
      return;
    }
    stream->sink = std::move(sink);
    const int64_t now = Clock::Real().MonoMs();
    stream->last_refill_mono_ms = now;
    stream->last_write_mono_ms = now;
    stream->tokens = options_.max_events_per_s;
    streams_.push_back(stream);
  };
  return r;
}

void EventTail::PumpMain() {
  std::vector<std::shared_ptr<Stream>> streams;
  std::vector<std::shared_ptr<Entry>> entries;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(10, options_.tick_ms)),
                 [this] { return stopping_; });
    if (stopping_) break;
    if (streams_.empty()) continue;
    streams = streams_;
    entries.assign(ring_.begin(), ring_.end());
    const int64_t first_id = ring_.empty() ? next_id_ : ring_.front()->id;
    lock.unlock();
    const int64_t now = Clock::Real().MonoMs();
    std::vector<Stream*> gone;
    for (auto& s : streams) {
      if (!PumpOne(*s, entries, first_id, now)) gone.push_back(s.get());
    }
    streams.clear();
    entries.clear();
    lock.lock();
    if (!gone.empty()) {
      std::erase_if(streams_, [&](const std::shared_ptr<Stream>& s) {
        return std::find(gone.begin(), gone.end(), s.get()) != gone.end();
      });
    }
  }
}

bool EventTail::PumpOne(Stream& s, const std::vector<std::shared_ptr<Entry>>& entries,
                        int64_t first_id, int64_t now) {
  if (s.sink == nullptr) return true;
  if (s.sink->closed()) return false;
  const double rate = std::max(1, options_.max_events_per_s);
  s.tokens = std::min(rate, s.tokens + rate * static_cast<double>(now - s.last_refill_mono_ms) /
                                           1000.0);
  s.last_refill_mono_ms = now;
  if (s.cursor < first_id - 1) {
    // Fell out of the ring before we could send them.
    const int64_t lost = first_id - 1 - s.cursor;
    dropped_ring_->Inc(lost);
    s.dropped += lost;
    s.cursor = first_id - 1;
  }
  std::vector<Entry*> matching;
  int64_t newest = s.cursor;
  for (const auto& e : entries) {
    if (e->id <= s.cursor) continue;
    newest = std::max(newest, e->id);
    e->Parse();
    if (Matches(s.filter, e->project, e->event, e->user_id, e->anonymous_id)) {
      matching.push_back(e.get());
    }
  }
  // The newest `budget` matching events go out; older ones over the rate are skipped.
  const size_t budget = static_cast<size_t>(s.tokens);
  size_t first = 0;
  if (matching.size() > budget) {
    first = matching.size() - budget;
    dropped_rate_->Inc(static_cast<int64_t>(first));
    s.dropped += static_cast<int64_t>(first);
  }
  std::string chunk;
  if (s.dropped > 0) {
    chunk += "event: dropped\ndata: {\"dropped\":" + std::to_string(s.dropped) + "}\n\n";
  }
  for (size_t i = first; i < matching.size(); ++i) {
    const Entry& e = *matching[i];
    chunk += "id: " + std::to_string(e.id) + "\ndata: {\"id\":" + std::to_string(e.id) +
             ",\"at_ms\":" + std::to_string(e.at_ms) + ",\"replica\":";
    AppendJsonString(replica_id_, &chunk);
    chunk += ",\"project\":";
    AppendJsonString(e.project, &chunk);
    chunk += ",\"insert_id\":";
    AppendJsonString(e.insert_id, &chunk);
    chunk += ",\"event\":";
    AppendJsonString(e.event, &chunk);
    chunk += ",\"user_id\":";
    AppendJsonString(e.user_id, &chunk);
    chunk += ",\"anonymous_id\":";
    AppendJsonString(e.anonymous_id, &chunk);
    chunk += ",\"duplicates_in_request\":" + std::to_string(e.duplicates_in_request);
    if (e.truncated) {
      // The cut body is no longer JSON: send it as a string.
      chunk += ",\"truncated\":true,\"body_text\":";
      AppendJsonString(e.body, &chunk);
    } else {
      // A stored body is minified JSON (no raw newline): one data line.
      chunk += ",\"truncated\":false,\"body\":";
      chunk += e.body.empty() ? "null" : e.body;
    }
    chunk += "}\n\n";
  }
  if (chunk.empty() && now - s.last_write_mono_ms >= options_.keepalive_ms) {
    chunk = ": keepalive\n\n";
  }
  if (chunk.empty()) {
    s.cursor = newest;
    return true;
  }
  switch (s.sink->Write(std::move(chunk))) {
    case ResponseStream::WriteResult::kQueued:
      s.cursor = newest;
      s.tokens -= static_cast<double>(matching.size() - first);
      s.dropped = 0;
      s.last_write_mono_ms = now;
      return true;
    case ResponseStream::WriteResult::kBusy:
      // The client reads slowly: keep the cursor, try again next tick (what
      // falls out of the ring meanwhile is counted as dropped).
      return true;
    case ResponseStream::WriteResult::kClosed:
      return false;
  }
  return true;
}

}  // namespace sluice
