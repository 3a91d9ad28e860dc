#include "config/config.h"

#include <toml++/toml.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "common/time.h"

namespace sluice {
namespace {

// A key path for error messages: "watcher.lease_ttl", "consumer[2].bit".
std::string KeyName(const std::string& section, std::string_view key) {
  return section.empty() ? std::string(key) : section + "." + std::string(key);
}

Status TypeError(const std::string& key, const char* want) {
  return Status::InvalidArgument("config key " + key + ": expected " + want);
}

Status GetInt(const toml::node& node, const std::string& key, int64_t* out) {
  if (const auto* v = node.as_integer()) {
    *out = v->get();
    return Status::Ok();
  }
  return TypeError(key, "an integer");
}

template <typename T>
Status GetIntIn(const toml::node& node, const std::string& key, int64_t lo, int64_t hi, T* out) {
  int64_t v = 0;
  SLUICE_RETURN_IF_ERROR(GetInt(node, key, &v));
  if (v < lo || v > hi) {
    return Status::InvalidArgument("config key " + key + ": " + std::to_string(v) +
                                   " is out of range [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + "]");
  }
  *out = static_cast<T>(v);
  return Status::Ok();
}

Status GetString(const toml::node& node, const std::string& key, std::string* out) {
  if (const auto* v = node.as_string()) {
    *out = v->get();
    return Status::Ok();
  }
  return TypeError(key, "a string");
}

Status GetBool(const toml::node& node, const std::string& key, bool* out) {
  if (const auto* v = node.as_boolean()) {
    *out = v->get();
    return Status::Ok();
  }
  return TypeError(key, "true or false");
}

// A duration: "30s"-style string or an integer of milliseconds; >= lo.
Status GetDuration(const toml::node& node, const std::string& key, int64_t lo, int64_t* out) {
  std::optional<int64_t> ms;
  if (const auto* i = node.as_integer()) {
    ms = i->get();
  } else if (const auto* s = node.as_string()) {
    ms = ParseDurationMs(s->get());
  } else {
    return TypeError(key, "a duration (\"30s\", \"250ms\", \"24h\" or integer milliseconds)");
  }
  if (!ms) {
    return Status::InvalidArgument("config key " + key +
                                   ": malformed duration (use e.g. \"30s\", \"250ms\", \"24h\")");
  }
  if (*ms < lo) {
    return Status::InvalidArgument("config key " + key + ": must be at least " +
                                   std::to_string(lo) + " ms");
  }
  *out = *ms;
  return Status::Ok();
}

Status GetStringList(const toml::node& node, const std::string& key,
                     std::vector<std::string>* out) {
  out->clear();
  if (const auto* s = node.as_string()) {  // a single string is a list of one
    out->push_back(s->get());
    return Status::Ok();
  }
  const auto* arr = node.as_array();
  if (arr == nullptr) return TypeError(key, "an array of strings");
  for (const auto& el : *arr) {
    const auto* s = el.as_string();
    if (s == nullptr) return TypeError(key, "an array of strings");
    out->push_back(s->get());
  }
  return Status::Ok();
}

Status UnknownKey(const std::string& key) {
  return Status::InvalidArgument("unknown config key " + key);
}

// The settings only the test binary acts on (Config::test_only). The parser
// knows their names so that it can hand them over, and the shipped binary can
// refuse them by name; nothing here gives them any effect.
constexpr const char* kTestOnlyKeys[] = {"store.claim_strategy", "store.fencing",
                                         "ingest.fail_first_requests",
                                         "ingest.fail_after_commit"};
constexpr const char* kTestOnlyConsumerTypes[] = {"test"};

bool IsTestOnlyKey(std::string_view key) {
  for (const char* k : kTestOnlyKeys) {
    if (key == k) return true;
  }
  return false;
}

Status RecordTestOnly(const toml::node& v, const std::string& key, TestOnlySettings* out) {
  std::string value;
  if (const auto* s = v.as_string()) {
    value = s->get();
  } else if (const auto* b = v.as_boolean()) {
    value = b->get() ? "true" : "false";
  } else if (const auto* i = v.as_integer()) {
    value = std::to_string(i->get());
  } else {
    return TypeError(key, "a string, integer or boolean");
  }
  out->emplace_back(key, std::move(value));
  return Status::Ok();
}

// Strips an optional "_ms" suffix so `lease_ttl = "30s"` and `lease_ttl_ms = 30000`
// name the same setting.
std::string_view DurationKey(std::string_view k) {
  if (k.size() > 3 && k.substr(k.size() - 3) == "_ms") return k.substr(0, k.size() - 3);
  return k;
}

Status ParseServer(const toml::table& t, ServerOptions* o) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("server", k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "listen") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &o->listen));
    } else if (k == "threads") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 256, &o->threads));
    } else if (dk == "read_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 100, &o->read_timeout_ms));
    } else if (dk == "idle_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 100, &o->idle_timeout_ms));
    } else if (k == "max_connections") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000000, &o->max_connections));
    } else if (k == "max_header_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1024, 1 << 20, &o->max_header_bytes));
    } else if (k == "allow_public_without_auth") {
      SLUICE_RETURN_IF_ERROR(GetBool(v, key, &o->allow_public_without_auth));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseStore(const toml::table& t, StoreOptions* o, TestOnlySettings* test_only) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("store", k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "url") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &o->url));
    } else if (k == "sync") {
      SLUICE_RETURN_IF_ERROR(GetBool(v, key, &o->sync));
    } else if (k == "pool_size") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1024, &o->pool_size));
    } else if (dk == "busy_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &o->busy_timeout_ms));
    } else if (dk == "dedup_window") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1000, &o->dedup_window_ms));
    } else if (k == "dedup_buckets") {
      SLUICE_RETURN_IF_ERROR(
          GetIntIn(v, key, kMinDedupBuckets, kMaxDedupBuckets, &o->dedup_buckets));
    } else if (IsTestOnlyKey(key)) {
      SLUICE_RETURN_IF_ERROR(RecordTestOnly(v, key, test_only));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseIngest(const toml::table& t, IngestOptions* o, TestOnlySettings* test_only) {
  constexpr int64_t kMaxBytes = 1LL << 30;  // 1 GiB: anything larger is a typo
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("ingest", k.str());
    if (k == "max_body_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1024, kMaxBytes, &o->max_body_bytes));
    } else if (k == "max_decompressed_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1024, kMaxBytes, &o->max_decompressed_bytes));
    } else if (k == "max_events") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000000, &o->max_events));
    } else if (k == "max_json_depth") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 2, 1024, &o->max_json_depth));
    } else if (k == "max_string_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 16, kMaxBytes, &o->max_string_bytes));
    } else if (k == "max_event_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 64, kMaxBytes, &o->max_event_bytes));
    } else if (k == "high_water") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, INT64_MAX / 2, &o->high_water));
    } else if (k == "slow_down") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, INT64_MAX / 2, &o->slow_down));
    } else if (k == "retry_after_s" || k == "retry_after") {
      if (v.is_string()) {
        int64_t ms = 0;
        SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1000, &ms));
        o->retry_after_s = static_cast<int32_t>(std::min<int64_t>(ms / 1000, 86400));
      } else {
        SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 86400, &o->retry_after_s));
      }
    } else if (k == "group_max_events") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 10000000, &o->group_max_events));
    } else if (IsTestOnlyKey(key)) {
      SLUICE_RETURN_IF_ERROR(RecordTestOnly(v, key, test_only));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseWatcher(const toml::table& t, WatcherOptions* o) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("watcher", k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "loops") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, 256, &o->loops));
    } else if (k == "batch") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 100000, &o->batch));
    } else if (dk == "lease_ttl") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 100, &o->lease_ttl_ms));
    } else if (dk == "heartbeat") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->heartbeat_ms));
    } else if (dk == "backoff_base") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->backoff.base_ms));
    } else if (dk == "backoff_cap") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->backoff.cap_ms));
    } else if (k == "max_attempts") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000000, &o->backoff.max_attempts));
    } else if (k == "jitter") {
      double j = 0;
      if (const auto* f = v.as_floating_point()) {
        j = f->get();
      } else if (const auto* i = v.as_integer()) {
        j = static_cast<double>(i->get());
      } else {
        return TypeError(key, "a number in [0, 1]");
      }
      if (!(j >= 0.0 && j <= 1.0)) {
        return Status::InvalidArgument("config key " + key + ": must be in [0, 1]");
      }
      o->backoff.jitter = j;
    } else if (dk == "idle_poll_min") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &o->idle_poll_min_ms));
    } else if (dk == "idle_poll_max") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &o->idle_poll_max_ms));
    } else if (dk == "consumer_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->consumer_timeout_ms));
    } else if (dk == "drain_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->drain_timeout_ms));
    } else if (dk == "replica_heartbeat") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 10, &o->replica_heartbeat_ms));
    } else if (dk == "dedup_prune_interval") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 10, &o->dedup_prune_interval_ms));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseConsole(const toml::table& t, ConsoleOptions* o) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("console", k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "enabled") {
      SLUICE_RETURN_IF_ERROR(GetBool(v, key, &o->enabled));
    } else if (dk == "refresh") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 500, &o->refresh_ms));
    } else if (dk == "cache") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->cache_ms));
    } else if (dk == "delay_warning") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1000, &o->delay_warning_ms));
    } else if (k == "backlog_scan_events") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 100, 10000000, &o->backlog_scan_events));
    } else if (k == "backlog_samples") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000000, &o->backlog_samples));
    } else if (k == "dead_scan_events") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 100, 10000000, &o->dead_scan_events));
    } else if (dk == "session_ttl") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 60000, &o->session_ttl_ms));
    } else if (k == "tail_events") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, 100000, &o->tail.max_events));
    } else if (k == "tail_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, int64_t{1} << 30, &o->tail.max_bytes));
    } else if (k == "tail_body_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 256, 1 << 20, &o->tail.max_body_bytes));
    } else if (k == "tail_streams") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, 1024, &o->tail.max_streams));
    } else if (k == "tail_rate") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 10000, &o->tail.max_events_per_s));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseAuth(const toml::table& t, AuthOptions* o) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("auth", k.str());
    if (k == "admin_token") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &o->admin_token));
    } else if (k == "write_keys") {
      const auto* keys = v.as_table();
      if (keys == nullptr) return TypeError(key, "a table of KEY = \"project\"");
      for (const auto& [wk, project] : *keys) {
        // The key itself is secret: never echo it in an error.
        std::string p;
        if (!GetString(project, key, &p).ok() || p.empty()) {
          return Status::InvalidArgument("config key " + key +
                                         ": every write key must map to a non-empty project "
                                         "name string");
        }
        if (wk.str().empty()) {
          return Status::InvalidArgument("config key " + key + ": empty write key");
        }
        o->write_keys[std::string(wk.str())] = p;
      }
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status FlattenValue(const toml::node& v, const std::string& name, const std::string& key_base,
                    std::map<std::string, std::string>* out);

// Flattens a consumer's type-specific keys into strings; nested tables "a.b".
Status FlattenTable(const toml::table& t, const std::string& prefix, const std::string& key_base,
                    std::map<std::string, std::string>* out) {
  for (const auto& [k, v] : t) {
    SLUICE_RETURN_IF_ERROR(FlattenValue(v, prefix + "." + std::string(k.str()), key_base, out));
  }
  return Status::Ok();
}

Status FlattenValue(const toml::node& v, const std::string& name, const std::string& key_base,
                    std::map<std::string, std::string>* out) {
  if (const auto* sub = v.as_table()) {
    return FlattenTable(*sub, name, key_base, out);
  } else if (const auto* s = v.as_string()) {
    (*out)[name] = s->get();
  } else if (const auto* i = v.as_integer()) {
    (*out)[name] = std::to_string(i->get());
  } else if (const auto* b = v.as_boolean()) {
    (*out)[name] = b->get() ? "true" : "false";
  } else if (const auto* f = v.as_floating_point()) {
    std::ostringstream os;
    os << f->get();
    (*out)[name] = os.str();
  } else if (const auto* a = v.as_array()) {
    // Arrays of scalars become comma-separated lists.
    std::string joined;
    for (const auto& el : *a) {
      std::string item;
      if (const auto* es = el.as_string()) {
        item = es->get();
      } else if (const auto* ei = el.as_integer()) {
        item = std::to_string(ei->get());
      } else {
        return TypeError(key_base + "." + name, "an array of strings or integers");
      }
      if (!joined.empty()) joined.push_back(',');
      joined += item;
    }
    (*out)[name] = joined;
  } else {
    return TypeError(key_base + "." + name, "a string, number, boolean, array or table");
  }
  return Status::Ok();
}

Status ParseConsumer(const toml::table& t, size_t index, ConsumerConfig* c,
                     TestOnlySettings* test_only) {
  const std::string base = "consumer[" + std::to_string(index) + "]";
  for (const auto& [k, v] : t) {
    const std::string key = KeyName(base, k.str());
    if (k == "type") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->type));
    } else if (k == "name") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->name));
    } else if (k == "bit") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, -1, 62, &c->bit));
    } else if (k == "projects") {
      SLUICE_RETURN_IF_ERROR(GetStringList(v, key, &c->projects));
    } else if (k == "events") {
      SLUICE_RETURN_IF_ERROR(GetStringList(v, key, &c->events));
    } else {
      SLUICE_RETURN_IF_ERROR(FlattenValue(v, std::string(k.str()), base, &c->options));
    }
  }
  if (c->type.empty()) {
    return Status::InvalidArgument("config key " + base + ".type: required");
  }
  if (c->name.empty()) c->name = c->type;
  for (const char* type : kTestOnlyConsumerTypes) {
    if (c->type == type) test_only->emplace_back(base + ".type", c->type);
  }
  return Status::Ok();
}

Status ParseJob(const toml::table& t, size_t index, JobOptions* j) {
  const std::string base = "job[" + std::to_string(index) + "]";
  for (const auto& [k, v] : t) {
    const std::string key = KeyName(base, k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "name") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &j->name));
    } else if (k == "bit") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, 62, &j->bit));
    } else if (k == "key") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &j->key));
    } else if (k == "events") {
      SLUICE_RETURN_IF_ERROR(GetStringList(v, key, &j->events));
    } else if (k == "projects") {
      SLUICE_RETURN_IF_ERROR(GetStringList(v, key, &j->projects));
    } else if (dk == "delay") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &j->delay_ms));
    } else if (dk == "max_delay") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &j->max_delay_ms));
    } else if (k == "url") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &j->url));
    } else if (dk == "timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &j->timeout_ms));
    } else if (k == "max_attempts") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000000, &j->backoff.max_attempts));
    } else if (dk == "backoff_base") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &j->backoff.base_ms));
    } else if (dk == "backoff_cap") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &j->backoff.cap_ms));
    } else if (k == "jitter") {
      const auto* f = v.as_floating_point();
      const auto* i = v.as_integer();
      const double x = f ? f->get() : i ? static_cast<double>(i->get()) : -1;
      if (x < 0 || x > 1) return TypeError(key, "a number in [0, 1]");
      j->backoff.jitter = x;
    } else {
      return UnknownKey(key);
    }
  }
  return ValidateJobOptions(base, j);
}

Status ParseJobRunner(const toml::table& t, JobRunnerOptions* o) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("jobs", k.str());
    const std::string_view dk = DurationKey(k.str());
    if (k == "loops") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 0, 64, &o->loops));
    } else if (k == "batch") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1, 1000, &o->batch));
    } else if (dk == "lease_ttl") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 100, &o->lease_ttl_ms));
    } else if (dk == "heartbeat") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->heartbeat_ms));
    } else if (dk == "idle_poll_min") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &o->idle_poll_min_ms));
    } else if (dk == "idle_poll_max") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 1, &o->idle_poll_max_ms));
    } else if (dk == "drain_timeout") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 0, &o->drain_timeout_ms));
    } else if (dk == "stats_interval") {
      SLUICE_RETURN_IF_ERROR(GetDuration(v, key, 100, &o->stats_interval_ms));
    } else if (k == "max_response_bytes") {
      SLUICE_RETURN_IF_ERROR(GetIntIn(v, key, 1024, 64 << 20, &o->max_response_bytes));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ParseLog(const toml::table& t, Config* c) {
  for (const auto& [k, v] : t) {
    const std::string key = KeyName("log", k.str());
    if (k == "level") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->log_level));
    } else if (k == "format") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->log_format));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

const toml::table* AsTable(const toml::node& v, const std::string& key, Status* st) {
  const auto* t = v.as_table();
  if (t == nullptr) *st = TypeError(key, "a table");
  return t;
}

Status ParseToml(const toml::table& root, Config* c) {
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    Status st;
    if (k == "server" || k == "store" || k == "ingest" || k == "watcher" || k == "auth" ||
        k == "log" || k == "console" || k == "jobs") {
      const toml::table* t = AsTable(v, key, &st);
      if (t == nullptr) return st;
      if (k == "server") st = ParseServer(*t, &c->server);
      if (k == "store") st = ParseStore(*t, &c->store, &c->test_only);
      if (k == "ingest") st = ParseIngest(*t, &c->ingest, &c->test_only);
      if (k == "watcher") st = ParseWatcher(*t, &c->watcher);
      if (k == "auth") st = ParseAuth(*t, &c->auth);
      if (k == "console") st = ParseConsole(*t, &c->console);
      if (k == "log") st = ParseLog(*t, c);
      if (k == "jobs") st = ParseJobRunner(*t, &c->job_runner);
      SLUICE_RETURN_IF_ERROR(st);
    } else if (k == "consumer") {
      const auto* arr = v.as_array();
      if (arr == nullptr) return TypeError("consumer", "an array of tables ([[consumer]])");
      for (size_t i = 0; i < arr->size(); ++i) {
        const auto* ct = (*arr)[i].as_table();
        if (ct == nullptr) return TypeError("consumer", "an array of tables ([[consumer]])");
        ConsumerConfig cc;
        SLUICE_RETURN_IF_ERROR(ParseConsumer(*ct, i, &cc, &c->test_only));
        c->consumers.push_back(std::move(cc));
      }
    } else if (k == "job") {
      const auto* arr = v.as_array();
      if (arr == nullptr) return TypeError("job", "an array of tables ([[job]])");
      for (size_t i = 0; i < arr->size(); ++i) {
        const auto* jt = (*arr)[i].as_table();
        if (jt == nullptr) return TypeError("job", "an array of tables ([[job]])");
        JobOptions j;
        SLUICE_RETURN_IF_ERROR(ParseJob(*jt, i, &j));
        c->jobs.push_back(std::move(j));
      }
    } else if (k == "replica_id") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->replica_id));
    } else if (k == "log_level") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->log_level));
    } else if (k == "log_format") {
      SLUICE_RETURN_IF_ERROR(GetString(v, key, &c->log_format));
    } else {
      return UnknownKey(key);
    }
  }
  return Status::Ok();
}

Status ApplyEnv(const EnvLookup& env, Config* c) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    const char* v = env ? env(name) : nullptr;
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  if (auto v = get("SLUICE_LISTEN")) c->server.listen = *v;
  if (auto v = get("SLUICE_STORE")) c->store.url = *v;
  if (auto v = get("SLUICE_ADMIN_TOKEN")) c->auth.admin_token = *v;
  if (auto v = get("SLUICE_REPLICA_ID")) c->replica_id = *v;
  if (auto v = get("SLUICE_LOG_LEVEL")) c->log_level = *v;
  return Status::Ok();
}

}  // namespace

Status ValidateConfig(Config* c) {
  std::string host;
  int port = 0;
  Status st = SplitHostPort(c->server.listen, &host, &port);
  if (!st.ok()) return Status::InvalidArgument("config key server.listen: " + st.message());
  if (!c->auth.enabled() && !c->server.allow_public_without_auth && !IsLoopbackHost(host)) {
    return Status::InvalidArgument(
        "config key server.listen: refusing to listen on non-loopback address \"" +
        c->server.listen +
        "\" without authentication: anyone who can reach it could write events. Configure "
        "[auth.write_keys], or set server.allow_public_without_auth = true if a proxy in front "
        "authenticates");
  }
  const std::string& url = c->store.url;
  if (!(url.rfind("sqlite:", 0) == 0 || url.rfind("postgres://", 0) == 0 ||
        url.rfind("postgresql://", 0) == 0)) {
    return Status::InvalidArgument(
        "config key store.url: expected \"sqlite:PATH\" or \"postgres://...\"");
  }
  if (url == "sqlite:") return Status::InvalidArgument("config key store.url: empty sqlite path");
  if (c->ingest.slow_down > c->ingest.high_water) {
    return Status::InvalidArgument(
        "config key ingest.slow_down: must not exceed ingest.high_water");
  }
  if (c->ingest.max_decompressed_bytes < c->ingest.max_event_bytes) {
    return Status::InvalidArgument(
        "config key ingest.max_event_bytes: must not exceed ingest.max_decompressed_bytes");
  }
  const WatcherOptions& w = c->watcher;
  if (w.heartbeat_ms != 0 && w.heartbeat_ms >= w.lease_ttl_ms) {
    return Status::InvalidArgument("config key watcher.heartbeat: must be below watcher.lease_ttl");
  }
  if (w.backoff.cap_ms < w.backoff.base_ms) {
    return Status::InvalidArgument("config key watcher.backoff_cap: must be >= backoff_base");
  }
  if (w.idle_poll_max_ms < w.idle_poll_min_ms) {
    return Status::InvalidArgument("config key watcher.idle_poll_max: must be >= idle_poll_min");
  }
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (kLevels.count(c->log_level) == 0) {
    return Status::InvalidArgument(
        "config key log.level: expected trace|debug|info|warn|error|critical|off");
  }
  if (c->log_format != "json" && c->log_format != "text") {
    return Status::InvalidArgument("config key log.format: expected \"json\" or \"text\"");
  }
  if (c->replica_id.size() > 200) {
    return Status::InvalidArgument("config key replica_id: longer than 200 characters");
  }
  if (c->consumers.empty()) {
    ConsumerConfig users;
    users.type = users.name = "users";
    ConsumerConfig counters;
    counters.type = counters.name = "counters";
    c->consumers = {users, counters};
  }
  std::set<std::string> names;
  std::set<int32_t> bits;
  for (size_t i = 0; i < c->consumers.size(); ++i) {
    const ConsumerConfig& cc = c->consumers[i];
    const std::string base = "consumer[" + std::to_string(i) + "]";
    if (!names.insert(cc.name).second) {
      return Status::InvalidArgument("config key " + base + ".name: duplicate consumer name \"" +
                                     cc.name + "\"");
    }
    if (cc.bit >= 0 && !bits.insert(cc.bit).second) {
      return Status::InvalidArgument("config key " + base + ".bit: bit " + std::to_string(cc.bit) +
                                     " used by two consumers");
    }
  }
  const JobRunnerOptions& jr = c->job_runner;
  if (jr.heartbeat_ms != 0 && jr.heartbeat_ms >= jr.lease_ttl_ms) {
    return Status::InvalidArgument("config key jobs.heartbeat: must be below jobs.lease_ttl");
  }
  if (jr.idle_poll_max_ms < jr.idle_poll_min_ms) {
    return Status::InvalidArgument("config key jobs.idle_poll_max: must be >= idle_poll_min");
  }
  for (size_t i = 0; i < c->jobs.size(); ++i) {
    const JobOptions& j = c->jobs[i];
    const std::string base = "job[" + std::to_string(i) + "]";
    if (!names.insert(j.name).second) {
      return Status::InvalidArgument("config key " + base + ".name: \"" + j.name +
                                     "\" is also the name of a consumer or job");
    }
    if (!bits.insert(j.bit).second) {
      return Status::InvalidArgument("config key " + base + ".bit: bit " + std::to_string(j.bit) +
                                     " used twice");
    }
    if (j.timeout_ms >= jr.lease_ttl_ms) {
      return Status::InvalidArgument("config key " + base + ".timeout: must be below jobs.lease_ttl");
    }
  }
  return Status::Ok();
}

Result<Config> ParseConfig(const std::string& toml_text, const EnvLookup& env) {
  Config config;
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument("config: TOML syntax error at line " +
                                   std::to_string(e.source().begin.line) + ": " +
                                   std::string(e.description()));
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("config: ") + e.what());
  }
  SLUICE_RETURN_IF_ERROR(ParseToml(root, &config));
  SLUICE_RETURN_IF_ERROR(ApplyEnv(env, &config));
  SLUICE_RETURN_IF_ERROR(ValidateConfig(&config));
  return config;
}

Result<Config> ParseConfig(const std::string& toml_text) {
  return ParseConfig(toml_text, [](const char* name) { return std::getenv(name); });
}

Result<Config> LoadConfig(const std::string& path) {
  if (path.empty()) return ParseConfig("");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("config: cannot read file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError("config: error reading " + path);
  return ParseConfig(ss.str());
}

}  // namespace sluice
