#include "bench/bench_cli.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/ceiling.h"
#include "bench/jobs_bench.h"
#include "bench/load_generator.h"
#include "bench/queue_bench.h"
#include "queue/open/open_store.h"

namespace sluice {
namespace {

// The parsed flags live here between AddBenchCommands and RunBenchCommand
// (CLI11 binds options to storage that must outlive parsing).
struct BenchFlags {
  CLI::App* ingest = nullptr;
  CLI::App* claim = nullptr;
  CLI::App* process = nullptr;
  CLI::App* jobs = nullptr;
  CLI::App* ceiling = nullptr;
  bool json = false;
  JobsBenchOptions jobs_opts;
  CeilingBenchOptions ceiling_opts;

  IngestBenchOptions ingest_opts;

  std::string store_url = "sqlite:./sluice-bench/sluice.db";
  bool sync = true;
  int32_t pool_size = 8;
  std::vector<std::string> test_only;  // KEY=VALUE, for wrap_store (test binary only)
  bool use_existing_events = false;
  PreloadOptions preload;

  ClaimBenchOptions claim_opts;
  bool no_complete = false;

  ProcessBenchOptions process_opts;
  StoreDecorator wrap_store;
  std::span<const ConsumerType> consumer_types;
  std::string consumers = "users,counters";
  std::vector<std::string> consumer_kv;
};

BenchFlags& Flags() {
  static BenchFlags* flags = new BenchFlags();
  return *flags;
}

void AddStoreFlags(CLI::App* cmd, BenchFlags* f) {
  cmd->add_option("--store", f->store_url, "store URL: sqlite:PATH or postgres://...")
      ->capture_default_str();
  cmd->add_option("--sync", f->sync, "durable commits (fsync / synchronous_commit)")
      ->capture_default_str();
  cmd->add_option("--pool-size", f->pool_size, "store connections per replica")
      ->capture_default_str();
  cmd->add_flag("--use-existing-events", f->use_existing_events,
                "run on the events the store already holds (they are claimed and deleted); "
                "without it a store that holds events is refused");
  if (f->wrap_store) {
    cmd->add_option("--test-only", f->test_only,
                    "KEY=VALUE test-only setting (e.g. store.claim_strategy=naive)");
  }
  cmd->add_option("--preload", f->preload.events,
                  "events to enqueue through Store::Enqueue before the run")
      ->capture_default_str();
  cmd->add_option("--preload-batch", f->preload.batch, "events per preload transaction")
      ->capture_default_str();
  cmd->add_option("--preload-threads", f->preload.threads, "concurrent preload callers")
      ->capture_default_str();
  cmd->add_option("--event-bytes", f->preload.event_bytes, "approximate size of one event")
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "print one JSON object instead of the table");
}

Result<StoreOptions> StoreFlags(const BenchFlags& f) {
  StoreOptions s;
  s.url = f.store_url;
  s.sync = f.sync;
  s.pool_size = f.pool_size;
  return s;
}

Result<BenchStoreAccess> StoreAccess(const BenchFlags& f) {
  BenchStoreAccess a;
  a.use_existing_events = f.use_existing_events;
  if (!f.wrap_store) return a;
  TestOnlySettings settings;
  for (const std::string& kv : f.test_only) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument("--test-only wants KEY=VALUE, got " + kv);
    }
    settings.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    if (settings.back().first == "store.claim_strategy") a.claim_label = settings.back().second;
  }
  a.open = [wrap = f.wrap_store, settings](const StoreOptions& o) -> Result<StorePtr> {
    SLUICE_ASSIGN_OR_RETURN(StorePtr store, OpenStore(o));
    return wrap(std::move(store), o, settings);
  };
  return a;
}

int Fail(const Status& st) {
  std::fprintf(stderr, "sluice bench: %s\n", st.ToString().c_str());
  return 1;
}

void Print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int RunIngest(BenchFlags& f) {
  Result<IngestBenchResult> r = RunIngestBench(f.ingest_opts);
  if (!r.ok()) return Fail(r.status());
  Print(f.json ? r->ToJson(f.ingest_opts) + "\n" : r->ToText(f.ingest_opts));
  // Failed requests make the run's figure meaningless for a script.
  return r->requests_failed == 0 ? 0 : 3;
}

int RunClaim(BenchFlags& f) {
  Result<StoreOptions> store = StoreFlags(f);
  if (!store.ok()) return Fail(store.status());
  f.claim_opts.store = *store;
  Result<BenchStoreAccess> access = StoreAccess(f);
  if (!access.ok()) return Fail(access.status());
  f.claim_opts.access = std::move(*access);
  f.claim_opts.preload = f.preload;
  f.claim_opts.complete = !f.no_complete;
  Result<ClaimBenchResult> r = RunClaimBench(f.claim_opts);
  if (!r.ok()) return Fail(r.status());
  Print(f.json ? r->ToJson(f.claim_opts) + "\n" : r->ToText(f.claim_opts));
  return 0;
}

int RunJobs(BenchFlags& f) {
  Result<StoreOptions> options = StoreFlags(f);
  if (!options.ok()) return Fail(options.status());
  Result<StorePtr> store = OpenStore(*options);
  if (!store.ok()) return Fail(store.status());
  Result<JobsBenchResult> r = RunJobsBench(store->get(), f.jobs_opts);
  if (!r.ok()) return Fail(r.status());
  const std::string kind = (*store)->kind();
  if (f.json) {
    Print(fmt::format("{{\"store_kind\":\"{}\",\"runs\":{},\"seconds\":{:.3f},"
                      "\"runs_per_s\":{:.1f},\"loops\":{},\"batch\":{},\"cpu_s\":{:.2f},"
                      "\"schedule_seconds\":{:.2f}}}\n",
                      kind, r->runs, r->seconds, r->runs_per_s, f.jobs_opts.loops,
                      f.jobs_opts.batch, r->cpu_s, r->schedule_seconds));
  } else {
    Print(fmt::format("jobs ({}): {} runs in {:.2f} s = {:.0f} runs/s ({} loops, {} per claim, "
                      "{:.2f} CPU s); scheduling them took {:.2f} s\n",
                      kind, r->runs, r->seconds, r->runs_per_s, f.jobs_opts.loops,
                      f.jobs_opts.batch, r->cpu_s, r->schedule_seconds));
  }
  return 0;
}

int RunProcess(BenchFlags& f) {
  Result<StoreOptions> store = StoreFlags(f);
  if (!store.ok()) return Fail(store.status());
  ProcessBenchOptions& o = f.process_opts;
  o.store = *store;
  Result<BenchStoreAccess> access = StoreAccess(f);
  if (!access.ok()) return Fail(access.status());
  o.access = std::move(*access);
  o.consumer_types = f.consumer_types;
  o.preload = f.preload;
  o.consumers.clear();
  size_t start = 0;
  while (start <= f.consumers.size()) {
    size_t comma = f.consumers.find(',', start);
    if (comma == std::string::npos) comma = f.consumers.size();
    if (comma > start) o.consumers.push_back(f.consumers.substr(start, comma - start));
    start = comma + 1;
  }
  if (o.consumers.empty()) return Fail(Status::InvalidArgument("--consumers is empty"));
  for (const std::string& kv : f.consumer_kv) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return Fail(Status::InvalidArgument("--consumer-opt wants KEY=VALUE, got " + kv));
    }
    o.consumer_options[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  Result<ProcessBenchResult> r = RunProcessBench(o);
  if (!r.ok()) return Fail(r.status());
  Print(f.json ? r->ToJson(o) + "\n" : r->ToText(o));
  return r->timed_out ? 3 : 0;
}

int RunCeiling(BenchFlags& f) {
  Result<StoreOptions> store = StoreFlags(f);
  if (!store.ok()) return Fail(store.status());
  f.ceiling_opts.store = *store;
  Result<CeilingBenchResult> r = RunCeilingBench(f.ceiling_opts);
  if (!r.ok()) return Fail(r.status());
  Print(f.json ? r->ToJson(f.ceiling_opts) + "\n" : r->ToText(f.ceiling_opts));
  return 0;
}

// Bench output (tables, --json) owns stdout; the store's and watcher's logs go
// to stderr, warnings and worse only, so they neither mix with the JSON nor
// cost time in the measured path.
void QuietLogs() {
  auto logger =
      std::make_shared<spdlog::logger>("bench", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_level(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace

void AddBenchCommands(CLI::App* app, StoreDecorator wrap_store,
                      std::span<const ConsumerType> consumer_types) {
  BenchFlags& f = Flags();
  f.wrap_store = std::move(wrap_store);
  f.consumer_types = consumer_types;
  CLI::App* bench = app->add_subcommand("bench", "load generator and benchmark drivers");
  bench->require_subcommand(1);

  f.ingest = bench->add_subcommand("ingest", "HTTP load: POST /v1/events with unique insert_ids");
  IngestBenchOptions& io = f.ingest_opts;
  f.ingest->add_option("--url", io.url, "ingest URL (http://HOST:PORT[/path])")
      ->capture_default_str();
  f.ingest->add_option("--events", io.events, "events to send")->capture_default_str();
  f.ingest->add_option("--batch", io.batch, "events per request")->capture_default_str();
  f.ingest->add_option("--connections", io.connections, "keep-alive connections")
      ->capture_default_str();
  f.ingest->add_option("--event-bytes", io.event_bytes, "approximate size of one event")
      ->capture_default_str();
  f.ingest->add_flag("--random-ids", io.random_ids,
                     "insert_ids spread like random ones (as SDK UUIDs), not in counter order");
  f.ingest->add_option("--dup-frac", io.dup_frac, "fraction of events re-using an earlier id")
      ->capture_default_str();
  f.ingest->add_flag("--gzip", io.gzip, "gzip request bodies (compressed before the clock)");
  f.ingest->add_option("--write-key", io.write_key, "sent as Authorization: Bearer KEY");
  f.ingest->add_option("--rate", io.rate, "target events/s, open loop; 0 = flat out")
      ->capture_default_str();
  f.ingest->add_option("--threads", io.threads, "client I/O threads")->capture_default_str();
  f.ingest->add_option("--users", io.users, "distinct user ids")->capture_default_str();
  f.ingest
      ->add_option("--window", io.window_s,
                   "seconds: also report ack latency per window of the send times; 0 = off")
      ->capture_default_str();
  f.ingest->add_flag("--json", f.json, "print one JSON object instead of the table");

  f.claim = bench->add_subcommand("claim", "claim latency at a queue depth (direct Store API)");
  AddStoreFlags(f.claim, &f);
  f.claim->add_option("--claims", f.claim_opts.claims, "claim rounds")->capture_default_str();
  f.claim->add_option("--batch", f.claim_opts.batch, "events per claim")->capture_default_str();
  f.claim->add_flag("--no-complete", f.no_complete, "leave claimed rows leased (no delete)");

  f.process = bench->add_subcommand(
      "process", "in-process replicas (Store + Watcher each) drain a pre-loaded queue");
  AddStoreFlags(f.process, &f);
  ProcessBenchOptions& po = f.process_opts;
  f.process
      ->add_option("--consumers", f.consumers,
                   "comma list: users,counters,test,... or sink (the bench's no-op)")
      ->capture_default_str();
  f.process->add_option("--consumer-opt", f.consumer_kv,
                        "KEY=VALUE for every consumer "
                        "(e.g. sleep_ms=20)");
  f.process->add_option("--replicas", po.replicas, "in-process replicas")->capture_default_str();
  f.process->add_option("--loops", po.loops, "claim loops per replica")->capture_default_str();
  f.process->add_option("--batch", po.batch, "events per claim")->capture_default_str();
  f.process->add_option("--lease-ttl-ms", po.lease_ttl_ms, "lease TTL")->capture_default_str();
  f.process
      ->add_option("--duration", po.duration_s,
                   "seconds to run (then drain); 0 = until the queue is empty")
      ->capture_default_str();
  f.process->add_option("--timeout", po.timeout_s, "give up after this many seconds")
      ->capture_default_str();

  f.jobs = bench->add_subcommand(
      "jobs", "job runs/s: one replica's JobRunner runs pre-scheduled runs against --url");
  AddStoreFlags(f.jobs, &f);
  JobsBenchOptions& jo = f.jobs_opts;
  f.jobs->add_option("--url", jo.url, "the handler (a local receiver answering 200)")->required();
  f.jobs->add_option("--keys", jo.keys, "runs (one per key)")->capture_default_str();
  f.jobs->add_option("--loops", jo.loops, "runner claim loops")->capture_default_str();
  f.jobs->add_option("--batch", jo.batch, "runs per claim")->capture_default_str();
  f.jobs->add_option("--timeout", jo.timeout_s, "give up after this many seconds")
      ->capture_default_str();

  f.ceiling = bench->add_subcommand(
      "ceiling", "the rows one event costs the store, in large transactions (no HTTP, no JSON)");
  CeilingBenchOptions& co = f.ceiling_opts;
  f.ceiling->add_option("--store", f.store_url, "store URL: sqlite:PATH or postgres://... (fresh)")
      ->capture_default_str();
  f.ceiling->add_option("--sync", f.sync, "durable commits (fsync / synchronous_commit)")
      ->capture_default_str();
  f.ceiling->add_option("--events", co.events, "events to write")->capture_default_str();
  f.ceiling->add_option("--txn-events", co.txn_events, "events per transaction")
      ->capture_default_str();
  f.ceiling->add_option("--batch", co.batch, "events per aggregate batch (the claim size)")
      ->capture_default_str();
  f.ceiling->add_option("--users", co.users, "distinct user ids")->capture_default_str();
  f.ceiling->add_option("--event-bytes", co.event_bytes, "approximate size of one event")
      ->capture_default_str();
  f.ceiling
      ->add_option("--template-events", co.template_events,
                   "event i has the content of event i % N (as `bench ingest` repeats "
                   "connections x batch events); 0 = all distinct")
      ->capture_default_str();
  f.ceiling->add_flag("--json", f.json, "print one JSON object instead of the text");
}

int RunBenchCommand() {
  BenchFlags& f = Flags();
  const bool selected = (f.ingest != nullptr && f.ingest->parsed()) ||
                        (f.claim != nullptr && f.claim->parsed()) ||
                        (f.process != nullptr && f.process->parsed()) ||
                        (f.jobs != nullptr && f.jobs->parsed()) ||
                        (f.ceiling != nullptr && f.ceiling->parsed());
  if (!selected) return -1;
  QuietLogs();
  if (f.ingest != nullptr && f.ingest->parsed()) return RunIngest(f);
  if (f.claim != nullptr && f.claim->parsed()) return RunClaim(f);
  if (f.process != nullptr && f.process->parsed()) return RunProcess(f);
  if (f.jobs != nullptr && f.jobs->parsed()) return RunJobs(f);
  if (f.ceiling != nullptr && f.ceiling->parsed()) return RunCeiling(f);
  return -1;
}

}  // namespace sluice
