#include "bench/bench_util.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace sluice {
namespace {

constexpr const char* kEventNames[] = {"page_view", "signup", "add_to_cart", "checkout",
                                       "search",    "login",  "logout",      "share"};
constexpr int kEventNameCount = sizeof(kEventNames) / sizeof(kEventNames[0]);
constexpr const char* kPaths[] = {"/", "/pricing", "/docs", "/blog", "/signup", "/account"};
constexpr int kPathCount = sizeof(kPaths) / sizeof(kPaths[0]);
constexpr int64_t kDayMs = 24LL * 3600 * 1000;

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

}  // namespace

LatencySummary Summarize(std::vector<int64_t>* micros) {
  LatencySummary s;
  if (micros->empty()) return s;
  std::sort(micros->begin(), micros->end());
  s.count = static_cast<int64_t>(micros->size());
  double sum = 0;
  for (int64_t v : *micros) sum += static_cast<double>(v);
  s.mean_ms = sum / static_cast<double>(micros->size()) / 1000.0;
  s.p50_ms = Percentile(*micros, 0.50);
  s.p90_ms = Percentile(*micros, 0.90);
  s.p99_ms = Percentile(*micros, 0.99);
  s.max_ms = static_cast<double>(micros->back()) / 1000.0;
  return s;
}

std::string FormatLatency(const LatencySummary& s) {
  return fmt::format("p50 {:.2f} ms  p90 {:.2f} ms  p99 {:.2f} ms  max {:.2f} ms  (n={})", s.p50_ms,
                     s.p90_ms, s.p99_ms, s.max_ms, s.count);
}

std::string RandomHex(int n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  std::string out(static_cast<size_t>(n), '0');
  for (char& c : out) c = kHex[rng() & 15];
  return out;
}

SyntheticEvents::SyntheticEvents(int64_t users, int32_t event_bytes, int64_t base_time_ms)
    : users_(std::max<int64_t>(users, 1)), event_bytes_(event_bytes), base_time_ms_(base_time_ms) {}

Event SyntheticEvents::Make(int64_t i) const {
  Event e;
  e.event = kEventNames[i % kEventNameCount];
  e.user_id = fmt::format("user-{}", i % users_);
  // Spread over the last day so counters fill minute, hour and day buckets.
  e.time_ms = base_time_ms_ - (i * 7919) % kDayMs;
  e.received_ms = base_time_ms_;
  std::string props = fmt::format(R"({{"path":"{}","plan":"pro","pad":"")", kPaths[i % kPathCount]);
  // Padding keeps the body near event_bytes (about 130 bytes are the fixed fields).
  const int64_t pad = std::max<int64_t>(0, event_bytes_ - 130 - static_cast<int64_t>(props.size()));
  props.pop_back();
  props.append(static_cast<size_t>(pad), 'x');
  props += "\"}";
  e.properties = std::move(props);
  return e;
}

void JsonObject::Key(std::string_view key) {
  if (!body_.empty()) body_ += ',';
  body_ += '"';
  body_ += key;
  body_ += "\":";
}

JsonObject& JsonObject::Add(std::string_view key, int64_t v) {
  Key(key);
  body_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, double v) {
  Key(key);
  body_ += std::isfinite(v) ? fmt::format("{:.3f}", v) : "null";
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, std::string_view v) {
  Key(key);
  AppendJsonString(v, &body_);
  return *this;
}

JsonObject& JsonObject::AddBool(std::string_view key, bool v) {
  Key(key);
  body_ += v ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::AddRaw(std::string_view key, std::string_view json) {
  Key(key);
  body_ += json;
  return *this;
}

JsonObject& JsonObject::AddLatency(std::string_view key, const LatencySummary& s) {
  JsonObject o;
  o.Add("count", s.count).Add("mean_ms", s.mean_ms).Add("p50_ms", s.p50_ms);
  o.Add("p90_ms", s.p90_ms).Add("p99_ms", s.p99_ms).Add("max_ms", s.max_ms);
  return AddRaw(key, o.Build());
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

}  // namespace sluice
