// Metrics: lock-free counters, gauges and histograms, rendered as Prometheus
// text by ops. Every subsystem registers what it counts here; every rejection
// of a bounded input is counted. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice {

class Counter {
 public:
  void Inc(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Fixed buckets (upper bounds, seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double seconds);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound plus +Inf, sum, count.
  void Snapshot(std::vector<int64_t>* cumulative, double* sum, int64_t* count) const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<int64_t> sum_micros_{0};
  std::atomic<int64_t> count_{0};
};

// Labels as "k=\"v\",k2=\"v2\"" (already escaped), "" for none.
std::string Labels(std::initializer_list<std::pair<const char*, std::string>> kv);

// Registry: owns metric families. Get* returns a stable reference (never
// invalidated) to the series with these labels, creating it on first use:
// look it up once, keep the reference on the hot path.
class Metrics {
 public:
  Counter& GetCounter(const std::string& name, const std::string& help,
                      const std::string& labels = "");
  Gauge& GetGauge(const std::string& name, const std::string& help,
                  const std::string& labels = "");
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const std::string& labels = "",
                          std::vector<double> bounds = DefaultLatencyBounds());
  // Called at render time to refresh gauges derived from elsewhere (queue depth).
  void AddCollector(std::function<void()> fn);

  // Prometheus text exposition format 0.0.4.
  std::string RenderPrometheus();

  static std::vector<double> DefaultLatencyBounds();  // 0.5 ms .. 10 s

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind;
    std::string help;
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  std::mutex mu_;
  std::map<std::string, Family> families_;  // GUARDED_BY(mu_)
  std::vector<std::function<void()>> collectors_;  // GUARDED_BY(mu_)
};

}  // namespace sluice
