#include "testkit/flaky_consumer.h"

#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "common/clock.h"

namespace sluice {
namespace {

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

// Sleeps up to `ms`, waking early at the delivery deadline or on cancel.
// Returns false when cut short.
bool SleepFor(const Delivery& d, int64_t ms) {
  const int64_t end = Clock::Real().MonoMs() + ms;
  while (true) {
    const int64_t now = Clock::Real().MonoMs();
    if (now >= end) return true;
    if (d.Cancelled()) return false;
    if (d.deadline_mono_ms > 0 && now >= d.deadline_mono_ms) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(end - now, 5)));
  }
}

}  // namespace

Result<FlakyConsumerOptions> ParseFlakyConsumerOptions(
    const std::map<std::string, std::string>& options) {
  FlakyConsumerOptions o;
  for (const auto& [k, v] : options) {
    int64_t n = 0;
    if (k == "in_store") {
      if (v != "true" && v != "false") return Status::InvalidArgument("test.in_store: bool");
      o.in_store = v == "true";
    } else if (k == "sleep_ms" && ParseInt(v, &n) && n >= 0) {
      o.sleep_ms = n;
    } else if (k == "fail_first_n" && ParseInt(v, &n) && n >= 0) {
      o.fail_first_n = static_cast<int32_t>(n);
    } else if (k == "hang_ms" && ParseInt(v, &n) && n >= 0) {
      o.hang_ms = n;
    } else if (k == "hang_first_n" && ParseInt(v, &n) && n >= 0) {
      o.hang_first_n = static_cast<int32_t>(n);
    } else if (k == "seed" && ParseInt(v, &n)) {
      o.seed = static_cast<uint64_t>(n);
    } else if (k == "poison_event") {
      o.poison_event = v;
    } else if (k == "fail_rate") {
      char* end = nullptr;
      const double r = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || r < 0 || r > 1) {
        return Status::InvalidArgument("test.fail_rate: a number in [0, 1]");
      }
      o.fail_rate = r;
    } else {
      return Status::InvalidArgument("test." + k + ": unknown key or bad value '" + v + "'");
    }
  }
  return o;
}

FlakyConsumer::FlakyConsumer(std::string name, uint64_t bit, FlakyConsumerOptions options,
                             Metrics* metrics)
    : Consumer(std::move(name), bit),
      options_(std::move(options)),
      delivered_metric_(metrics == nullptr
                            ? nullptr
                            : &metrics->GetCounter("sluice_test_consumer_events_total",
                                                   "Events the test consumer accepted.",
                                                   Labels({{"consumer", this->name()}}))),
      rng_(options_.seed) {}

void FlakyConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects*) const {
  calls_.fetch_add(1);
  delivered_.fetch_add(static_cast<int64_t>(events.size()));
  if (delivered_metric_ != nullptr) delivered_metric_->Inc(static_cast<int64_t>(events.size()));
  std::lock_guard<std::mutex> lock(mu_);
  for (const DecodedEvent& e : events) {
    seen_.push_back(e.row->seq);
    delivered_seqs_.push_back(e.row->seq);
  }
}

std::vector<int64_t> FlakyConsumer::seen_seqs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_;
}

std::vector<int64_t> FlakyConsumer::delivered_seqs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delivered_seqs_;
}

Status FlakyConsumer::DecideLocked(const Delivery& d, int64_t call_index) {
  if (call_index < options_.fail_first_n) {
    return Status::IoError("injected failure " + std::to_string(call_index + 1) + " of " +
                           std::to_string(options_.fail_first_n));
  }
  if (!options_.poison_event.empty()) {
    for (const DecodedEvent& e : d.events) {
      if (e.event != nullptr && e.event->event == options_.poison_event) {
        return Status::IoError("poison event '" + e.event->event + "' at seq " +
                               std::to_string(e.row->seq));
      }
    }
  }
  if (options_.fail_rate > 0 &&
      std::uniform_real_distribution<double>(0, 1)(rng_) < options_.fail_rate) {
    return Status::IoError("injected random failure");
  }
  return Status::Ok();
}

Status FlakyConsumer::Deliver(const Delivery& d) {
  const int64_t call_index = calls_.fetch_add(1);
  if (hook_) hook_(d);
  Status st;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const DecodedEvent& e : d.events) seen_.push_back(e.row->seq);
    st = DecideLocked(d, call_index);
  }
  if (options_.hang_ms > 0 && call_index < options_.hang_first_n) {
    if (!SleepFor(d, options_.hang_ms)) st = Status::Unavailable("deadline or cancel while hung");
  }
  if (st.ok() && options_.sleep_ms > 0 && !SleepFor(d, options_.sleep_ms)) {
    st = Status::Unavailable("deadline or cancel while writing");
  }
  if (!st.ok()) {
    failures_.fetch_add(1);
    return st;
  }
  delivered_.fetch_add(static_cast<int64_t>(d.events.size()));
  if (delivered_metric_ != nullptr) delivered_metric_->Inc(static_cast<int64_t>(d.events.size()));
  std::lock_guard<std::mutex> lock(mu_);
  for (const DecodedEvent& e : d.events) delivered_seqs_.push_back(e.row->seq);
  return Status::Ok();
}

Result<ConsumerPtr> MakeTestConsumer(const ConsumerConfig& c, uint64_t bit, Metrics* metrics) {
  Result<FlakyConsumerOptions> o = ParseFlakyConsumerOptions(c.options);
  if (!o.ok()) return Status::InvalidArgument("consumer " + c.name + ": " + o.status().message());
  return ConsumerPtr(std::make_unique<FlakyConsumer>(c.name, bit, std::move(*o), metrics));
}

}  // namespace sluice
