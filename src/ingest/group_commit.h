// GroupCommitter: many concurrent ingest requests share one store transaction
// (LevelDB DBImpl::Write / BuildBatchGroup). Requests queue up; a dedicated
// committer thread takes a bounded group, calls Store::Enqueue once for all of
// it, and completes every member with its own EnqueueResult, or with the
// shared error when the commit failed (then nothing of the group is stored).
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "queue/store.h"

namespace sluice {

struct GroupCommitOptions {
  int32_t max_group_events = 20000;      // events per transaction (a request is never split)
  int64_t max_queued_events = 200000;    // waiting events above which Submit refuses (Busy)
  int64_t max_queued_bytes = 256 << 20;  // waiting body bytes above which Submit refuses (Busy)
  // While slowed down (SetSlowDown), the committer waits this long before
  // each group so more requests share it; the wait ends early once a full
  // group (max_group_events) is queued or on Stop. ms; default 5.
  int64_t slow_down_wait_ms = 5;
};

class GroupCommitter {
 public:
  // Called once per request on the committer thread, after its group's
  // transaction committed (Ok) or failed (the shared error).
  using Done = std::function<void(Result<EnqueueResult>)>;
  // The batches of a committed group and their results (same order).
  using Committed =
      std::function<void(std::span<const EnqueueBatch>, std::span<const EnqueueResult>)>;

  // REQUIRES: store, metrics and clock outlive the committer. `on_commit`
  // runs on the committer thread after each successful commit, before the
  // group's requests are answered (may be empty). `on_committed` (may be
  // empty) runs there too, after they were answered, so its cost adds no
  // latency to them (the live tail: ops/event_tail.h). `clock` times the
  // slow-down wait.
  GroupCommitter(Store* store, GroupCommitOptions options, Metrics* metrics,
                 std::function<void()> on_commit, Committed on_committed = {},
                 Clock* clock = &Clock::Real());
  ~GroupCommitter();  // Stop()

  // Queues `events` for the next group. Returns Busy (and never calls `done`)
  // when the queue is over its bounds, Unavailable after Stop(); otherwise
  // `done` is called exactly once, later, on the committer thread.
  Status Submit(std::vector<NewEvent> events, Done done);

  // Soft backpressure: while true, the committer waits a little before each
  // group so more requests share it (fewer, larger transactions).
  void SetSlowDown(bool slow);

  // Commits everything already queued, answers it, and joins the thread.
  void Stop();

 private:
  struct Request {
    std::vector<NewEvent> events;
    Done done;
    int64_t bytes = 0;
  };

  void Run();

  // Constant after construction.
  Store* const store_;
  const GroupCommitOptions options_;
  Clock* const clock_;
  const std::function<void()> on_commit_;
  const Committed on_committed_;
  Histogram* const group_size_;
  Histogram* const commit_seconds_;
  Counter* const commit_failures_;
  Counter* const refused_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;  // GUARDED_BY(mu_)
  int64_t queued_events_ = 0;  // GUARDED_BY(mu_)
  int64_t queued_bytes_ = 0;   // GUARDED_BY(mu_)
  bool stopping_ = false;      // GUARDED_BY(mu_)
  bool slow_down_ = false;     // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace sluice
