// Config: everything `sluice serve` is told, parsed and validated once
// (TOML file + SLUICE_* environment overrides + flags), then passed down as
// these option structs. No global flags. Thread-compatible value types.
//
// TOML layout (every key optional; defaults below). Durations are strings
// ("250ms", "30s", "5m", "24h", "2d") or integers of milliseconds; a duration
// key may also be spelled with an "_ms" suffix. Unknown keys are errors.
//   replica_id = "..."   (top level, before any table)
//   [server]   listen = "127.0.0.1:8080"; threads = 2; read_timeout = "30s";
//              idle_timeout = "60s"; max_connections = 4096; max_header_bytes = 16384;
//              allow_public_without_auth = false
//   [store]    url = "sqlite:./sluice-data/sluice.db"; sync = true; pool_size = 8;
//              busy_timeout = "10s"; dedup_window = "24h"
//   [ingest]   max_body_bytes = 5242880; max_decompressed_bytes = 5242880;
//              max_events = 1000; max_json_depth = 32; max_string_bytes = 65536;
//              max_event_bytes = 262144; high_water = 1000000; slow_down = 800000;
//              retry_after_s = 5; group_max_events = 20000
//   [watcher]  loops = 2; batch = 500; lease_ttl = "30s"; heartbeat = 0 (= ttl/3);
//              backoff_base = "1s"; backoff_cap = "5m"; max_attempts = 10; jitter = 0.5;
//              idle_poll_min = "10ms"; idle_poll_max = "1s"; consumer_timeout = 0;
//              drain_timeout = "20s"; replica_heartbeat = "2s"; dedup_prune_interval = "1m"
//   [auth]     admin_token = "..."; [auth.write_keys] KEY = "project"
//   [log]      level = "info"; format = "json" | "text"
//   [[consumer]] type = "users" | "counters" | ...; name = "..."; bit = N;
//              projects = [..]; events = [..]; any other key (nested tables
//              flattened "a.b", arrays joined with ",") goes to options as a string
// Environment overrides (after the file): SLUICE_LISTEN, SLUICE_STORE,
// SLUICE_ADMIN_TOKEN, SLUICE_REPLICA_ID, SLUICE_LOG_LEVEL. `sluice serve`
// flags override both.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT; port 0 picks a free port
  int32_t threads = 2;                    // I/O threads, >= 1
  int64_t read_timeout_ms = 30000;        // whole request (headers+body) must arrive within this
  int64_t idle_timeout_ms = 60000;        // keep-alive connection idle limit
  int32_t max_connections = 4096;         // further connections are closed at accept
  int32_t max_header_bytes = 16384;       // request line + headers
  // Without write keys the server accepts any event; it then refuses to listen
  // beyond loopback unless this is true.
  bool allow_public_without_auth = false;
};

struct IngestOptions {
  int64_t max_body_bytes = 5 * 1024 * 1024;          // compressed or not, per request; 413 above
  int64_t max_decompressed_bytes = 5 * 1024 * 1024;  // after gunzip; 413 above
  int32_t max_events = 1000;                         // per request; 413 above
  int32_t max_json_depth = 32;                       // nesting of any body; 400 above
  int32_t max_string_bytes = 65536;                  // any single string field; 400 above
  int32_t max_event_bytes = 256 * 1024;              // one normalized event; 413 above
  int64_t high_water = 1000000;      // pending+leased events above which ingest answers 503
  int64_t slow_down = 800000;        // above this, group commit waits a little (soft limit)
  int32_t retry_after_s = 5;         // Retry-After on 503/429
  int32_t group_max_events = 20000;  // events per group commit transaction
  // TEST ONLY (SDK retry tests): the first N requests that decoded and
  // authenticated fine are answered as Unavailable (503 + Retry-After, in the
  // format's own shape) without committing. Default 0 = off. TOML
  // [ingest] fail_first_requests.
  int32_t fail_first_requests = 0;
  // TEST ONLY, with fail_first_requests: commit those requests first and then
  // answer 503 (an acknowledgement lost after commit), so the SDK's retry must
  // be deduplicated by insert_id. Default false. TOML [ingest] fail_after_commit.
  bool fail_after_commit = false;
};

struct WatcherOptions {
  int32_t loops = 2;    // claim loops per replica
  int32_t batch = 500;  // max events per claim
  int64_t lease_ttl_ms = 30000;
  int64_t heartbeat_ms = 0;  // 0 = lease_ttl / 3
  BackoffPolicy backoff;
  int64_t idle_poll_min_ms = 10;  // first idle wait; doubles up to max
  int64_t idle_poll_max_ms = 1000;
  int64_t consumer_timeout_ms = 0;   // per delivery; 0 = lease_ttl / 2
  int64_t drain_timeout_ms = 20000;  // SIGTERM: in-flight batches get this long
  int64_t replica_heartbeat_ms = 2000;
  int64_t dedup_prune_interval_ms = 60000;
};

struct AuthOptions {
  std::string admin_token;                        // "" = admin endpoints open only on loopback
  std::map<std::string, std::string> write_keys;  // key -> project; empty = no auth
  bool enabled() const { return !write_keys.empty(); }
};

// One [[consumer]] table. `options` keeps the type-specific keys as strings
// (the consumer's factory parses them); nested tables are flattened "a.b".
struct ConsumerConfig {
  std::string type;  // "users", "counters", "archive", "clickhouse", "webhook", ...
  std::string name;  // stable; defaults to type
  int32_t bit = -1;  // done_mask bit 0..62; -1 = assigned (users 0, counters 1)
  std::map<std::string, std::string> options;
  std::vector<std::string> projects;  // filter; empty = all
  std::vector<std::string> events;    // filter; empty = all
};

struct Config {
  ServerOptions server;
  StoreOptions store;
  IngestOptions ingest;
  WatcherOptions watcher;
  AuthOptions auth;
  std::vector<ConsumerConfig> consumers;  // default: users + counters
  std::string replica_id;                 // "" = host-pid-random
  std::string log_level = "info";
  std::string log_format = "json";  // "json" | "text"
};

// Parses `toml_text` (may be empty) into a Config, then applies environment
// overrides (SLUICE_LISTEN, SLUICE_STORE, SLUICE_ADMIN_TOKEN, SLUICE_REPLICA_ID,
// SLUICE_LOG_LEVEL). Validates everything; InvalidArgument names the key.
Result<Config> ParseConfig(const std::string& toml_text);
// Reads the file at `path` ("" = defaults) then ParseConfig.
Result<Config> LoadConfig(const std::string& path);

// Looks up an environment variable; nullptr when unset. Tests inject one.
using EnvLookup = std::function<const char*(const char* name)>;
// ParseConfig with an explicit environment (ParseConfig uses getenv).
Result<Config> ParseConfig(const std::string& toml_text, const EnvLookup& env);

// Checks ranges and cross-field rules of a complete Config (ParseConfig calls
// it; callers that change a Config afterwards, e.g. CLI flags, call it again).
// Fills defaults that depend on other fields (consumers users + counters).
Status ValidateConfig(Config* config);

// Splits "HOST:PORT" / "[V6]:PORT". InvalidArgument when malformed.
Status SplitHostPort(const std::string& listen, std::string* host, int* port);
// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Parses "30s", "250ms", "5m", "24h", "2d" or a bare integer of milliseconds.
std::optional<int64_t> ParseDurationMs(const std::string& s);

}  // namespace sluice
