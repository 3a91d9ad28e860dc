// ClickHouseConsumer (`type = "clickhouse"`): inserts events into a ClickHouse
// table over the HTTP interface (INSERT ... FORMAT JSONEachRow), one INSERT
// per delivered batch. Works with ClickHouse 18.16 (Debian 12) and current
// releases.
//
// Idempotency: the table (created if missing) is a ReplacingMergeTree ORDER BY
// (project, insert_id), so a redelivered event is a duplicate row until a
// merge and never visible to `SELECT ... FINAL` / GROUP BY insert_id. Servers
// that know `insert_deduplication_token` also get a token per batch (hash of
// its (project, insert_id)s) and, on tables we create, a
// non_replicated_deduplication_window, so an identical retried INSERT is dropped
// at once. Support is detected once from system.settings and cached.
//
// Table columns: insert_id, project, seq UInt64, event, user_id, anonymous_id,
// type, time DateTime (UTC seconds of the event's time), time_ms Int64 (exact),
// received DateTime, properties/user_set/user_set_once String (JSON text, "" when
// absent). PARTITION BY toYYYYMM(time).
// Thread-safe: Deliver may run concurrently for different batches.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "http_client/http_client.h"

namespace sluice {

struct ClickHouseOptions {
  std::string url = "http://127.0.0.1:8123/";  // HTTP interface base URL
  std::string database = "default";            // REQUIRES: [A-Za-z0-9_]+, must exist
  std::string table = "events";                // REQUIRES: [A-Za-z0-9_]+
  std::string user;                            // basic auth when non-empty
  std::string password;
  bool create_table = true;  // CREATE TABLE IF NOT EXISTS before the first insert
  HttpClientOptions http;    // timeouts, TLS
};

// Parses `[[consumer]] type = "clickhouse"` options: url, database, table,
// user, password, create_table, timeout, connect_timeout, verify_tls.
Result<ClickHouseOptions> ParseClickHouseOptions(const ConsumerConfig& config);

// Registry factory.
Result<ConsumerPtr> MakeClickHouseConsumer(const ConsumerConfig& config, uint64_t bit,
                                           Metrics* metrics);

class ClickHouseConsumer final : public Consumer {
 public:
  // `metrics` may be null. Does no I/O: the server is first asked on Deliver.
  ClickHouseConsumer(std::string name, uint64_t bit, ClickHouseOptions options, Metrics* metrics);

  bool in_store() const override { return false; }
  Status Deliver(const Delivery& delivery) override;

  // Runs one statement (POST), returns the answer body. For setup and tests.
  Result<std::string> Query(const std::string& sql, int64_t deadline_mono_ms = 0);
  // After the first successful Deliver: whether the server takes
  // insert_deduplication_token.
  bool supports_dedup_token() const { return dedup_token_.load(); }

 private:
  Status SetupOnce(int64_t deadline_mono_ms);
  std::string BaseUrl() const;

  // Constant after construction.
  const ClickHouseOptions options_;
  HttpClient http_;
  std::unique_ptr<Metrics> own_metrics_;
  Counter* rows_ = nullptr;
  Counter* inserts_ = nullptr;

  std::mutex setup_mu_;             // serializes the one-time setup
  std::atomic<bool> ready_{false};  // setup done
  std::atomic<bool> dedup_token_{false};
};

}  // namespace sluice
