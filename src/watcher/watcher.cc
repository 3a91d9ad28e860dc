#include "watcher/watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <utility>

#include "common/clock.h"

namespace sluice {
namespace {

// Effects of one in-store consumer built ahead of the Complete transaction.
struct Prebuilt {
  std::vector<const ClaimedEvent*> events;  // the rows they were built from
  Effects effects;
  bool used = false;  // moved into a transaction already
};

// A consumer is asked to return by its deadline; past it by this much the
// watcher stops waiting and records a timeout (the delivery thread is still
// joined before the batch is let go, see Job).
constexpr int64_t kDeadlineGraceMs = 1000;
// How often a loop waiting for deliveries rechecks lease loss and the drain
// deadline (a finished delivery wakes it at once).
constexpr int64_t kDeliveryPollMs = 20;
// Claim errors (store unavailable) back off from this to kClaimErrorMaxMs.
constexpr int64_t kClaimErrorMinMs = 50;
constexpr int64_t kClaimErrorMaxMs = 5000;
// A Complete that fails with kUnavailable is retried this often before the
// batch is left to lease expiry.
constexpr int kCompleteAttempts = 3;

int64_t NowMono() { return Clock::Real().MonoMs(); }

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// Shared between the loop processing a lease and the heartbeat thread, which
// may outlive the loop's interest in it: hence shared_ptr.
struct Watcher::InFlight {
  int64_t token = 0;
  std::atomic<bool> lost{false};    // a fenced call or Extend answered kLeaseLost
  std::atomic<bool> cancel{false};  // deliveries should stop (Delivery::cancelled)
  // The loop is completing (or failing) the lease: an Extend that finds the
  // rows gone raced with their delete, which is not a lost lease.
  std::atomic<bool> finishing{false};
  std::mutex mu;
  std::condition_variable cv;  // a job finished, or `lost` was raised
  int pending = 0;             // GUARDED_BY(mu) jobs not finished yet
};

// One external consumer's delivery of one lease. The thread is always joined
// before ProcessLease returns, so it may point into the lease and the watcher.
struct Watcher::Job {
  size_t consumer = 0;
  std::vector<const ClaimedEvent*> events;  // lacking the consumer's bit
  Status result;                            // GUARDED_BY(flight->mu) once started
  bool done = false;                        // GUARDED_BY(flight->mu)
  bool mark_in_complete = false;            // GUARDED_BY(flight->mu) bit left to Complete
  std::thread thread;
};

Watcher::Watcher(Store* store, std::vector<ConsumerPtr> consumers, WatcherOptions options,
                 std::string replica_id, Metrics* metrics)
    : store_(store),
      consumers_(std::move(consumers)),
      options_(std::move(options)),
      replica_id_(std::move(replica_id)),
      metrics_(metrics) {
  for (const ConsumerPtr& c : consumers_) all_bits_ |= c->bit();
  heartbeat_ms_ = options_.heartbeat_ms > 0 ? options_.heartbeat_ms
                                            : std::max<int64_t>(1, options_.lease_ttl_ms / 3);
  consumer_timeout_ms_ = options_.consumer_timeout_ms > 0
                             ? options_.consumer_timeout_ms
                             : std::max<int64_t>(1, options_.lease_ttl_ms / 2);
  Metrics& m = *metrics_;
  claims_ = &m.GetCounter("sluice_claims_total", "Claims that returned events.");
  empty_claims_ = &m.GetCounter("sluice_claims_empty_total", "Claims that found nothing to do.");
  claim_errors_ = &m.GetCounter("sluice_claim_errors_total", "Claims the store refused.");
  claim_seconds_ = &m.GetHistogram("sluice_claim_seconds", "Duration of Store::Claim.");
  claimed_events_ = &m.GetCounter("sluice_claimed_events_total", "Events claimed.");
  reclaims_ = &m.GetCounter("sluice_lease_reclaims_total",
                            "Events claimed over an expired lease (redelivery).");
  fenced_ = &m.GetCounter("sluice_fenced_total",
                          "Leases whose fenced writes were refused (lease lost).");
  dead_ = &m.GetCounter("sluice_dead_events_total", "Events moved to the dead-letter state.");
  store_errors_ = &m.GetCounter("sluice_watcher_store_errors_total",
                                "Store errors in MarkDone/Complete/Fail/Extend.");
  batch_seconds_ = &m.GetHistogram("sluice_batch_seconds", "Duration of one claimed batch.");
  in_flight_gauge_ = &m.GetGauge("sluice_watcher_in_flight", "Leases being processed.");
  for (const ConsumerPtr& c : consumers_) {
    const std::string labels = Labels({{"consumer", c->name()}});
    deliveries_.push_back(&m.GetCounter("sluice_deliveries_total",
                                        "Events handed to each consumer.", labels));
    failures_.push_back(&m.GetCounter("sluice_failures_total",
                                      "Events a consumer failed to process.", labels));
  }
}

Watcher::~Watcher() { Drain(); }

void Watcher::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (started_) return;
  started_ = true;
  const int loops = std::max(0, options_.loops);
  for (int i = 0; i < loops; ++i) threads_.emplace_back([this, i] { LoopMain(i); });
  heartbeat_ = std::thread([this] { HeartbeatMain(); });
  spdlog::info("watcher start replica={} loops={} batch={} lease_ttl_ms={} consumers={}",
               replica_id_, loops, options_.batch, options_.lease_ttl_ms, consumers_.size());
}

void Watcher::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++wake_seq_;
  }
  wake_cv_.notify_all();
}

void Watcher::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (drained_ || !started_) {
      drained_ = true;
      return;
    }
    drained_ = true;
  }
  spdlog::info("watcher drain replica={} timeout_ms={}", replica_id_, options_.drain_timeout_ms);
  drain_deadline_mono_ms_.store(NowMono() + std::max<int64_t>(0, options_.drain_timeout_ms));
  stopping_.store(true);
  wake_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    heartbeat_stop_ = true;
  }
  heartbeat_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  spdlog::info("watcher drained replica={}", replica_id_);
}

bool Watcher::WaitIdle(int64_t ms, uint64_t seen, bool wakeable) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] {
    return stopping_.load() || (wakeable && wake_seq_ != seen);
  });
  return wakeable && wake_seq_ != seen;
}

void Watcher::LoopMain(int loop_index) {
  const std::string owner = replica_id_ + "/" + std::to_string(loop_index);
  const int64_t idle_min = std::max<int64_t>(1, options_.idle_poll_min_ms);
  const int64_t idle_max = std::max(idle_min, options_.idle_poll_max_ms);
  int64_t idle_ms = idle_min;
  int64_t error_ms = 0;
  while (!stopping_.load()) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = wake_seq_;
    }
    const auto t0 = std::chrono::steady_clock::now();
    Result<Lease> lease = store_->Claim(
        ClaimRequest{.owner = owner, .max_events = options_.batch,
                     .lease_ttl_ms = options_.lease_ttl_ms});
    claim_seconds_->Observe(SecondsSince(t0));
    if (!lease.ok()) {
      // Never spin on a sick store: back off, doubling, and keep going.
      claim_errors_->Inc();
      error_ms = error_ms == 0 ? kClaimErrorMinMs : std::min(error_ms * 2, kClaimErrorMaxMs);
      spdlog::warn("watcher claim_error owner={} retry_ms={} error=\"{}\"", owner, error_ms,
                   lease.status().ToString());
      WaitIdle(error_ms, seen, /*wakeable=*/false);
      continue;
    }
    error_ms = 0;
    if (lease->events.empty()) {
      empty_claims_->Inc();
      // An enqueue in this process calls Wake(), so idle polling only has to
      // catch work from other replicas: back off to keep an idle store quiet.
      if (WaitIdle(idle_ms, seen, /*wakeable=*/true)) {
        idle_ms = idle_min;
      } else {
        idle_ms = std::min(idle_ms * 2, idle_max);
      }
      continue;
    }
    idle_ms = idle_min;
    claims_->Inc();
    claimed_events_->Inc(static_cast<int64_t>(lease->events.size()));
    int64_t reclaimed = 0;
    for (const ClaimedEvent& e : lease->events) reclaimed += e.reclaimed ? 1 : 0;
    if (reclaimed > 0) {
      reclaims_->Inc(reclaimed);
      spdlog::info("watcher reclaimed owner={} token={} events={}", owner, lease->token,
                   reclaimed);
    }
    ProcessLease(owner, std::move(*lease));
  }
}

void Watcher::HeartbeatMain() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!heartbeat_stop_) {
    heartbeat_cv_.wait_for(lock, std::chrono::milliseconds(heartbeat_ms_),
                           [&] { return heartbeat_stop_; });
    if (heartbeat_stop_) break;
    std::vector<std::shared_ptr<InFlight>> flights = in_flight_;
    lock.unlock();
    for (const std::shared_ptr<InFlight>& f : flights) {
      if (f->lost.load()) continue;
      Result<int64_t> r = store_->Extend(f->token, options_.lease_ttl_ms);
      if (r.ok()) continue;
      if (r.status().code() == Code::kLeaseLost && f->finishing.load()) continue;
      if (r.status().code() == Code::kLeaseLost) {
        // Another replica may own these rows now: whatever this replica still
        // does for the lease is wasted, so tell its loop and deliveries.
        spdlog::warn("watcher lease_lost token={} via=extend", f->token);
        std::lock_guard<std::mutex> flock(f->mu);
        f->lost.store(true);
        f->cancel.store(true);
        f->cv.notify_all();
      } else {
        store_errors_->Inc();
        spdlog::warn("watcher extend_error token={} error=\"{}\"", f->token,
                     r.status().ToString());
      }
    }
    lock.lock();
  }
}

void Watcher::ProcessLease(const std::string& owner, Lease lease) {
  const auto t0 = std::chrono::steady_clock::now();
  auto flight = std::make_shared<InFlight>();
  flight->token = lease.token;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.push_back(flight);
  }
  in_flight_gauge_->Add(1);

  // External consumers first, concurrently: each gets the events lacking its
  // bit and, on success, records its progress at once with a fenced MarkDone,
  // so a later failure of another consumer does not make it redeliver.
  std::vector<std::unique_ptr<Job>> jobs;
  for (size_t i = 0; i < consumers_.size(); ++i) {
    const Consumer& c = *consumers_[i];
    if (c.in_store()) continue;
    auto job = std::make_unique<Job>();
    job->consumer = i;
    for (const ClaimedEvent& e : lease.events) {
      if ((e.done_mask & c.bit()) == 0) job->events.push_back(&e);
    }
    if (job->events.empty()) continue;
    deliveries_[i]->Inc(static_cast<int64_t>(job->events.size()));
    jobs.push_back(std::move(job));
  }
  const int64_t deadline = NowMono() + consumer_timeout_ms_;
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    flight->pending = static_cast<int>(jobs.size());
  }
  for (std::unique_ptr<Job>& job_ptr : jobs) {
    Job* job = job_ptr.get();
    job->thread = std::thread([this, job, &lease, flight, deadline] {
      Consumer& c = *consumers_[job->consumer];
      Delivery d{.events = job->events, .token = lease.token, .deadline_mono_ms = deadline,
                 .cancelled = &flight->cancel};
      Status st;
      try {
        st = c.Deliver(d);
      } catch (const std::exception& e) {
        st = Status::Internal(std::string("exception: ") + e.what());
      } catch (...) {
        st = Status::Internal("unknown exception");
      }
      std::vector<const ClaimedEvent*> still_failing;
      if (!st.ok() && st.code() != Code::kLeaseLost && IsRetriedBatch(job->events)) {
        st = Isolate(c, *job, lease, flight.get(), deadline, std::move(st), &still_failing);
      }
      bool defer = false;
      if (st.ok()) {
        // The last job to finish leaves its bit to the loop's Complete, which
        // follows at once (one transaction fewer per batch, and the only one
        // with a single external consumer). Earlier ones record progress now,
        // so a slower consumer's failure or a crash does not redeliver to them.
        std::lock_guard<std::mutex> lock(flight->mu);
        defer = !job->done && flight->pending == 1;
        job->mark_in_complete = defer;
      }
      if (st.ok() && !defer) {
        // The consumer wrote every event lacking its bit, so its bit may be
        // set on every row of the lease (rows that had it are untouched).
        Result<MarkDoneResult> r = store_->MarkDone(
            MarkDoneRequest{.token = lease.token, .events = lease.events,
                            .external_bits = c.bit(), .in_store = {}});
        if (!r.ok()) {
          st = r.status().code() == Code::kLeaseLost
                   ? r.status()
                   : Status(r.status().code(), "mark_done: " + r.status().message());
          if (st.code() != Code::kLeaseLost) store_errors_->Inc();
        }
      }
      std::lock_guard<std::mutex> lock(flight->mu);
      // A job the loop already gave up on (timeout, drain) keeps that verdict:
      // the loop reads it without the lock from then on.
      if (!job->done) {
        // After isolation only the events that still fail are this job's failure.
        if (!still_failing.empty()) job->events = std::move(still_failing);
        job->result = std::move(st);
        job->done = true;
        if (job->result.code() == Code::kLeaseLost) flight->lost.store(true);
      }
      --flight->pending;
      flight->cv.notify_all();
    });
  }

  bool timed_out = false;
  bool drain_cut = false;
  {
    std::unique_lock<std::mutex> lock(flight->mu);
    while (flight->pending > 0 && !flight->lost.load()) {
      const int64_t now = NowMono();
      const int64_t drain = drain_deadline_mono_ms_.load();
      if (drain > 0 && now >= drain) {
        drain_cut = true;
        break;
      }
      if (now >= deadline + kDeadlineGraceMs) {
        timed_out = true;
        break;
      }
      flight->cv.wait_for(lock, std::chrono::milliseconds(kDeliveryPollMs));
    }
  }
  std::vector<Job*> failed;
  uint64_t deferred_bits = 0;
  if (!flight->lost.load()) {
    if (timed_out || drain_cut) flight->cancel.store(true);
    std::lock_guard<std::mutex> lock(flight->mu);
    for (const std::unique_ptr<Job>& job : jobs) {
      if (job->done && job->result.ok() && job->mark_in_complete) {
        deferred_bits |= consumers_[job->consumer]->bit();
      }
      if (!job->done) {
        job->result = drain_cut ? Status::Unavailable("drain")
                                : Status::Unavailable("timeout after " +
                                                      std::to_string(consumer_timeout_ms_) +
                                                      " ms");
        job->done = true;  // the late answer is ignored
      }
      if (!job->result.ok()) failed.push_back(job.get());
    }
  }
  // A drain deadline that passed while the deliveries finished still cuts the
  // batch short: the in-store part completes, the rest goes back at once.
  if (!drain_cut) {
    const int64_t drain = drain_deadline_mono_ms_.load();
    drain_cut = drain > 0 && NowMono() >= drain && !failed.empty();
  }
  if (flight->lost.load()) {
    fenced_->Inc();
    spdlog::warn("watcher fenced owner={} token={} stage=deliver", owner, lease.token);
  } else {
    for (Job* job : failed) {
      const Consumer& c = *consumers_[job->consumer];
      failures_[job->consumer]->Inc(static_cast<int64_t>(job->events.size()));
      spdlog::warn("watcher consumer_failed consumer={} token={} events={} error=\"{}\"",
                   c.name(), lease.token, job->events.size(), job->result.ToString());
    }
    flight->finishing.store(true);
    CompleteAndFail(flight.get(), lease, failed, deferred_bits, drain_cut);
  }

  flight->cancel.store(true);
  for (std::unique_ptr<Job>& job : jobs) {
    // Consumers honour the deadline and the cancel flag, so this is short; the
    // rows were already released above (completed, failed or lost).
    if (job->thread.joinable()) job->thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), flight));
  }
  in_flight_gauge_->Add(-1);
  batch_seconds_->Observe(SecondsSince(t0));
}

bool Watcher::IsRetriedBatch(const std::vector<const ClaimedEvent*>& events) {
  if (events.size() < 2) return false;
  for (const ClaimedEvent* e : events) {
    if (e->attempts >= 2) return true;
  }
  return false;
}

// Poison isolation. A batch that failed before (some event's attempts >= 2)
// and fails again is split in halves: a half that succeeds is marked done at
// once (fenced), a failing half is split further, down to single events,
// within a budget of extra deliveries. Without this one poison event would
// take its whole batch to the dead-letter state with it; with it, the poison
// events alone keep failing and the rest flow on. A consumer that is simply
// down fails every half: the budget and the deadline bound that cost.
Status Watcher::Isolate(Consumer& c, const Job& job, const Lease& lease, InFlight* flight,
                        int64_t deadline, Status first_error,
                        std::vector<const ClaimedEvent*>* still_failing) {
  constexpr int kIsolationBudget = 24;  // extra Deliver calls per batch
  int budget = kIsolationBudget;
  Status last_error = std::move(first_error);
  std::vector<std::vector<const ClaimedEvent*>> work{job.events};
  std::vector<const ClaimedEvent*> failing;
  while (!work.empty()) {
    std::vector<const ClaimedEvent*> set = std::move(work.back());
    work.pop_back();
    if (set.size() < 2 || budget < 2 || flight->cancel.load() || NowMono() >= deadline) {
      failing.insert(failing.end(), set.begin(), set.end());
      continue;
    }
    const size_t mid = set.size() / 2;
    std::vector<const ClaimedEvent*> halves[2] = {
        std::vector<const ClaimedEvent*>(set.begin(), set.begin() + mid),
        std::vector<const ClaimedEvent*>(set.begin() + mid, set.end())};
    for (auto& half : halves) {
      --budget;
      deliveries_[job.consumer]->Inc(static_cast<int64_t>(half.size()));
      Status st;
      try {
        st = c.Deliver(Delivery{.events = half, .token = lease.token,
                                .deadline_mono_ms = deadline, .cancelled = &flight->cancel});
      } catch (const std::exception& e) {
        st = Status::Internal(std::string("exception: ") + e.what());
      }
      if (!st.ok()) {
        last_error = std::move(st);
        work.push_back(std::move(half));
        continue;
      }
      std::vector<ClaimedEvent> rows;
      rows.reserve(half.size());
      for (const ClaimedEvent* e : half) rows.push_back(*e);
      Result<MarkDoneResult> r = store_->MarkDone(
          MarkDoneRequest{.token = lease.token, .events = rows, .external_bits = c.bit(), .in_store = {}});
      if (!r.ok()) return r.status();  // lease lost or store down: the batch stops here
    }
  }
  if (failing.empty()) return Status::Ok();
  std::sort(failing.begin(), failing.end(),
            [](const ClaimedEvent* a, const ClaimedEvent* b) { return a->seq < b->seq; });
  *still_failing = std::move(failing);
  return last_error;
}

void Watcher::CompleteAndFail(InFlight* flight, const Lease& lease,
                              const std::vector<Job*>& failed, uint64_t external_bits,
                              bool drain_cut) {
  // In-store consumers go into the Complete transaction: their effects, their
  // bits and the delete commit together (exactly-once effect).
  CompleteRequest req{.token = lease.token, .events = lease.events, .all_bits = all_bits_,
                      .external_bits = external_bits, .in_store = {}};
  for (size_t i = 0; i < consumers_.size(); ++i) {
    const Consumer* c = consumers_[i].get();
    if (!c->in_store()) continue;
    // The effects are built here, outside the store's write transaction,
    // for the rows that lacked the bit when claimed. The store hands the
    // builder the rows that lack it at commit time; when those are the same
    // rows (always, unless another holder got in between) the prebuilt
    // effects are used, else they are built again from what the store says.
    auto pre = std::make_shared<Prebuilt>();
    for (const ClaimedEvent& e : lease.events) {
      if ((e.done_mask & c->bit()) == 0) pre->events.push_back(&e);
    }
    if (pre->events.empty()) continue;
    deliveries_[i]->Inc(static_cast<int64_t>(pre->events.size()));
    try {
      c->BuildEffects(pre->events, &pre->effects);
    } catch (const std::exception&) {
      // Build again inside the transaction, where the store turns an
      // exception into a failed Complete.
      pre->used = true;
      pre->effects = Effects{};
    }
    req.in_store.push_back(InStoreWork{
        .bit = c->bit(),
        .build = [c, pre](std::span<const ClaimedEvent* const> events, Effects* out) {
          if (!pre->used && std::equal(events.begin(), events.end(), pre->events.begin(),
                                       pre->events.end())) {
            pre->used = true;  // a retried Complete builds again
            // Append, like BuildEffects: a store may collect every
            // consumer's effects in one Effects.
            Effects& e = pre->effects;
            out->users.insert(out->users.end(), std::make_move_iterator(e.users.begin()),
                              std::make_move_iterator(e.users.end()));
            out->counters.insert(out->counters.end(), std::make_move_iterator(e.counters.begin()),
                                 std::make_move_iterator(e.counters.end()));
            return;
          }
          c->BuildEffects(events, out);
        }});
  }
  Result<CompleteResult> done = Status::Internal("not attempted");
  for (int attempt = 0; attempt < kCompleteAttempts; ++attempt) {
    if (flight->lost.load()) break;
    done = store_->Complete(req);
    if (done.ok() || done.status().code() != Code::kUnavailable) break;
    store_errors_->Inc();
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
  }
  // A Complete that succeeded decides: `lost` may have been raised by a
  // heartbeat Extend that ran just after the Complete deleted the rows.
  if (!done.ok() && (flight->lost.load() || done.status().code() == Code::kLeaseLost)) {
    fenced_->Inc();
    spdlog::warn("watcher fenced token={} stage=complete", lease.token);
    return;
  }
  if (!done.ok()) {
    // Indeterminate: leave the rows to lease expiry rather than guess.
    store_errors_->Inc();
    spdlog::error("watcher complete_error token={} error=\"{}\"", lease.token,
                  done.status().ToString());
    return;
  }
  if (done->remaining.empty()) return;

  // Each remaining row fails with the names of the consumers that failed it,
  // so `dlq requeue --consumer NAME` can find it.
  std::map<std::string, std::vector<int64_t>> by_error;
  for (int64_t seq : done->remaining) {
    std::string error;
    if (drain_cut) {
      error = "drain";
    } else {
      for (const Job* job : failed) {
        // job->events is in lease order: ascending seq.
        auto it = std::lower_bound(
            job->events.begin(), job->events.end(), seq,
            [](const ClaimedEvent* e, int64_t s) { return e->seq < s; });
        const bool has = it != job->events.end() && (*it)->seq == seq;
        if (!has) continue;
        if (!error.empty()) error += "; ";
        error += "consumer " + consumers_[job->consumer]->name() + ": " +
                 job->result.message();
      }
      if (error.empty()) error = "incomplete: done bits missing after complete";
    }
    by_error[error].push_back(seq);
  }
  BackoffPolicy backoff = options_.backoff;
  if (drain_cut) {
    // Another replica should take the batch at once, and a drain is not the
    // batch's fault: it must not push it toward the dead-letter state.
    backoff.base_ms = 0;
    backoff.cap_ms = 0;
    backoff.jitter = 0;
    backoff.max_attempts = std::numeric_limits<int32_t>::max();
  }
  if (!drain_cut) {
    // A receiver that asked us to come back later (429/503 Retry-After) sets
    // the floor of the delay, so retries do not burn attempts against it.
    for (const Job* job : failed) {
      backoff.min_delay_ms =
          std::max(backoff.min_delay_ms, consumers_[job->consumer]->RetryAfterMs());
    }
  }
  for (const auto& [error, seqs] : by_error) {
    if (flight->lost.load()) break;
    Result<FailResult> r = store_->Fail(
        FailRequest{.token = lease.token, .seqs = seqs, .error = error, .backoff = backoff});
    if (!r.ok()) {
      if (r.status().code() == Code::kLeaseLost) {
        fenced_->Inc();
        spdlog::warn("watcher fenced token={} stage=fail", lease.token);
        return;
      }
      store_errors_->Inc();
      spdlog::error("watcher fail_error token={} error=\"{}\"", lease.token,
                    r.status().ToString());
      continue;
    }
    if (r->dead > 0) {
      dead_->Inc(r->dead);
      spdlog::warn("watcher dead token={} events={} error=\"{}\"", lease.token, r->dead, error);
    }
  }
}

}  // namespace sluice
