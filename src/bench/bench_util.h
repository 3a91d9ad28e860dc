// Shared pieces of the benchmark drivers: latency percentiles, synthetic
// events, and a tiny JSON object writer for `--json` output.
// Thread-compatible value types and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/event.h"

namespace sluice {

// Percentiles of a set of latencies (inputs in microseconds, outputs in ms).
struct LatencySummary {
  int64_t count = 0;
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
};

// Sorts `micros` in place (nearest-rank percentiles).
LatencySummary Summarize(std::vector<int64_t>* micros);

// "p50 1.23 ms  p90 ...", for the human tables.
std::string FormatLatency(const LatencySummary& s);

// Lowercase hex of `n` random characters (std::random_device seeded).
std::string RandomHex(int n);

// Deterministic synthetic events: event i belongs to user i % users, has one
// of a few event names, a time spread over one day before `base_time_ms`, and
// a padding property so its native JSON form is about `event_bytes` long.
class SyntheticEvents {
 public:
  SyntheticEvents(int64_t users, int32_t event_bytes, int64_t base_time_ms);

  // The normalized Event (insert_id left empty; callers choose it).
  Event Make(int64_t i) const;

 private:
  const int64_t users_;
  const int32_t event_bytes_;
  const int64_t base_time_ms_;
};

// Builds one flat JSON object: {"k":v,...}. Keys are not escaped (callers pass
// identifiers).
class JsonObject {
 public:
  JsonObject& Add(std::string_view key, int64_t v);
  JsonObject& Add(std::string_view key, double v);
  JsonObject& Add(std::string_view key, std::string_view v);
  JsonObject& Add(std::string_view key, const char* v) { return Add(key, std::string_view(v)); }
  JsonObject& AddBool(std::string_view key, bool v);
  JsonObject& AddRaw(std::string_view key, std::string_view json);
  JsonObject& AddLatency(std::string_view key, const LatencySummary& s);
  std::string Build() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

// Monotonic microseconds.
int64_t NowMicros();

// User + system CPU seconds this process has used so far (getrusage). On a
// shared machine, events per CPU-second is the figure other load disturbs least.
double ProcessCpuSeconds();

}  // namespace sluice
