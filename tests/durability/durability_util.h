// Helpers of the durability tests (power loss, disk full): an in-process
// replica (app/replica.h: the store, watcher, ingest and ops of `sluice
// serve`, here so that its SQLite file goes through the test's FaultVfs), a
// client that records what was acknowledged, and checks of the file and of
// the aggregates. Thread-compatible.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "app/replica.h"
#include "queue/store.h"

namespace sluice::testing {

// A replica of `toml` (a sluice.toml), started in this process.
Result<std::unique_ptr<Replica>> StartReplica(const std::string& toml);

// The config the durability tests share: SQLite at `db_path`, users and
// counters, short leases and a 200 ms replica heartbeat, plus `extra` TOML.
std::string DurabilityConfig(const std::string& db_path, bool sync, const std::string& extra = "");

// One event the client sent, and what it saw.
struct ClientEvent {
  std::string insert_id;
  std::string user;
  std::string name;
  int64_t time_ms = 0;
  int64_t sent_ms = 0;   // SteadyNowMs of the first request carrying it
  int64_t acked_ms = 0;  // SteadyNowMs of the 200 answer; 0 = never acknowledged
};

// Clients posting batches of new events (project "default") to a replica
// until Stop(). `retry`: a batch that was not acknowledged is sent again, the
// same insert_ids, until it is (or Stop()); else each batch is sent once.
class Ingester {
 public:
  Ingester(std::string base_url, std::string prefix, int threads, int batch, bool retry);
  ~Ingester();  // Stop()
  Ingester(const Ingester&) = delete;
  Ingester& operator=(const Ingester&) = delete;

  void Stop();
  int64_t acked() const { return acked_.load(); }
  int64_t answers() const { return answers_.load(); }
  // HTTP status -> answers (0: no answer).
  std::map<int, int64_t> statuses() const;
  // Non-200 answers that were not 503 with a Retry-After header.
  int64_t bad_refusals() const { return bad_refusals_.load(); }
  // Every event sent so far (its latest state).
  std::vector<ClientEvent> events() const;

 private:
  void Run(int thread);

  const std::string base_url_;
  const std::string prefix_;
  const int batch_;
  const bool retry_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> acked_{0}, answers_{0}, bad_refusals_{0};
  mutable std::mutex mu_;
  std::vector<ClientEvent> events_;     // GUARDED_BY(mu_)
  std::map<int, int64_t> statuses_;   // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

// PRAGMA integrity_check of the SQLite file: "ok", or what it found.
std::string IntegrityCheck(const std::string& db_path);
// insert_ids of `sent` (project "default") whose key is in a dedup bucket:
// the events whose enqueue committed (a dedup entry commits with its queue
// row).
std::set<std::string> StoredIds(const std::string& db_path, const std::vector<ClientEvent>& sent);

// Users and hourly counters of `store` equal the aggregates of `events`, each
// counted once: "" or the first difference.
std::string CheckAggregates(Store& store, const std::vector<const ClientEvent*>& events);

// Waits until the queue of `store` is empty (pending + leased = 0).
bool WaitQueueEmpty(Store& store, int64_t timeout_ms);

}  // namespace sluice::testing
