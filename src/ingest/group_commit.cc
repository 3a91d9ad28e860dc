#include "ingest/group_commit.h"

#include <chrono>

namespace sluice {

GroupCommitter::GroupCommitter(Store* store, GroupCommitOptions options, Metrics* metrics,
                               std::function<void()> on_commit, Committed on_committed,
                               Clock* clock)
    : store_(store),
      options_(options),
      clock_(clock),
      on_commit_(std::move(on_commit)),
      on_committed_(std::move(on_committed)),
      group_size_(&metrics->GetHistogram(
          "sluice_group_commit_size", "Events per group-commit transaction.", "",
          {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000})),
      commit_seconds_(&metrics->GetHistogram("sluice_commit_seconds",
                                             "Duration of one group-commit transaction.")),
      commit_failures_(&metrics->GetCounter("sluice_group_commit_failures_total",
                                            "Group commits whose transaction failed.")),
      refused_(&metrics->GetCounter("sluice_ingest_rejected_total",
                                    "Ingest requests refused, by reason.",
                                    Labels({{"reason", "commit_queue_full"}}))) {
  thread_ = std::thread([this] { Run(); });
}

GroupCommitter::~GroupCommitter() { Stop(); }

Status GroupCommitter::Submit(std::vector<NewEvent> events, Done done) {
  int64_t bytes = 0;
  for (const auto& e : events) {
    bytes += static_cast<int64_t>(e.body.size() + e.insert_id.size() + e.project.size());
  }
  const int64_t n = static_cast<int64_t>(events.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("ingest is shutting down");
    // Always admit into an empty queue, so one request larger than the bounds
    // still goes through instead of being refused forever.
    if (!queue_.empty() && (queued_events_ + n > options_.max_queued_events ||
                            queued_bytes_ + bytes > options_.max_queued_bytes)) {
      refused_->Inc();
      return Status::Busy("too many events waiting for commit");
    }
    queued_events_ += n;
    queued_bytes_ += bytes;
    queue_.push_back(Request{std::move(events), std::move(done), bytes});
  }
  cv_.notify_one();
  return Status::Ok();
}

void GroupCommitter::SetSlowDown(bool slow) {
  std::lock_guard<std::mutex> lock(mu_);
  slow_down_ = slow;
}

void GroupCommitter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GroupCommitter::Run() {
  std::vector<Request> group;
  std::vector<EnqueueBatch> batches;
  for (;;) {
    group.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      if (slow_down_ && !stopping_) {
        // Queue is deep: trade a few ms of latency for bigger transactions.
        // No point waiting once a full group is there.
        clock_->WaitFor(lock, cv_, options_.slow_down_wait_ms, [this] {
          return stopping_ || queued_events_ >= options_.max_group_events;
        });
      }
      // The group: the head always, then followers while they fit.
      int64_t events = 0;
      while (!queue_.empty()) {
        const int64_t n = static_cast<int64_t>(queue_.front().events.size());
        if (!group.empty() && events + n > options_.max_group_events) break;
        events += n;
        queued_events_ -= n;
        queued_bytes_ -= queue_.front().bytes;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }

    batches.clear();
    int64_t total = 0;
    for (const auto& r : group) {
      batches.push_back(EnqueueBatch{std::span<const NewEvent>(r.events)});
      total += static_cast<int64_t>(r.events.size());
    }
    // steady_clock, not clock_: the histogram wants sub-millisecond resolution
    // and measures, never waits.
    const auto start = std::chrono::steady_clock::now();
    Result<std::vector<EnqueueResult>> result = Status::Internal("not committed");
    try {
      result = store_->Enqueue(batches);
    } catch (const std::exception& e) {
      result = Status::Internal(std::string("enqueue threw: ") + e.what());
    }
    commit_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    group_size_->Observe(static_cast<double>(total));

    if (result.ok() && result->size() != group.size()) {
      result = Status::Internal("store returned " + std::to_string(result->size()) +
                                " results for " + std::to_string(group.size()) + " batches");
    }
    if (!result.ok()) commit_failures_->Inc();
    // Wake consumers before answering: the rows are durable already.
    if (result.ok() && on_commit_) on_commit_();
    for (size_t i = 0; i < group.size(); ++i) {
      if (!group[i].done) continue;
      if (result.ok()) {
        group[i].done((*result)[i]);
      } else {
        group[i].done(result.status());
      }
    }
    if (result.ok() && on_committed_) {
      // `batches` still points into the group's events.
      on_committed_(batches, *result);
    }
    group.clear();
  }
}

}  // namespace sluice
