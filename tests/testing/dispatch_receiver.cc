#include "testing/dispatch_receiver.h"

#include <simdjson.h>

#include <chrono>

#include "testing/sink_servers.h"

namespace sluice::testing {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

DispatchReceiver::DispatchReceiver() {
  http_ = std::make_unique<HttpReceiver>(
      [this](const ReceivedRequest& req) -> Reply {
        const int64_t now = SteadyNowMs();
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        simdjson::dom::array events;
        std::vector<std::string> keys;
        bool ok = parser.parse(req.body).get(doc) == simdjson::SUCCESS &&
                  doc["events"].get_array().get(events) == simdjson::SUCCESS;
        if (ok) {
          for (simdjson::dom::element e : events) {
            std::string_view project, id;
            if (e["project"].get_string().get(project) != simdjson::SUCCESS ||
                e["insert_id"].get_string().get(id) != simdjson::SUCCESS) {
              ok = false;
              break;
            }
            keys.push_back(std::string(project) + "/" + std::string(id));
          }
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (!ok) {
          ++malformed_;
          return Reply{400, {}, "expected {\"events\":[{\"project\":..,\"insert_id\":..}]}"};
        }
        ++requests_;
        for (std::string& k : keys) {
          seen_[std::move(k)].push_back(now);
          ++deliveries_;
        }
        return Reply{};
      },
      /*keep_requests=*/false);
}

DispatchReceiver::~DispatchReceiver() = default;

std::string DispatchReceiver::url() const { return http_->url("/dispatch"); }

std::string DispatchReceiver::ConsumerToml(const std::string& name, int bit) const {
  return "[[consumer]]\ntype = \"webhook\"\nname = \"" + name + "\"\nbit = " +
         std::to_string(bit) + "\nurl = \"" + url() +
         "\"\nmode = \"per_batch\"\nbatch_template = '{\"events\":[{{events}}]}'\n";
}

DispatchReceiver::Counts DispatchReceiver::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  Counts c;
  c.requests = requests_;
  c.deliveries = deliveries_;
  c.distinct = static_cast<int64_t>(seen_.size());
  for (const auto& [key, times] : seen_) c.duplicated += times.size() > 1 ? 1 : 0;
  c.repeats = c.deliveries - c.distinct;
  c.malformed = malformed_;
  return c;
}

std::map<std::string, std::vector<int64_t>> DispatchReceiver::deliveries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

std::vector<std::string> DispatchReceiver::Duplicated(size_t max) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, times] : seen_) {
    if (times.size() < 2) continue;
    if (out.size() >= max) break;
    out.push_back(key + " x" + std::to_string(times.size()));
  }
  return out;
}

std::string RedeliveryExplanation::Summary() const {
  std::string s = std::to_string(repeats);
  if (!by_cause.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [cause, n] : by_cause) {
      if (!first) s += ", ";
      s += cause + " " + std::to_string(n);
      first = false;
    }
    s += ")";
  }
  s += ", unexplained " + std::to_string(unexplained);
  return s;
}

RedeliveryExplanation ExplainRedeliveries(
    const std::map<std::string, std::vector<int64_t>>& deliveries,
    const std::vector<FaultWindow>& faults, int64_t slack_ms) {
  RedeliveryExplanation r;
  for (const auto& [key, times] : deliveries) {
    for (size_t k = 1; k < times.size(); ++k) {
      ++r.repeats;
      const int64_t t1 = times[k - 1], t2 = times[k];
      // The latest fault that fits: the one closest before the redelivery.
      const FaultWindow* why = nullptr;
      for (const FaultWindow& f : faults) {
        if (f.start_ms <= t2 && f.end_ms + slack_ms >= t1 &&
            (why == nullptr || f.start_ms > why->start_ms)) {
          why = &f;
        }
      }
      if (why != nullptr) {
        ++r.explained;
        ++r.by_cause[why->cause];
      } else {
        ++r.unexplained;
        if (r.examples.size() < 5) {
          r.examples.push_back(key + " delivered at " + std::to_string(t1) + " and again at " +
                               std::to_string(t2) + " ms with no fault in between");
        }
      }
    }
  }
  return r;
}

}  // namespace sluice::testing
