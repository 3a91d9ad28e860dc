#include "common/metrics.h"

#include <cmath>
#include <cstdio>

namespace sluice {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<int64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<int64_t>(std::llround(seconds * 1e6)),
                        std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void Histogram::Snapshot(std::vector<int64_t>* cumulative, double* sum, int64_t* count) const {
  cumulative->clear();
  int64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    cumulative->push_back(acc);
  }
  *sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  *count = acc;
}

std::string Labels(std::initializer_list<std::pair<const char*, std::string>> kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out.push_back(',');
    out.append(k);
    out.append("=\"");
    for (char c : v) {
      if (c == '\\' || c == '"') {
        out.push_back('\\');
        out.push_back(c);
      } else if (c == '\n') {
        out.append("\\n");
      } else {
        out.push_back(c);
      }
    }
    out.push_back('"');
  }
  return out;
}

std::vector<double> Metrics::DefaultLatencyBounds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

Counter& Metrics::GetCounter(const std::string& name, const std::string& help,
                             const std::string& labels) {
  std::lock_guard lock(mu_);
  Family& f = families_[name];
  f.kind = Kind::kCounter;
  if (f.help.empty()) f.help = help;
  auto& slot = f.counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Metrics::GetGauge(const std::string& name, const std::string& help,
                         const std::string& labels) {
  std::lock_guard lock(mu_);
  Family& f = families_[name];
  f.kind = Kind::kGauge;
  if (f.help.empty()) f.help = help;
  auto& slot = f.gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Metrics::GetHistogram(const std::string& name, const std::string& help,
                                 const std::string& labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  Family& f = families_[name];
  f.kind = Kind::kHistogram;
  if (f.help.empty()) f.help = help;
  auto& slot = f.histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
  return *slot;
}

void Metrics::AddCollector(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string Metrics::RenderPrometheus() {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors) c();  // outside mu_: collectors call Get*/Set

  std::lock_guard lock(mu_);
  std::string out;
  auto series = [&](const std::string& name, const std::string& labels, const std::string& v) {
    out.append(name);
    if (!labels.empty()) {
      out.push_back('{');
      out.append(labels);
      out.push_back('}');
    }
    out.push_back(' ');
    out.append(v);
    out.push_back('\n');
  };
  char buf[64];
  for (const auto& [name, f] : families_) {
    out.append("# HELP ").append(name).append(" ").append(f.help).append("\n");
    switch (f.kind) {
      case Kind::kCounter:
        out.append("# TYPE ").append(name).append(" counter\n");
        for (const auto& [l, c] : f.counters) series(name, l, std::to_string(c->value()));
        break;
      case Kind::kGauge:
        out.append("# TYPE ").append(name).append(" gauge\n");
        for (const auto& [l, g] : f.gauges) series(name, l, std::to_string(g->value()));
        break;
      case Kind::kHistogram:
        out.append("# TYPE ").append(name).append(" histogram\n");
        for (const auto& [l, h] : f.histograms) {
          std::vector<int64_t> cum;
          double sum;
          int64_t count;
          h->Snapshot(&cum, &sum, &count);
          const std::string sep = l.empty() ? "" : ",";
          for (size_t i = 0; i < h->bounds().size(); ++i) {
            std::snprintf(buf, sizeof buf, "%g", h->bounds()[i]);
            series(name + "_bucket", l + sep + "le=\"" + buf + "\"", std::to_string(cum[i]));
          }
          series(name + "_bucket", l + sep + "le=\"+Inf\"", std::to_string(cum.back()));
          std::snprintf(buf, sizeof buf, "%.6f", sum);
          series(name + "_sum", l, buf);
          series(name + "_count", l, std::to_string(count));
        }
        break;
    }
  }
  return out;
}

}  // namespace sluice
