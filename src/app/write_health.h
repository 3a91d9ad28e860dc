// WriteHealthStore: whether this replica's store writes are failing, for
// /readyz. It wraps the replica's store and records the outcome of every
// Enqueue (ingest's group commits) and of the replica heartbeat (a small write
// every watcher.replica_heartbeat_ms, default 2 s: the probe that runs when no
// client sends). An I/O error — SQLite "database or disk is full", a failing
// or read-only disk; PostgreSQL disk full (SQLSTATE class 53/58) — makes
// WriteStatus() that error until a later recorded write succeeds; other
// errors (busy, unavailable) leave it unchanged (/readyz reports an
// unreachable store by itself). Claims and lease writes fail the same way on
// a full disk; the watcher backs off and retries them, and the probe reports
// the condition within one heartbeat. Thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "queue/store_wrapper.h"

namespace sluice {

class WriteHealthStore final : public StoreWrapper {
 public:
  explicit WriteHealthStore(StorePtr inner) : StoreWrapper(std::move(inner)) {}

  Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) override;
  Status RegisterReplica(const ReplicaInfo& info) override;
  Status HeartbeatReplica(const std::string& id) override;

  // Ok, or the error of the last failing write while none has succeeded since.
  Status WriteStatus() const;

 private:
  void Record(const Status& st);

  mutable std::mutex mu_;
  Status last_error_;  // GUARDED_BY(mu_)
};

}  // namespace sluice
