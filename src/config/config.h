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
//              dedup_buckets = 4 (1..64: the window is kept in this many
//              time buckets, each dropped whole; queue/dedup_window.h)
//   [ingest]   max_body_bytes = 5242880; max_decompressed_bytes = 5242880;
//              max_events = 1000; max_json_depth = 32; max_string_bytes = 65536;
//              max_event_bytes = 262144; high_water = 1000000; slow_down = 800000;
//              retry_after_s = 5; group_max_events = 20000
//   [watcher]  loops = 2 (0 = ingest only); batch = 500; lease_ttl = "30s"; heartbeat = 0 (= ttl/3);
//              backoff_base = "1s"; backoff_cap = "5m"; max_attempts = 10; jitter = 0.5;
//              idle_poll_min = "10ms"; idle_poll_max = "1s"; consumer_timeout = 0;
//              drain_timeout = "20s"; replica_heartbeat = "2s"; dedup_prune_interval = "1m"
//   [auth]     admin_token = "..."; [auth.write_keys] KEY = "project"
//   [console]  enabled = true; refresh = "2s"; cache = "1s"; delay_warning = "1m";
//              backlog_scan_events = 20000; backlog_samples = 1000; dead_scan_events = 20000;
//              session_ttl = "12h";
//              tail_events = 1000; tail_bytes = 4194304; tail_body_bytes = 8192;
//              tail_streams = 8; tail_rate = 50 (events/s per stream)
//   [log]      level = "info"; format = "json" | "text"
//   [[consumer]] type = "users" | "counters" | ...; name = "..."; bit = N;
//              projects = [..]; events = [..]; any other key (nested tables
//              flattened "a.b", arrays joined with ",") goes to options as a string
//   [[job]]    name = "..." (required); bit = N (required); key = "user" | "project" |
//              "property:NAME"; events = [..]; projects = [..]; delay = "30s";
//              max_delay = "5m"; url = "http://..." (required); timeout = "10s";
//              max_attempts = 10; backoff_base = "1s"; backoff_cap = "5m"; jitter = 0.5
//   [jobs]     loops = 1; batch = 16; lease_ttl = "30s"; heartbeat = 0 (= ttl/3);
//              idle_poll_min = "20ms"; idle_poll_max = "500ms"; drain_timeout = "20s";
//              stats_interval = "5s"; max_response_bytes = 65536
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
#include "consumers/api/consumer.h"
#include "http/auth.h"
#include "http/http_server.h"
#include "http/http_util.h"
#include "ingest/ingest_options.h"
#include "jobs/job_options.h"
#include "ops/console.h"
#include "queue/store.h"
#include "queue/store_wrapper.h"
#include "watcher/watcher.h"

namespace sluice {






struct Config {
  ServerOptions server;
  StoreOptions store;
  IngestOptions ingest;
  WatcherOptions watcher;
  AuthOptions auth;
  ConsoleOptions console;
  std::vector<ConsumerConfig> consumers;  // default: users + counters
  std::vector<JobOptions> jobs;           // [[job]]; none by default
  JobRunnerOptions job_runner;            // [jobs]
  std::string replica_id;                 // "" = host-pid-random
  std::string log_level = "info";
  std::string log_format = "json";  // "json" | "text"
  // The test-only settings found (queue/store_wrapper.h), e.g.
  // ("store.claim_strategy", "naive"), ("consumer[2].type", "test"). The parser
  // only collects them; the shipped binary refuses a config with any, naming
  // the key.
  TestOnlySettings test_only;
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



}  // namespace sluice
