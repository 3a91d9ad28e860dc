#include "watcher/watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <utility>

#include "common/event.h"

namespace sluice {
namespace {

// A consumer is asked to return by its deadline; past it by this much the
// watcher stops waiting, records a timeout and abandons the call (its late
// result is ignored; see "Delivery threads" below).
constexpr int64_t kDeadlineGraceMs = 1000;
// How often a loop waiting for deliveries rechecks the drain deadline (a
// finished delivery or a lost lease wakes it at once).
constexpr int64_t kDeliveryPollMs = 20;
// Claim errors (store unavailable) back off from this to kClaimErrorMaxMs.
constexpr int64_t kClaimErrorMinMs = 50;
constexpr int64_t kClaimErrorMaxMs = 5000;
// A Complete that fails with kUnavailable is retried this often before the
// batch is left to lease expiry.
constexpr int kCompleteAttempts = 3;
// A Complete answered stale is rebuilt and retried at most this often. Under
// one token only this watcher writes in-store bits, so a second stale answer
// in a row would mean a bug; the batch is then left to lease expiry.
constexpr int kStaleRebuilds = 3;

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs a consumer call; an exception becomes its error (nothing escapes a
// delivery thread).
template <typename Fn>
Status Guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("exception: ") + e.what());
  } catch (...) {
    return Status::Internal("unknown exception");
  }
}

std::vector<int64_t> SeqsOf(std::span<const DecodedEvent> events) {
  std::vector<int64_t> out;
  out.reserve(events.size());
  for (const DecodedEvent& e : events) out.push_back(e.row->seq);
  return out;
}

}  // namespace

// One claimed lease with its bodies decoded once. Immutable once built; the
// loop and every delivery share it (shared_ptr), so an abandoned delivery may
// outlive the loop's interest in the batch. Not movable: `events` points into
// `lease` and `bodies`.
struct Watcher::Batch {
  explicit Batch(Lease l) : lease(std::move(l)) {}
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  Lease lease;
  std::vector<Event> bodies;         // parallel to lease.events
  std::vector<DecodedEvent> events;  // parallel to lease.events; event null: did not parse
};

// Shared between the loop processing a lease, its jobs and the heartbeat
// thread, which may outlive the loop's interest in it: hence shared_ptr.
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

// One external consumer's delivery of one batch. Owned jointly by the loop
// and the pool thread running it: a call the loop gave up on keeps its batch
// alive until it returns.
struct Watcher::Job {
  size_t consumer = 0;
  std::shared_ptr<const Batch> batch;
  std::shared_ptr<InFlight> flight;
  int64_t deadline_mono_ms = 0;
  // Lacking the consumer's bit; after isolation, the events still failing.
  // Written by the job before `done` only, read by the loop after it.
  std::vector<DecodedEvent> events;
  Status result;                  // GUARDED_BY(flight->mu) until done
  bool done = false;              // GUARDED_BY(flight->mu)
  bool mark_in_complete = false;  // GUARDED_BY(flight->mu) bit left to Complete
  bool abandoned = false;         // GUARDED_BY(flight->mu) the loop gave up while it ran
};

Watcher::Watcher(Store* store, std::vector<ConsumerPtr> consumers, WatcherOptions options,
                 std::string replica_id, Metrics* metrics, Clock* clock)
    : store_(store),
      consumers_(std::move(consumers)),
      options_(std::move(options)),
      replica_id_(std::move(replica_id)),
      metrics_(metrics),
      clock_(clock) {
  size_t external = 0;
  for (const ConsumerPtr& c : consumers_) {
    all_bits_ |= c->bit();
    if (!c->in_store()) ++external;
  }
  heartbeat_ms_ = options_.heartbeat_ms > 0 ? options_.heartbeat_ms
                                            : std::max<int64_t>(1, options_.lease_ttl_ms / 3);
  consumer_timeout_ms_ = options_.consumer_timeout_ms > 0
                             ? options_.consumer_timeout_ms
                             : std::max<int64_t>(1, options_.lease_ttl_ms / 2);
  // Delivery threads. Each loop has at most one delivery per external
  // consumer running, so loops x external threads serve every delivery at
  // once. A call that ignores its deadline is abandoned but still holds its
  // thread until it returns. A delivery calls its consumer only while that
  // consumer has fewer than `loops` abandoned calls; otherwise it waits for
  // one to return, up to its deadline, and then fails like a call that timed
  // out. So a consumer holds at most loops - 1 abandoned threads plus one
  // per loop: fewer than 2 x loops. A pool of 2 x loops x external threads
  // therefore never makes a delivery wait for a thread, and a stuck consumer
  // cannot take the threads of the others (they keep delivering; the stuck
  // one's batches fail and back off as for any consumer that times out).
  // Threads start on first need and are kept.
  const int loops = std::max(1, options_.loops);
  max_abandoned_ = loops;
  pool_ = std::make_unique<DeliveryPool>(std::max<size_t>(1, 2 * loops * external));
  abandoned_.assign(consumers_.size(), 0);
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
  bad_bodies_ = &m.GetCounter("sluice_bad_bodies_total",
                              "Claimed bodies that did not parse (counted once per claim).");
  stale_ = &m.GetCounter("sluice_stale_effects_total",
                         "Completes refused as stale, whose in-store effects were rebuilt.");
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
  drain_deadline_mono_ms_.store(clock_->MonoMs() + std::max<int64_t>(0, options_.drain_timeout_ms));
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
  // Abandoned calls still use the consumers and the store: wait for them.
  pool_->Shutdown();
  spdlog::info("watcher drained replica={}", replica_id_);
}

bool Watcher::WaitIdle(int64_t ms, uint64_t seen, bool wakeable) {
  std::unique_lock<std::mutex> lock(mu_);
  clock_->WaitFor(lock, wake_cv_, ms,
                  [&] { return stopping_.load() || (wakeable && wake_seq_ != seen); });
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
    clock_->WaitFor(lock, heartbeat_cv_, heartbeat_ms_, [&] { return heartbeat_stop_; });
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

// ---- one lease ----

void Watcher::ProcessLease(const std::string& owner, Lease lease) {
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<const Batch> batch = Decode(std::move(lease));
  auto flight = std::make_shared<InFlight>();
  flight->token = batch->lease.token;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.push_back(flight);
  }
  in_flight_gauge_->Add(1);

  // External consumers first, concurrently: each gets the events lacking its
  // bit and, on success, records its progress at once with a fenced MarkDone,
  // so a later failure of another consumer does not make it redeliver.
  const int64_t deadline = clock_->MonoMs() + consumer_timeout_ms_;
  std::vector<std::shared_ptr<Job>> jobs = StartDeliveries(batch, flight, deadline);
  Settled settled = AwaitDeliveries(*flight, jobs, deadline);
  if (flight->lost.load()) {
    fenced_->Inc();
    spdlog::warn("watcher fenced owner={} token={} stage=deliver", owner, flight->token);
  } else {
    flight->finishing.store(true);
    CompleteAndFail(flight.get(), *batch, std::move(settled));
  }
  // The rows were released above (completed, failed or lost). Deliveries
  // still running were given up on: they see the cancel flag, and whatever
  // they return is ignored (a late MarkDone is fenced off or harmless).
  flight->cancel.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), flight));
  }
  in_flight_gauge_->Add(-1);
  batch_seconds_->Observe(SecondsSince(t0));
}

std::shared_ptr<const Watcher::Batch> Watcher::Decode(Lease lease) {
  auto batch = std::make_shared<Batch>(std::move(lease));
  const size_t n = batch->lease.events.size();
  batch->bodies.resize(n);
  batch->events.resize(n);
  int64_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const ClaimedEvent& row = batch->lease.events[i];
    DecodedEvent& d = batch->events[i];
    d.row = &row;
    if (ParseBody(row.body, &batch->bodies[i]).ok()) {
      d.event = &batch->bodies[i];
      continue;
    }
    ++bad;
  }
  if (bad > 0) {
    // Ingest stores only bodies ToBody wrote: a bug or a hand-edited row.
    bad_bodies_->Inc(bad);
    spdlog::error("watcher bad_bodies token={} events={}", batch->lease.token, bad);
  }
  return batch;
}

std::vector<std::shared_ptr<Watcher::Job>> Watcher::StartDeliveries(
    const std::shared_ptr<const Batch>& batch, const std::shared_ptr<InFlight>& flight,
    int64_t deadline) {
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 0; i < consumers_.size(); ++i) {
    const Consumer& c = *consumers_[i];
    if (c.in_store()) continue;
    auto job = std::make_shared<Job>();
    job->consumer = i;
    job->batch = batch;
    job->flight = flight;
    job->deadline_mono_ms = deadline;
    for (const DecodedEvent& e : batch->events) {
      if ((e.row->done_mask & c.bit()) == 0) job->events.push_back(e);
    }
    if (job->events.empty()) continue;
    jobs.push_back(std::move(job));
  }
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    flight->pending = static_cast<int>(jobs.size());
  }
  for (const std::shared_ptr<Job>& job : jobs) {
    deliveries_[job->consumer]->Inc(static_cast<int64_t>(job->events.size()));
    pool_->Submit([this, job] { RunJob(*job); });
  }
  return jobs;
}

bool Watcher::AwaitSlot(const Job& job, int* stuck) {
  std::unique_lock<std::mutex> lock(slot_mu_);
  while (abandoned_[job.consumer] >= max_abandoned_) {
    const int64_t now = clock_->MonoMs();
    if (job.flight->cancel.load() || now >= job.deadline_mono_ms) {
      *stuck = abandoned_[job.consumer];
      return false;
    }
    // Polls for the cancel flag; an abandoned call that returns notifies.
    clock_->WaitUntil(lock, slot_cv_, std::min(job.deadline_mono_ms, now + kDeliveryPollMs),
                      [&] { return abandoned_[job.consumer] < max_abandoned_; });
  }
  return true;
}

void Watcher::RunJob(Job& job) {
  Consumer& c = *consumers_[job.consumer];
  InFlight& flight = *job.flight;
  const Lease& lease = job.batch->lease;
  int stuck = 0;
  Status st;
  if (!AwaitSlot(job, &stuck)) {
    // Its calls that ignored their deadline still hold `stuck` threads: this
    // delivery did not get to start in time (a timeout, like a slow call).
    st = Status::Unavailable(std::to_string(stuck) +
                             " earlier calls are still running past their deadline");
  } else {
    st = Guarded([&] {
      return c.Deliver(Delivery{.events = job.events,
                                .token = lease.token,
                                .deadline_mono_ms = job.deadline_mono_ms,
                                .cancelled = &flight.cancel});
    });
  }
  std::vector<DecodedEvent> still_failing;
  if (!st.ok() && st.code() != Code::kLeaseLost && IsRetriedBatch(job.events)) {
    st = Isolate(c, job, std::move(st), &still_failing);
  }
  bool defer = false;
  if (st.ok()) {
    // The last job to finish leaves its bit to the loop's Complete, which
    // follows at once (one transaction fewer per batch, and the only one
    // with a single external consumer). Earlier ones record progress now,
    // so a slower consumer's failure or a crash does not redeliver to them.
    std::lock_guard<std::mutex> lock(flight.mu);
    defer = !job.done && flight.pending == 1;
    job.mark_in_complete = defer;
  }
  if (st.ok() && !defer) {
    // The consumer wrote every event lacking its bit, so its bit may be set
    // on every row of the lease (rows that had it are untouched).
    Result<MarkDoneResult> r = store_->MarkDone(MarkDoneRequest{
        .token = lease.token, .events = lease.events, .external_bits = c.bit(), .in_store = {}});
    if (!r.ok()) {
      st = r.status().code() == Code::kLeaseLost
               ? r.status()
               : Status(r.status().code(), "mark_done: " + r.status().message());
      if (st.code() != Code::kLeaseLost) store_errors_->Inc();
    }
  }
  std::lock_guard<std::mutex> lock(flight.mu);
  // A job the loop already gave up on (timeout, drain) keeps that verdict:
  // the loop reads it without the lock from then on.
  if (!job.done) {
    // After isolation only the events that still fail are this job's failure.
    if (!still_failing.empty()) job.events = std::move(still_failing);
    job.result = std::move(st);
    job.done = true;
    if (job.result.code() == Code::kLeaseLost) flight.lost.store(true);
  }
  if (job.abandoned) {
    {
      std::lock_guard<std::mutex> slot_lock(slot_mu_);
      --abandoned_[job.consumer];
    }
    slot_cv_.notify_all();
  }
  --flight.pending;
  flight.cv.notify_all();
}

Watcher::Settled Watcher::AwaitDeliveries(InFlight& flight,
                                          const std::vector<std::shared_ptr<Job>>& jobs,
                                          int64_t deadline) {
  Settled out;
  bool timed_out = false;
  std::unique_lock<std::mutex> lock(flight.mu);
  while (flight.pending > 0 && !flight.lost.load()) {
    const int64_t now = clock_->MonoMs();
    const int64_t drain = drain_deadline_mono_ms_.load();
    if (drain > 0 && now >= drain) {
      out.drain_cut = true;
      break;
    }
    if (now >= deadline + kDeadlineGraceMs) {
      timed_out = true;
      break;
    }
    // Wakes when a job finishes or the lease is lost; polls for the drain
    // deadline, which Drain() may set at any time.
    const int64_t until = std::min(deadline + kDeadlineGraceMs, now + kDeliveryPollMs);
    clock_->WaitUntil(lock, flight.cv, until,
                      [&] { return flight.pending == 0 || flight.lost.load(); });
  }
  const bool lost = flight.lost.load();
  if (timed_out || out.drain_cut || lost) flight.cancel.store(true);
  for (const std::shared_ptr<Job>& job : jobs) {
    if (!job->done) {
      // Given up on: the call keeps its thread until it returns (counted in
      // abandoned_), and whatever it returns is ignored.
      job->result = lost ? Status::LeaseLost("lease lost")
                    : out.drain_cut
                        ? Status::Unavailable("drain")
                        : Status::Unavailable("timeout after " +
                                              std::to_string(consumer_timeout_ms_) + " ms");
      job->done = true;
      job->abandoned = true;
      std::lock_guard<std::mutex> slot_lock(slot_mu_);
      ++abandoned_[job->consumer];
    }
    if (lost) continue;
    if (job->result.ok()) {
      if (job->mark_in_complete) out.deferred_bits |= consumers_[job->consumer]->bit();
      continue;
    }
    const Consumer& c = *consumers_[job->consumer];
    failures_[job->consumer]->Inc(static_cast<int64_t>(job->events.size()));
    spdlog::warn("watcher consumer_failed consumer={} token={} events={} error=\"{}\"", c.name(),
                 flight.token, job->events.size(), job->result.ToString());
    out.failures.push_back(Failure{job->consumer, SeqsOf(job->events), job->result});
  }
  if (lost) return out;
  // A drain deadline that passed while the deliveries finished still cuts the
  // batch short: the in-store part completes, the rest goes back at once.
  if (!out.drain_cut) {
    const int64_t drain = drain_deadline_mono_ms_.load();
    out.drain_cut = drain > 0 && clock_->MonoMs() >= drain && !out.failures.empty();
  }
  return out;
}

bool Watcher::IsRetriedBatch(std::span<const DecodedEvent> events) {
  if (events.size() < 2) return false;
  for (const DecodedEvent& e : events) {
    if (e.row->attempts >= 2) return true;
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
Status Watcher::Isolate(Consumer& c, const Job& job, Status first_error,
                        std::vector<DecodedEvent>* still_failing) {
  constexpr int kIsolationBudget = 24;  // extra Deliver calls per batch
  const int64_t token = job.batch->lease.token;
  InFlight& flight = *job.flight;
  int budget = kIsolationBudget;
  Status last_error = std::move(first_error);
  std::vector<std::vector<DecodedEvent>> work{job.events};
  std::vector<DecodedEvent> failing;
  while (!work.empty()) {
    std::vector<DecodedEvent> set = std::move(work.back());
    work.pop_back();
    if (set.size() < 2 || budget < 2 || flight.cancel.load() ||
        clock_->MonoMs() >= job.deadline_mono_ms) {
      failing.insert(failing.end(), set.begin(), set.end());
      continue;
    }
    const auto mid = set.begin() + static_cast<std::ptrdiff_t>(set.size() / 2);
    std::vector<DecodedEvent> halves[2] = {std::vector<DecodedEvent>(set.begin(), mid),
                                           std::vector<DecodedEvent>(mid, set.end())};
    for (auto& half : halves) {
      --budget;
      deliveries_[job.consumer]->Inc(static_cast<int64_t>(half.size()));
      Status st = Guarded([&] {
        return c.Deliver(Delivery{.events = half,
                                  .token = token,
                                  .deadline_mono_ms = job.deadline_mono_ms,
                                  .cancelled = &flight.cancel});
      });
      if (!st.ok()) {
        last_error = std::move(st);
        work.push_back(std::move(half));
        continue;
      }
      // MarkDone needs each row's seq only (external bits carry no effects).
      std::vector<ClaimedEvent> rows(half.size());
      for (size_t i = 0; i < half.size(); ++i) {
        rows[i].seq = half[i].row->seq;
        rows[i].done_mask = half[i].row->done_mask;
      }
      Result<MarkDoneResult> r = store_->MarkDone(MarkDoneRequest{
          .token = token, .events = rows, .external_bits = c.bit(), .in_store = {}});
      if (!r.ok()) return r.status();  // lease lost or store down: the batch stops here
    }
  }
  if (failing.empty()) return Status::Ok();
  std::sort(failing.begin(), failing.end(),
            [](const DecodedEvent& a, const DecodedEvent& b) { return a.row->seq < b.row->seq; });
  *still_failing = std::move(failing);
  return last_error;
}

// ---- complete and fail ----

void Watcher::CompleteAndFail(InFlight* flight, const Batch& batch, Settled settled) {
  Result<CompleteResult> done =
      CompleteInStore(flight, batch, settled.deferred_bits, &settled.failures);
  // A Complete that succeeded decides: `lost` may have been raised by a
  // heartbeat Extend that ran just after the Complete deleted the rows.
  if (!done.ok() && (flight->lost.load() || done.status().code() == Code::kLeaseLost)) {
    fenced_->Inc();
    spdlog::warn("watcher fenced token={} stage=complete", flight->token);
    return;
  }
  if (!done.ok()) {
    // Indeterminate: leave the rows to lease expiry rather than guess.
    store_errors_->Inc();
    spdlog::error("watcher complete_error token={} error=\"{}\"", flight->token,
                  done.status().ToString());
    return;
  }
  if (done->remaining.empty()) return;
  std::sort(settled.failures.begin(), settled.failures.end(),
            [](const Failure& a, const Failure& b) { return a.consumer < b.consumer; });
  FailRemaining(flight, batch, done->remaining, settled.failures, settled.drain_cut);
}

std::vector<InStoreEffects> Watcher::BuildInStore(std::span<const DecodedEvent> events,
                                                  std::vector<Failure>* failures) {
  std::vector<InStoreEffects> out;
  std::vector<DecodedEvent> lacking;
  for (size_t i = 0; i < consumers_.size(); ++i) {
    const Consumer& c = *consumers_[i];
    if (!c.in_store()) continue;
    lacking.clear();
    for (const DecodedEvent& e : events) {
      if ((e.row->done_mask & c.bit()) == 0) lacking.push_back(e);
    }
    if (lacking.empty()) continue;
    deliveries_[i]->Inc(static_cast<int64_t>(lacking.size()));
    InStoreEffects part{.bit = c.bit(), .effects = {}};
    Status st = Guarded([&] {
      c.BuildEffects(lacking, &part.effects);
      return Status::Ok();
    });
    if (!st.ok()) {
      // Left out of the Complete: its bit stays unset and its rows are
      // failed like those of an external consumer that failed.
      failures_[i]->Inc(static_cast<int64_t>(lacking.size()));
      spdlog::warn("watcher consumer_failed consumer={} events={} error=\"{}\"", c.name(),
                   lacking.size(), st.ToString());
      failures->push_back(Failure{i, SeqsOf(lacking), std::move(st)});
      continue;
    }
    out.push_back(std::move(part));
  }
  return out;
}

Result<CompleteResult> Watcher::CompleteInStore(InFlight* flight, const Batch& batch,
                                                uint64_t external_bits,
                                                std::vector<Failure>* failures) {
  // In-store consumers go into the Complete transaction: their effects, their
  // bits and the delete commit together (exactly-once effect). The effects
  // are built here for the masks seen at claim; if the store finds those
  // masks changed it writes nothing and answers stale with the current ones,
  // and the effects are rebuilt for exactly the rows that still lack each bit.
  std::vector<ClaimedEvent> rebuilt_rows;
  std::vector<DecodedEvent> rebuilt;
  std::span<const ClaimedEvent> rows = batch.lease.events;
  std::span<const DecodedEvent> events = batch.events;
  std::vector<Failure> build_failures;
  CompleteRequest req{.token = batch.lease.token,
                      .events = rows,
                      .all_bits = all_bits_,
                      .external_bits = external_bits,
                      .in_store = BuildInStore(events, &build_failures)};
  Result<CompleteResult> done = Status::Internal("not attempted");
  int unavailable = 0;
  int stale = 0;
  while (!flight->lost.load()) {
    done = store_->Complete(req);
    if (done.ok() && done->stale) {
      stale_->Inc();
      if (++stale > kStaleRebuilds) {
        return Status::Internal("complete: in-store effects still stale after " +
                                std::to_string(kStaleRebuilds) + " rebuilds");
      }
      spdlog::info("watcher stale_effects token={} held={}", flight->token, done->held.size());
      // The held rows with their current masks; rows no longer held drop out.
      rebuilt_rows.clear();
      rebuilt_rows.reserve(done->held.size());
      std::vector<const Event*> bodies;
      for (const HeldRow& h : done->held) {
        auto it =
            std::lower_bound(batch.events.begin(), batch.events.end(), h.seq,
                             [](const DecodedEvent& e, int64_t seq) { return e.row->seq < seq; });
        if (it == batch.events.end() || it->row->seq != h.seq) continue;
        rebuilt_rows.push_back(*it->row);
        rebuilt_rows.back().done_mask = h.done_mask;
        bodies.push_back(it->event);
      }
      rebuilt.resize(rebuilt_rows.size());
      for (size_t i = 0; i < rebuilt_rows.size(); ++i) rebuilt[i] = {&rebuilt_rows[i], bodies[i]};
      rows = rebuilt_rows;
      events = rebuilt;
      build_failures.clear();
      req.events = rows;
      req.in_store = BuildInStore(events, &build_failures);
      continue;
    }
    if (done.ok() || done.status().code() != Code::kUnavailable) break;
    store_errors_->Inc();
    if (++unavailable >= kCompleteAttempts) break;
    clock_->SleepMs(int64_t{100} << (unavailable - 1));
  }
  failures->insert(failures->end(), std::make_move_iterator(build_failures.begin()),
                   std::make_move_iterator(build_failures.end()));
  return done;
}

void Watcher::FailRemaining(InFlight* flight, const Batch& batch,
                            const std::vector<int64_t>& remaining,
                            const std::vector<Failure>& failures, bool drain_cut) {
  // Each remaining row fails with the names of the consumers that failed it,
  // so `dlq requeue --consumer NAME` can find it.
  std::map<std::string, std::vector<int64_t>> by_error;
  for (int64_t seq : remaining) {
    std::string error;
    if (drain_cut) {
      error = "drain";
    } else {
      for (const Failure& f : failures) {
        if (!std::binary_search(f.seqs.begin(), f.seqs.end(), seq)) continue;
        if (!error.empty()) error += "; ";
        error += "consumer " + consumers_[f.consumer]->name() + ": " + f.error.message();
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
  } else {
    // A receiver that asked us to come back later (429/503 Retry-After) sets
    // the floor of the delay, so retries do not burn attempts against it.
    for (const Failure& f : failures) {
      backoff.min_delay_ms = std::max(backoff.min_delay_ms, consumers_[f.consumer]->RetryAfterMs());
    }
  }
  for (const auto& [error, seqs] : by_error) {
    if (flight->lost.load()) break;
    Result<FailResult> r = store_->Fail(
        FailRequest{.token = batch.lease.token, .seqs = seqs, .error = error, .backoff = backoff});
    if (!r.ok()) {
      if (r.status().code() == Code::kLeaseLost) {
        fenced_->Inc();
        spdlog::warn("watcher fenced token={} stage=fail", flight->token);
        return;
      }
      store_errors_->Inc();
      spdlog::error("watcher fail_error token={} error=\"{}\"", flight->token,
                    r.status().ToString());
      continue;
    }
    if (r->dead > 0) {
      dead_->Inc(r->dead);
      spdlog::warn("watcher dead token={} events={} error=\"{}\"", flight->token, r->dead, error);
    }
  }
}

}  // namespace sluice
