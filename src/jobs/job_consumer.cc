#include "jobs/job_consumer.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "consumers/api/filter.h"
#include <simdjson.h>

namespace sluice {
namespace {

// The property's value as a key: a string as is, a number or boolean as its
// JSON text; nullopt for null, objects, arrays and a missing property.
std::optional<std::string> PropertyKey(const std::string& properties, const std::string& name) {
  if (properties.empty()) return std::nullopt;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(properties).get(doc) != simdjson::SUCCESS) return std::nullopt;
  simdjson::dom::element v;
  if (doc[name].get(v) != simdjson::SUCCESS) return std::nullopt;
  switch (v.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s;
      if (v.get(s) != simdjson::SUCCESS || s.empty()) return std::nullopt;
      return std::string(s);
    }
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE:
    case simdjson::dom::element_type::BOOL:
      return simdjson::minify(v);
    default:
      return std::nullopt;
  }
}

}  // namespace

std::optional<std::string> JobKeyFor(JobKeyKind kind, const std::string& property,
                                     const Event& e) {
  switch (kind) {
    case JobKeyKind::kUser: {
      // The distinct id; the store maps it to its person in the transaction
      // that schedules it (JobDelta::key_is_distinct_id), where the links are.
      const std::string& id = e.distinct_id();
      if (id.empty()) return std::nullopt;
      return id;
    }
    case JobKeyKind::kProject:
      return e.project.empty() ? std::string("default") : e.project;
    case JobKeyKind::kProperty:
      return PropertyKey(e.properties, property);
  }
  return std::nullopt;
}

JobConsumer::JobConsumer(JobOptions options, Metrics* metrics)
    : Consumer(options.name, uint64_t{1} << options.bit), options_(std::move(options)) {
  if (metrics != nullptr) {
    const std::string l = Labels({{"job", options_.name}});
    scheduled_ = &metrics->GetCounter("sluice_job_scheduled_events_total",
                                      "Events put into job schedules (a redelivered batch's "
                                      "rebuilt effects count again)",
                                      l);
    keyless_ = &metrics->GetCounter("sluice_job_keyless_events_total",
                                    "Events a job skipped because they have no key", l);
  }
}

void JobConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects* out) const {
  std::map<std::pair<std::string, std::string>, JobDelta> by_key;
  int64_t scheduled = 0, keyless = 0;
  for (const DecodedEvent& d : events) {
    if (d.event == nullptr) continue;  // counted by the watcher
    std::optional<std::string> key = JobKeyFor(options_.key_kind, options_.key_property, *d.event);
    if (!key) {
      ++keyless;
      continue;
    }
    const std::string& project = d.row->project;
    auto [it, inserted] = by_key.try_emplace({project, *key});
    JobDelta& delta = it->second;
    if (inserted) {
      delta.job = options_.name;
      delta.project = project;
      delta.key = *key;
      delta.first_event_ms = d.event->time_ms;
      delta.last_event_ms = d.event->time_ms;
      delta.delay_ms = options_.delay_ms;
      delta.max_delay_ms = options_.max_delay_ms;
      delta.key_is_distinct_id = options_.key_kind == JobKeyKind::kUser;
    }
    ++delta.events;
    delta.first_event_ms = std::min(delta.first_event_ms, d.event->time_ms);
    delta.last_event_ms = std::max(delta.last_event_ms, d.event->time_ms);
    ++scheduled;
  }
  for (auto& [k, delta] : by_key) out->jobs.push_back(std::move(delta));
  if (scheduled_ != nullptr && scheduled > 0) scheduled_->Inc(scheduled);
  if (keyless_ != nullptr && keyless > 0) keyless_->Inc(keyless);
}

Result<std::vector<ConsumerPtr>> MakeJobConsumers(const std::vector<JobOptions>& jobs,
                                                  std::span<const ConsumerPtr> existing,
                                                  Metrics* metrics) {
  std::set<std::string> names;
  uint64_t bits = 0;
  for (const ConsumerPtr& c : existing) {
    names.insert(c->name());
    bits |= c->bit();
  }
  std::vector<ConsumerPtr> out;
  for (const JobOptions& job : jobs) {
    if (job.bit < 0 || job.bit > 62) {
      return Status::InvalidArgument("job " + job.name + ": `bit` (0..62) is required");
    }
    if (!names.insert(job.name).second) {
      return Status::InvalidArgument("job " + job.name + ": the name is taken by a consumer or job");
    }
    const uint64_t bit = uint64_t{1} << job.bit;
    if ((bits & bit) != 0) {
      return Status::InvalidArgument("job " + job.name + ": bit " + std::to_string(job.bit) +
                                     " is taken by a consumer or job");
    }
    bits |= bit;
    ConsumerPtr c = std::make_unique<JobConsumer>(job, metrics);
    if (!job.projects.empty() || !job.events.empty()) {
      c = std::make_unique<FilteredConsumer>(std::move(c), EventFilter(job.projects, job.events));
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace sluice
