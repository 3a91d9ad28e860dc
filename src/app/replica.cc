#include "app/replica.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "app/logging.h"
#include "app/version.h"
#include "app/write_health.h"
#include "common/strings.h"
#include "common/time.h"
#include "consumers/registry/registry.h"
#include "ingest/formats/registry.h"
#include "http/http_server.h"
#include "ingest/ingest_service.h"
#include "jobs/job_consumer.h"
#include "jobs/job_runner.h"
#include "ops/activity.h"
#include "ops/console.h"
#include "ops/event_tail.h"
#include "ops/ops_service.h"
#include "watcher/watcher.h"

namespace sluice {
namespace {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// How long the HTTP server waits for in-flight requests at shutdown.
constexpr int64_t kHttpGraceMs = 5000;

}  // namespace

std::string GenerateReplicaId() {
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rd() & 0xffff));
  return HostName() + "-" + std::to_string(getpid()) + "-" + suffix;
}

Replica::Replica(const Config& config, AppHooks hooks)
    : config_(config), hooks_(std::move(hooks)) {}

Replica::~Replica() { Shutdown(); }

std::string Replica::address() const {
  std::string host;
  int port = 0;
  if (!SplitHostPort(config_.server.listen, &host, &port).ok()) host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(port_);
}

Result<std::unique_ptr<Replica>> Replica::Start(const Config& config, const AppHooks& hooks) {
  SLUICE_RETURN_IF_ERROR(CheckTestOnly(config.test_only, hooks));
  std::unique_ptr<Replica> r(new Replica(config, hooks));
  Status st = r->StartImpl();
  if (!st.ok()) {
    r->Shutdown();
    return st;
  }
  return r;
}

Status Replica::StartImpl() {
  id_ = config_.replica_id.empty() ? GenerateReplicaId() : config_.replica_id;
  host_ = HostName();
  metrics_
      .GetGauge("sluice_build_info", "Constant 1, labelled with the version",
                Labels({{"version", kSluiceVersion}}))
      .Set(1);

  Result<StorePtr> store = OpenStoreWithHooks(config_.store, config_.test_only, hooks_);
  if (!store.ok()) {
    return Status(store.status().code(), "opening store " + RedactUrl(config_.store.url) + ": " +
                                             store.status().message());
  }
  // Every store write the replica's readiness depends on goes through the
  // write-health wrapper (/readyz reports a failing disk, app/write_health.h);
  // completed events are counted for the console's processing rate.
  auto health = std::make_unique<WriteHealthStore>(std::move(store).value());
  WriteHealthStore* write_health = health.get();
  store_ = std::make_unique<CompletionCountingStore>(std::move(health), &metrics_);

  ReplicaInfo info;
  info.id = id_;
  info.host = host_;
  info.pid = getpid();
  info.version = kSluiceVersion;
  info.started_ms = WallNowMs();
  SLUICE_RETURN_IF_ERROR(store_->RegisterReplica(info));
  {
    std::lock_guard lock(mu_);
    started_ = true;  // from here on Shutdown removes the replica row
  }

  Result<std::vector<ConsumerPtr>> consumers = MakeConsumers(config_.consumers, &metrics_, hooks_.consumer_types);
  if (!consumers.ok()) return consumers.status();
  // Each [[job]] is one more in-store consumer: its bit is set in the
  // transaction that schedules its runs (docs/jobs.md).
  Result<std::vector<ConsumerPtr>> job_consumers =
      MakeJobConsumers(config_.jobs, *consumers, &metrics_);
  if (!job_consumers.ok()) return job_consumers.status();
  for (ConsumerPtr& c : *job_consumers) consumers->push_back(std::move(c));
  std::string consumer_names;
  std::vector<LocalConsumer> local;
  for (const ConsumerPtr& c : *consumers) {
    if (!consumer_names.empty()) consumer_names += ",";
    consumer_names += c->name();
    // The watcher owns the consumer and outlives every reader of this.
    const Consumer* raw = c.get();
    local.push_back(LocalConsumer{ConsumerSpec{c->name(), c->bit(), c->in_store()},
                                  [raw] { return raw->RetryAfterMs(); }});
  }
  activity_ = std::make_unique<ReplicaActivity>(&metrics_, std::move(local),
                                                std::max(0, config_.watcher.loops));
  activity_->Sample(WallNowMs());  // the baseline the first heartbeat's deltas start from
  if (config_.console.enabled && config_.console.tail.max_streams > 0) {
    tail_ = std::make_unique<EventTail>(config_.console.tail, id_, &metrics_);
  }
  watcher_ = std::make_unique<Watcher>(store_.get(), std::move(consumers).value(), config_.watcher,
                                       id_, &metrics_);
  Watcher* watcher = watcher_.get();
  GroupCommitter::Committed on_committed;
  if (tail_ != nullptr) {
    EventTail* tail = tail_.get();
    on_committed = [tail](std::span<const EnqueueBatch> batches,
                          std::span<const EnqueueResult> results) {
      tail->Publish(batches, results);
    };
  }
  ingest_ = std::make_unique<IngestService>(store_.get(), config_.ingest, config_.auth, &metrics_,
                                            AllFormats(), [watcher] { watcher->Wake(); },
                                            std::move(on_committed));
  OpsOptions ops_options;
  ops_options.auth = config_.auth;
  ops_options.replica_alive_within_ms =
      std::max<int64_t>(10000, 5 * config_.watcher.replica_heartbeat_ms);
  ops_options.session_ttl_ms = config_.console.session_ttl_ms;
  ops_options.store_write_status = [write_health] { return write_health->WriteStatus(); };
  ops_ = std::make_unique<OpsService>(store_.get(), &metrics_, ops_options, &draining_);
  console_ = std::make_unique<Console>(store_.get(), &metrics_, config_.console,
                                       ops_->admin_auth(), tail_.get(),
                                       activity_->consumer_specs(),
                                       ops_options.replica_alive_within_ms, id_);

  server_ = std::make_unique<HttpServer>(config_.server, config_.ingest.max_body_bytes, &metrics_);
  for (OpsRoute& route : ops_->Routes()) {
    server_->Route(route.method, route.path, std::move(route.handler));
  }
  for (OpsRoute& route : console_->Routes()) {
    server_->Route(route.method, route.path, std::move(route.handler));
  }
  ingest_->RegisterRoutes(server_.get());

  // Bind first: a replica that cannot listen should not start claiming work.
  Result<int> port = server_->Start();
  if (!port.ok()) {
    return Status(port.status().code(),
                  "listening on " + config_.server.listen + ": " + port.status().message());
  }
  port_ = *port;
  watcher_->Start();
  if (!config_.jobs.empty()) {
    jobs_ = std::make_unique<JobRunner>(store_.get(), config_.jobs, config_.job_runner, id_,
                                        &metrics_);
    jobs_->Start();
  }
  // Work enqueued by other replicas wakes this one at once where the store can
  // tell (PostgreSQL LISTEN/NOTIFY); idle polling is the fallback.
  store_->SetWakeCallback([watcher] { watcher->Wake(); });

  heartbeat_thread_ = std::thread([this] { HeartbeatMain(); });
  duty_thread_ = std::thread([this] { DutyMain(); });

  LogEvent(spdlog::level::info, "started",
           {{"replica", id_},
            {"version", kSluiceVersion},
            {"store", RedactUrl(config_.store.url)},
            {"store_kind", store_->kind()},
            {"consumers", consumer_names},
            {"jobs", static_cast<int64_t>(config_.jobs.size())},
            {"write_keys", static_cast<int64_t>(config_.auth.write_keys.size())},
            {"admin_token", config_.auth.admin_token.empty() ? "unset" : "set"},
            {"loops", config_.watcher.loops},
            {"batch", config_.watcher.batch},
            {"lease_ttl_ms", config_.watcher.lease_ttl_ms}});
  LogEvent(spdlog::level::info, "listening", {{"addr", address()}, {"replica", id_}});
  return Status::Ok();
}

bool Replica::WaitForStop(int64_t ms) {
  std::unique_lock lock(mu_);
  return stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void Replica::HeartbeatMain() {
  Counter& failures = metrics_.GetCounter("sluice_replica_heartbeat_failures_total",
                                          "Replica heartbeats the store refused or missed");
  bool healthy = true;
  while (!WaitForStop(config_.watcher.replica_heartbeat_ms)) {
    // The heartbeat carries this replica's activity (ops/activity.h).
    const int64_t now = WallNowMs();
    activity_->Sample(now);
    Status st = store_->PublishReplicaStats(id_, activity_->StatsJson(now));
    if (st.code() == Code::kNotFound) {
      // Someone removed our row (an operator, or a long stall): register again.
      ReplicaInfo info;
      info.id = id_;
      info.host = host_;
      info.pid = getpid();
      info.version = kSluiceVersion;
      info.started_ms = WallNowMs();
      st = store_->RegisterReplica(info);
    }
    if (!st.ok()) {
      failures.Inc();
      if (healthy) {
        LogEvent(spdlog::level::warn, "replica heartbeat failed", {{"error", st.ToString()}});
      }
      healthy = false;
    } else if (!healthy) {
      LogEvent(spdlog::level::info, "replica heartbeat recovered");
      healthy = true;
    }
  }
}

void Replica::MaintainDedupRound() {
  const int64_t interval = config_.watcher.dedup_prune_interval_ms;
  // The lease outlives a round and a missed renewal or two; a dead holder's
  // duty moves to another replica after this long.
  const int64_t ttl = std::max<int64_t>(3 * interval, 5000);
  Result<int64_t> token = store_->AcquireNamedLease(kDedupPruneLease, id_, ttl);
  if (!token.ok()) {
    duty_token_ = 0;
    if (token.status().code() != Code::kBusy) {
      LogEvent(spdlog::level::warn, "dedup maintenance: lease failed",
               {{"error", token.status().ToString()}});
    }
    return;
  }
  if (duty_token_ != *token) {
    LogEvent(spdlog::level::info, "singleton duty acquired", {{"duty", kDedupPruneLease}});
  }
  duty_token_ = *token;
  Counter& created = metrics_.GetCounter("sluice_dedup_buckets_created_total",
                                         "Dedup window buckets created by the maintenance duty");
  Counter& dropped =
      metrics_.GetCounter("sluice_dedup_buckets_dropped_total",
                          "Dedup window buckets dropped whole (every entry older than the window)");
  Counter& rounds = metrics_.GetCounter("sluice_singleton_duty_runs_total",
                                        "Rounds of singleton duties run by this replica",
                                        Labels({{"duty", kDedupPruneLease}}));
  rounds.Inc();
  // One call does the whole round: a rotation and a few DROP TABLEs, each
  // O(1) in the entries they hold, so the work needs no chunking.
  Result<DedupMaintenance> m = store_->MaintainDedup(duty_token_);
  if (!m.ok()) {
    if (m.status().code() == Code::kLeaseLost) duty_token_ = 0;
    LogEvent(spdlog::level::warn, "dedup maintenance failed", {{"error", m.status().ToString()}});
    return;
  }
  created.Inc(m->created);
  dropped.Inc(m->dropped);
  metrics_.GetGauge("sluice_dedup_buckets", "Dedup window buckets live after the last round")
      .Set(m->live);
}

void Replica::DutyMain() {
  do {
    MaintainDedupRound();
  } while (!WaitForStop(config_.watcher.dedup_prune_interval_ms));
  if (duty_token_ != 0) {
    Status st = store_->ReleaseNamedLease(kDedupPruneLease, duty_token_);
    if (!st.ok()) {
      LogEvent(spdlog::level::warn, "releasing singleton duty failed",
               {{"duty", kDedupPruneLease}, {"error", st.ToString()}});
    }
    duty_token_ = 0;
  }
}

void Replica::Shutdown() {
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  draining_ = true;
  if (server_ != nullptr) {
    LogEvent(spdlog::level::info, "draining", {{"replica", id_}});
    // Stop accepting; requests in flight (ingest waiting for its commit) finish.
    server_->Stop(kHttpGraceMs);
  }
  if (ingest_ != nullptr) ingest_->Stop();
  if (tail_ != nullptr) tail_->Stop();
  if (store_ != nullptr) store_->SetWakeCallback(nullptr);
  if (watcher_ != nullptr) watcher_->Drain();
  if (jobs_ != nullptr) jobs_->Drain();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (duty_thread_.joinable()) duty_thread_.join();
  bool started = false;
  {
    std::lock_guard lock(mu_);
    started = started_;
  }
  if (started && store_ != nullptr) {
    Status st = store_->RemoveReplica(id_);
    if (!st.ok()) {
      LogEvent(spdlog::level::warn, "removing replica row failed", {{"error", st.ToString()}});
    }
  }
  if (server_ != nullptr) LogEvent(spdlog::level::info, "stopped", {{"replica", id_}});
}

int Serve(const Config& config, const AppHooks& hooks) {
  // Block the stop signals in every thread (threads inherit the mask) and wait
  // for them here, so no handler runs in an arbitrary thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Result<std::unique_ptr<Replica>> replica = Replica::Start(config, hooks);
  if (!replica.ok()) {
    LogEvent(spdlog::level::err, "start failed", {{"error", replica.status().ToString()}});
    return 1;
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  LogEvent(spdlog::level::info, "signal received",
           {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  // A second SIGINT (Ctrl-C again) gives up on the drain. Repeated SIGTERMs
  // are ignored: supervisors and timeout(1) often deliver one to the process
  // and one to its group.
  std::thread([stop_signals] {
    while (true) {
      int again = 0;
      sigwait(&stop_signals, &again);
      if (again == SIGINT) break;
      LogEvent(spdlog::level::info, "already draining; SIGTERM ignored");
    }
    LogEvent(spdlog::level::warn, "second SIGINT: exiting without finishing the drain");
    spdlog::default_logger()->flush();
    _exit(1);
  }).detach();
  (*replica)->Shutdown();
  replica->reset();
  return 0;
}

}  // namespace sluice
