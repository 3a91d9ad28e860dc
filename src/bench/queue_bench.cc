#include "bench/queue_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "bench/counting_store.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "common/time.h"
#include "consumers/api/consumer.h"
#include "consumers/registry/registry.h"
#include "jobs/job_consumer.h"
#include "queue/open/open_store.h"
#include "watcher/watcher.h"

namespace sluice {
namespace {

// The bench's own external consumer: does nothing but sleep `sleep_ms` per
// delivery, like a sink waiting on the network. Used for "sink", and when the
// registry has no "test" consumer.
class SinkConsumer final : public Consumer {
 public:
  SinkConsumer(std::string name, uint64_t bit, int64_t sleep_ms)
      : Consumer(std::move(name), bit), sleep_ms_(sleep_ms) {}
  bool in_store() const override { return false; }
  Status Deliver(const Delivery& /*delivery*/) override {
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    return Status::Ok();
  }

 private:
  const int64_t sleep_ms_;
};

// Forwards to another consumer and counts the events handed to it.
class CountingConsumer final : public Consumer {
 public:
  CountingConsumer(ConsumerPtr inner, std::atomic<int64_t>* count)
      : Consumer(inner->name(), inner->bit()), inner_(std::move(inner)), count_(count) {}
  bool in_store() const override { return inner_->in_store(); }
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override {
    count_->fetch_add(static_cast<int64_t>(events.size()));
    inner_->BuildEffects(events, out);
  }
  Status Deliver(const Delivery& delivery) override {
    count_->fetch_add(static_cast<int64_t>(delivery.events.size()));
    return inner_->Deliver(delivery);
  }

 private:
  const ConsumerPtr inner_;
  std::atomic<int64_t>* const count_;
};

double Seconds(int64_t from_us, int64_t to_us) {
  return static_cast<double>(std::max<int64_t>(to_us - from_us, 1)) / 1e6;
}

JsonObject PreloadJson(const PreloadResult& p) {
  JsonObject j;
  j.Add("accepted", p.accepted).Add("duplicates", p.duplicates).Add("seconds", p.seconds);
  j.Add("events_per_s", p.events_per_s);
  return j;
}

std::string PreloadText(const PreloadResult& p) {
  if (p.accepted + p.duplicates == 0) return "";
  return fmt::format(
      "preload: {} events enqueued in {:.2f} s ({:.0f} events/s via Store::Enqueue)\n", p.accepted,
      p.seconds, p.events_per_s);
}

Result<StorePtr> OpenBenchStore(const BenchStoreAccess& access, const StoreOptions& options) {
  return access.open ? access.open(options) : OpenStore(options);
}

// The drivers claim and delete every event they find: refuse a store that
// holds events already unless told to use them.
Status CheckScratchStore(Store* store, const BenchStoreAccess& access,
                         const StoreOptions& options) {
  if (access.use_existing_events) return Status::Ok();
  SLUICE_ASSIGN_OR_RETURN(QueueStats stats, store->Stats());
  const int64_t held = stats.pending + stats.leased + stats.dead;
  if (held == 0) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "store {} already holds {} events; the benchmark would claim and delete them. Point "
      "--store at a scratch store, or pass --use-existing-events to run on them",
      RedactUrl(options.url), held));
}

std::string StoreKind(const std::string& url) {
  return url.rfind("sqlite:", 0) == 0 ? "sqlite" : "postgres";
}

// Builds the consumers of one replica. "sink" is the bench's own; "test"
// falls back to it when the registry does not know the type; "job" is one
// [[job]] keyed by user (delay 30 s, max_delay 5 m): its scheduling cost on
// the process path, without a runner.
Result<std::vector<ConsumerPtr>> BuildConsumers(const ProcessBenchOptions& o, Metrics* metrics,
                                                std::string* note) {
  std::vector<ConsumerConfig> configs;
  bool own_sink = false;
  bool job = false;
  int32_t next_bit = 2;  // users and counters own bits 0 and 1
  for (const std::string& type : o.consumers) {
    if (type == "sink") {
      own_sink = true;
      continue;
    }
    if (type == "job") {
      job = true;
      continue;
    }
    ConsumerConfig c;
    c.type = type;
    c.name = type;
    if (type != "users" && type != "counters") c.bit = next_bit++;
    c.options = o.consumer_options;
    configs.push_back(std::move(c));
  }
  std::vector<ConsumerPtr> out;
  if (!configs.empty()) {
    Result<std::vector<ConsumerPtr>> made = MakeConsumers(configs, metrics, o.consumer_types);
    if (!made.ok()) {
      const bool only_test = configs.size() == 1 && configs[0].type == "test";
      if (!only_test) return made.status();
      *note = "registry has no usable \"test\" consumer (" + made.status().ToString() +
              "); used the bench's own sleeping sink";
      own_sink = true;
    } else {
      out = std::move(made).value();
    }
  }
  if (job) {
    JobOptions j;
    j.name = "job";
    j.bit = next_bit++;
    j.url = "http://127.0.0.1:9/unused";
    SLUICE_RETURN_IF_ERROR(ValidateJobOptions("bench.job", &j));
    Result<std::vector<ConsumerPtr>> made = MakeJobConsumers({j}, out, metrics);
    if (!made.ok()) return made.status();
    for (ConsumerPtr& c : *made) out.push_back(std::move(c));
  }
  if (own_sink) {
    uint64_t used = 0;
    for (const auto& c : out) used |= c.get()->bit();
    int bit = next_bit;
    while (used & (uint64_t{1} << bit)) ++bit;
    int64_t sleep_ms = 0;
    auto it = o.consumer_options.find("sleep_ms");
    if (it != o.consumer_options.end()) sleep_ms = std::atoll(it->second.c_str());
    out.push_back(std::make_unique<SinkConsumer>("sink", uint64_t{1} << bit, sleep_ms));
  }
  return out;
}

// Sum of sluice_deliveries_total over its series, per consumer label, max over consumers.
int64_t DeliveriesFromMetrics(Metrics* metrics) {
  std::map<std::string, int64_t> per_consumer;
  std::istringstream in(metrics->RenderPrometheus());
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sluice_deliveries_total", 0) != 0) continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    per_consumer[line.substr(0, space)] += std::atoll(line.c_str() + space + 1);
  }
  int64_t best = 0;
  for (const auto& [k, v] : per_consumer) best = std::max(best, v);
  return best;
}

}  // namespace


Result<PreloadResult> Preload(Store* store, const PreloadOptions& o) {
  PreloadResult r;
  if (o.events <= 0) return r;
  if (o.batch <= 0 || o.threads <= 0) return Status::InvalidArgument("preload batch/threads <= 0");
  const SyntheticEvents gen(o.users, o.event_bytes, WallNowMs());
  const std::string prefix = RandomHex(12);
  const int64_t chunks = (o.events + o.batch - 1) / o.batch;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> duplicates{0};
  std::mutex mu;
  Status first_error;  // GUARDED_BY(mu)
  const int64_t t0 = NowMicros();
  auto work = [&] {
    std::vector<NewEvent> events;
    for (;;) {
      const int64_t chunk = next.fetch_add(1);
      if (chunk >= chunks) return;
      const int64_t from = chunk * o.batch;
      const int64_t to = std::min(o.events, from + o.batch);
      events.clear();
      for (int64_t i = from; i < to; ++i) {
        NewEvent e;
        e.project = o.project;
        e.insert_id = fmt::format("{}-{}", prefix, i);
        e.body = ToBody(gen.Make(i));
        events.push_back(std::move(e));
      }
      const EnqueueBatch batch{std::span<const NewEvent>(events)};
      Result<std::vector<EnqueueResult>> res =
          store->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
      if (!res.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = res.status();
        next.store(chunks);
        return;
      }
      for (const EnqueueResult& er : *res) {
        accepted.fetch_add(er.accepted);
        duplicates.fetch_add(er.duplicates);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int32_t t = 0; t < o.threads; ++t) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  if (!first_error.ok()) return first_error;
  r.accepted = accepted.load();
  r.duplicates = duplicates.load();
  r.seconds = Seconds(t0, NowMicros());
  r.events_per_s = static_cast<double>(r.accepted + r.duplicates) / r.seconds;
  return r;
}

Result<ClaimBenchResult> RunClaimBench(const ClaimBenchOptions& o) {
  if (o.claims < 0 || o.batch <= 0) return Status::InvalidArgument("need claims >= 0, batch > 0");
  SLUICE_ASSIGN_OR_RETURN(StorePtr store, OpenBenchStore(o.access, o.store));
  // Filling a store (claims 0) only adds events; claiming deletes them.
  if (o.claims > 0) SLUICE_RETURN_IF_ERROR(CheckScratchStore(store.get(), o.access, o.store));
  ClaimBenchResult r;
  SLUICE_ASSIGN_OR_RETURN(r.preload, Preload(store.get(), o.preload));
  SLUICE_ASSIGN_OR_RETURN(QueueStats before, store->Stats());
  r.pending_before = before.pending;
  std::vector<int64_t> claim_us;
  std::vector<int64_t> complete_us;
  ClaimRequest req;
  req.owner = "bench-claim";
  req.max_events = o.batch;
  req.lease_ttl_ms = o.lease_ttl_ms;
  for (int32_t round = 0; round < o.claims; ++round) {
    const int64_t t0 = NowMicros();
    SLUICE_ASSIGN_OR_RETURN(Lease lease, store->Claim(req));
    const int64_t t1 = NowMicros();
    if (lease.events.empty()) break;
    claim_us.push_back(t1 - t0);
    r.claimed += static_cast<int64_t>(lease.events.size());
    ++r.rounds;
    if (!o.complete) continue;
    CompleteRequest creq;
    creq.token = lease.token;
    creq.events = lease.events;
    creq.all_bits = 1;
    creq.external_bits = 1;
    const int64_t t2 = NowMicros();
    SLUICE_ASSIGN_OR_RETURN(CompleteResult done, store->Complete(creq));
    complete_us.push_back(NowMicros() - t2);
    (void)done;
  }
  const size_t tenth = std::max<size_t>(1, claim_us.size() / 10);
  std::vector<int64_t> first(
      claim_us.begin(), claim_us.begin() + static_cast<long>(std::min(tenth, claim_us.size())));
  std::vector<int64_t> last(claim_us.end() - static_cast<long>(std::min(tenth, claim_us.size())),
                            claim_us.end());
  r.claim_first = Summarize(&first);
  r.claim_last = Summarize(&last);
  r.claim = Summarize(&claim_us);
  r.complete = Summarize(&complete_us);
  return r;
}

std::string ClaimBenchResult::ToJson(const ClaimBenchOptions& o) const {
  JsonObject j;
  j.Add("bench", "claim").Add("store", StoreKind(o.store.url));
  j.Add("batch", static_cast<int64_t>(o.batch)).AddRaw("preload", PreloadJson(preload).Build());
  j.Add("pending_before", pending_before).Add("rounds", static_cast<int64_t>(rounds));
  j.Add("claimed", claimed).AddLatency("claim", claim).AddLatency("complete", complete);
  j.AddLatency("claim_first_10pct", claim_first).AddLatency("claim_last_10pct", claim_last);
  return j.Build();
}

std::string ClaimBenchResult::ToText(const ClaimBenchOptions& o) const {
  std::string out = PreloadText(preload);
  out += fmt::format("{} claims of {} events at {} pending rows ({}), {} events claimed\n", rounds,
                     o.batch, pending_before, StoreKind(o.store.url), claimed);
  out += "claim     " + FormatLatency(claim) + "\n";
  out += "complete  " + FormatLatency(complete) + "\n";
  out += "claim, first 10% of rounds  " + FormatLatency(claim_first) + "\n";
  out += "claim, last 10% of rounds   " + FormatLatency(claim_last) + "\n";
  return out;
}

Result<ProcessBenchResult> RunProcessBench(const ProcessBenchOptions& o) {
  if (o.replicas <= 0 || o.loops <= 0 || o.batch <= 0) {
    return Status::InvalidArgument("replicas, loops and batch must be > 0");
  }
  ProcessBenchResult r;
  SLUICE_ASSIGN_OR_RETURN(StorePtr main_store, OpenBenchStore(o.access, o.store));
  SLUICE_RETURN_IF_ERROR(CheckScratchStore(main_store.get(), o.access, o.store));
  SLUICE_ASSIGN_OR_RETURN(r.preload, Preload(main_store.get(), o.preload));
  SLUICE_ASSIGN_OR_RETURN(QueueStats before, main_store->Stats());
  r.pending_before = before.pending;

  StoreCounters counters;
  std::atomic<int64_t> deliveries_per_consumer[64] = {};
  struct Replica {
    std::unique_ptr<Metrics> metrics;
    std::unique_ptr<CountingStore> store;
    std::unique_ptr<Watcher> watcher;
  };
  std::vector<Replica> replicas;
  WatcherOptions wopts;
  wopts.loops = o.loops;
  wopts.batch = o.batch;
  wopts.lease_ttl_ms = o.lease_ttl_ms;
  // Short idle polls: the tail of a drain should not wait out a long backoff.
  wopts.idle_poll_min_ms = 1;
  wopts.idle_poll_max_ms = 20;
  for (int32_t i = 0; i < o.replicas; ++i) {
    Replica rep;
    rep.metrics = std::make_unique<Metrics>();
    SLUICE_ASSIGN_OR_RETURN(StorePtr inner, OpenBenchStore(o.access, o.store));
    rep.store = std::make_unique<CountingStore>(std::move(inner), &counters);
    SLUICE_ASSIGN_OR_RETURN(std::vector<ConsumerPtr> made,
                            BuildConsumers(o, rep.metrics.get(), &r.consumer_note));
    std::vector<ConsumerPtr> wrapped;
    for (size_t k = 0; k < made.size() && k < 64; ++k) {
      wrapped.push_back(
          std::make_unique<CountingConsumer>(std::move(made[k]), &deliveries_per_consumer[k]));
    }
    rep.watcher = std::make_unique<Watcher>(rep.store.get(), std::move(wrapped), wopts,
                                            fmt::format("bench-r{}", i), rep.metrics.get());
    replicas.push_back(std::move(rep));
  }

  const int64_t expected = r.pending_before;
  const double cpu0 = ProcessCpuSeconds();
  const int64_t t0 = NowMicros();
  for (auto& rep : replicas) rep.watcher->Start();
  int64_t t_end = 0;
  if (o.duration_s > 0) {
    std::this_thread::sleep_for(
        std::chrono::microseconds(static_cast<int64_t>(o.duration_s * 1e6)));
    t_end = NowMicros();
    r.completed = counters.deleted.load();
  } else {
    int64_t last_stats_us = t0;
    for (;;) {
      if (counters.deleted.load() >= expected) break;
      const int64_t now = NowMicros();
      if (now - t0 > static_cast<int64_t>(o.timeout_s * 1e6)) {
        r.timed_out = true;
        break;
      }
      if (now - last_stats_us > 1000000) {
        // Rows that went dead never complete: stop once nothing is left to claim.
        last_stats_us = now;
        Result<QueueStats> st = main_store->Stats();
        if (st.ok() && st->pending == 0 && st->leased == 0) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    r.completed = counters.deleted.load();
    t_end = r.timed_out ? NowMicros() : std::max(counters.last_delete_us.load(), t0 + 1);
  }
  r.cpu_s = ProcessCpuSeconds() - cpu0;
  for (auto& rep : replicas) rep.watcher->Drain();
  r.seconds = Seconds(t0, t_end);
  r.events_per_s = static_cast<double>(r.completed) / r.seconds;
  for (const auto& d : deliveries_per_consumer) r.deliveries = std::max(r.deliveries, d.load());
  int64_t from_metrics = 0;
  for (auto& rep : replicas) from_metrics += DeliveriesFromMetrics(rep.metrics.get());
  if (from_metrics > 0) r.deliveries = std::max(r.deliveries, from_metrics);
  r.claims = counters.claims.load();
  r.lease_lost = counters.lease_lost.load();
  // Every claimed event is handed to the consumers lacking its bit; after the
  // drain each event claimed once was deleted once, so the excess are events
  // dispatched again while another claimer held them (or retried after a failure).
  const int64_t deleted_total = counters.deleted.load();
  r.duplicate_dispatches = std::max<int64_t>(0, counters.claimed_events.load() - deleted_total);
  {
    std::lock_guard<std::mutex> lock(counters.mu);
    r.claim = Summarize(&counters.claim_us);
    r.complete = Summarize(&counters.complete_us);
  }
  SLUICE_ASSIGN_OR_RETURN(QueueStats after, main_store->Stats());
  r.pending_after = after.pending + after.leased;
  r.dead_after = after.dead;
  replicas.clear();
  return r;
}

std::string ProcessBenchResult::ToJson(const ProcessBenchOptions& o) const {
  std::string consumers;
  for (const auto& c : o.consumers) consumers += (consumers.empty() ? "" : ",") + c;
  JsonObject opts;
  for (const auto& [k, v] : o.consumer_options) opts.Add(k, v);
  JsonObject j;
  j.Add("bench", "process").Add("store", StoreKind(o.store.url));
  j.Add("claim_strategy", o.access.claim_label);
  j.Add("consumers", consumers).AddRaw("consumer_options", opts.Build());
  j.Add("replicas", static_cast<int64_t>(o.replicas)).Add("loops", static_cast<int64_t>(o.loops));
  j.Add("batch", static_cast<int64_t>(o.batch)).Add("duration_s", o.duration_s);
  j.AddRaw("preload", PreloadJson(preload).Build()).Add("pending_before", pending_before);
  j.Add("completed", completed).Add("seconds", seconds).Add("events_per_s", events_per_s);
  j.Add("cpu_s", cpu_s);
  j.Add("deliveries", deliveries).Add("duplicate_dispatches", duplicate_dispatches);
  j.Add("claims", claims).Add("lease_lost", lease_lost).Add("pending_after", pending_after);
  j.Add("dead_after", dead_after).AddBool("timed_out", timed_out);
  j.Add("note", consumer_note).AddLatency("claim", claim).AddLatency("complete", complete);
  return j.Build();
}

std::string ProcessBenchResult::ToText(const ProcessBenchOptions& o) const {
  std::string consumers;
  for (const auto& c : o.consumers) consumers += (consumers.empty() ? "" : "+") + c;
  std::string out = PreloadText(preload);
  out += fmt::format(
      "{:.0f} events/s  ({} events completed in {:.2f} s; {} replica(s) x {} loop(s), batch {}, "
      "{}, consumers {}, {} claim)\n",
      events_per_s, completed, seconds, o.replicas, o.loops, o.batch, StoreKind(o.store.url),
      consumers, o.access.claim_label);
  out += fmt::format(
      "deliveries {}  duplicate dispatches {}  claims {}  lease-lost {}  left {}  dead {}  "
      "CPU {:.2f} s{}\n",
      deliveries, duplicate_dispatches, claims, lease_lost, pending_after, dead_after, cpu_s,
      timed_out ? "  TIMED OUT" : "");
  out += "claim     " + FormatLatency(claim) + "\n";
  out += "complete  " + FormatLatency(complete) + "\n";
  if (!consumer_note.empty()) out += "note: " + consumer_note + "\n";
  return out;
}

}  // namespace sluice
