// EventTail: the console's live tail — the events this replica's ingest
// committed, streamed to watchers as Server-Sent Events (GET /admin/tail).
//
// Ingest calls Publish after each group commit (on its committer thread,
// after the requests were answered). With nobody watching that is one atomic
// load; otherwise the group's newest `max_events` events are copied into a
// bounded ring (events and bytes; long bodies are cut). A pump thread reads
// the ring every `tick_ms`, applies each stream's filter (project, event
// name, user: exact matches) and writes at most `max_events_per_s` events per
// stream (the rest are skipped and reported in a "dropped" frame: a live tail
// shows the newest events, it does not fall behind). At most `max_streams`
// streams at once. Every limit has a rejection metric:
// sluice_tail_dropped_total{reason="rate"|"ring"|"busy"}, and
// sluice_ops_rejected_total{reason="tail_streams"}.
//
// What it shows: the events this replica accepted (the console connects to
// the replica that served it), each as stored (normalized body), whether or
// not the store kept it as a duplicate; a request that had duplicates says so
// ("duplicates_in_request"). Nothing is rendered as HTML by the page.
//
// Frames: "id: N\ndata: {json}\n\n" per event, "event: dropped\ndata:
// {"dropped":n}\n\n", ": keepalive\n\n". Reconnects (EventSource sends
// Last-Event-ID) resume after that id while it is still in the ring.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "http/http_server.h"
#include "queue/store.h"

namespace sluice {

struct TailOptions {
  int32_t max_events = 1000;           // ring capacity, events; default 1000
  int64_t max_bytes = 4 << 20;         // ring capacity, stored bytes; default 4 MiB
  int32_t max_body_bytes = 8192;       // a longer body is cut and sent as text; default 8 KiB
  int32_t max_streams = 8;             // concurrent tail streams; default 8
  int32_t max_events_per_s = 50;       // per stream; default 50
  int64_t keepalive_ms = 15000;        // a comment frame when idle this long; default 15 s
  int64_t tick_ms = 200;               // pump interval; default 200 ms
};

struct TailFilter {
  std::string project;  // "" = any
  std::string event;    // "" = any
  std::string user;     // matches user_id or anonymous_id; "" = any
};

class EventTail {
 public:
  EventTail(TailOptions options, std::string replica_id, Metrics* metrics);
  ~EventTail();  // Stop()

  EventTail(const EventTail&) = delete;
  EventTail& operator=(const EventTail&) = delete;

  // Ingest's hook (GroupCommitter::Committed). Cheap when nobody watches.
  void Publish(std::span<const EnqueueBatch> batches, std::span<const EnqueueResult> results);

  // The response of GET /admin/tail for `filter`, resuming after event id
  // `after` (0: only new events). 503 when max_streams are open.
  HttpResponse Open(const TailFilter& filter, int64_t after);

  // Ends every stream and stops the pump; Publish becomes a no-op.
  void Stop();

  int watchers() const { return watchers_->load(); }

 private:
  struct Entry;
  struct Stream;

  void PumpMain();
  // One pump round for `s` over `entries` (ids ascending). False: drop the stream.
  bool PumpOne(Stream& s, const std::vector<std::shared_ptr<Entry>>& entries, int64_t first_id,
               int64_t now_mono_ms);

  // Constant after construction.
  const TailOptions options_;
  const std::string replica_id_;
  Counter* dropped_rate_;
  Counter* dropped_ring_;
  Counter* dropped_busy_;
  Counter* refused_streams_;
  Counter* published_;

  // Streams open or opening; shared with each stream, which releases its count
  // when it goes (also when the server drops a response it never started).
  const std::shared_ptr<std::atomic<int>> watchers_ = std::make_shared<std::atomic<int>>(0);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Entry>> ring_;     // GUARDED_BY(mu_)
  int64_t ring_bytes_ = 0;                      // GUARDED_BY(mu_)
  int64_t next_id_ = 1;                         // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<Stream>> streams_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                       // GUARDED_BY(mu_)
  std::thread pump_;
};

}  // namespace sluice
