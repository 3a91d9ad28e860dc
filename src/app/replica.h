// Replica: one running `sluice serve` — the store, the watcher's claim loops,
// the ingest service, the ops endpoints and the HTTP server, plus the replica
// heartbeat (which also publishes the replica's activity for the console)
// and the singleton duties (dedup window maintenance under a named lease).
//
// Start() brings everything up and returns once the server listens;
// Shutdown() drains in order: readiness off, stop accepting HTTP (in-flight
// requests answered), ingest group commit drained, Watcher::Drain (stop
// claiming, finish or fail in-flight batches), duties stopped and their named
// leases released, replica row removed. Serve() runs one until SIGTERM/SIGINT.
// The store is used through a WriteHealthStore (app/write_health.h), so
// /readyz reports store writes that fail (a full disk).
// Thread-safe: Shutdown may be called from any thread, once or more.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"
#include "app/app_hooks.h"
#include "config/config.h"
#include "queue/store.h"

namespace sluice {

class Watcher;
class IngestService;
class OpsService;
class HttpServer;
class EventTail;
class ReplicaActivity;
class JobRunner;
class Console;

// Name of the named lease under which one replica at a time maintains the
// dedup window (Store::MaintainDedup: rotates and drops buckets).
inline constexpr const char* kDedupPruneLease = "dedup-prune";

class Replica {
 public:
  // REQUIRES: config validated (ValidateConfig). kInvalidArgument when the
  // config names a test-only setting that `hooks` do not take.
  static Result<std::unique_ptr<Replica>> Start(const Config& config,
                                                const AppHooks& hooks = AppHooks{});
  ~Replica();  // Shutdown() if not done yet.

  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  const std::string& id() const { return id_; }
  int port() const { return port_; }
  // "HOST:PORT" as bound.
  std::string address() const;
  Metrics* metrics() { return &metrics_; }
  Store* store() { return store_.get(); }

  void Shutdown();

 private:
  Replica(const Config& config, AppHooks hooks);
  Status StartImpl();
  void HeartbeatMain();
  void DutyMain();
  void MaintainDedupRound();
  // Waits up to `ms` for Shutdown; true when stopping.
  bool WaitForStop(int64_t ms);

  // Constant after Start.
  const Config config_;
  const AppHooks hooks_;
  std::string id_;
  std::string host_;
  int port_ = 0;

  // Declared first, destroyed last: everything else reports into it.
  Metrics metrics_;
  StorePtr store_;
  std::unique_ptr<Watcher> watcher_;
  std::unique_ptr<JobRunner> jobs_;  // null without [[job]] tables
  std::unique_ptr<ReplicaActivity> activity_;
  std::unique_ptr<EventTail> tail_;  // null when the console or its tail is off
  std::unique_ptr<IngestService> ingest_;
  std::unique_ptr<OpsService> ops_;
  std::unique_ptr<Console> console_;
  // Declared last, destroyed first: nothing above is used by a request after.
  std::unique_ptr<HttpServer> server_;
  std::atomic<bool> draining_{false};

  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;   // GUARDED_BY(mu_)
  bool shut_down_ = false;  // GUARDED_BY(mu_)
  bool started_ = false;    // GUARDED_BY(mu_)
  int64_t duty_token_ = 0;  // dedup-prune lease token while held; DutyMain only
  std::thread heartbeat_thread_;
  std::thread duty_thread_;
};

// Runs a replica until SIGTERM or SIGINT, then drains. Returns the process
// exit code: 0 after a clean drain, 1 when start-up failed.
int Serve(const Config& config, const AppHooks& hooks = AppHooks{});

// "<host>-<pid>-<4 hex>".
std::string GenerateReplicaId();

}  // namespace sluice
