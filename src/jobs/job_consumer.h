// JobConsumer: the in-store consumer of one [[job]] (docs/jobs.md).
//
// BuildEffects groups a batch by (project, JobKeyFor) into JobDeltas; the
// store upserts each (job, project, key) row inside the fenced transaction
// that sets this consumer's bit, so a redelivered batch never schedules
// twice and N events for one key before its run make one run. Events that
// have no key (no distinct id, no such property) are skipped and counted.
// Thread-safe (stateless apart from metrics).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "jobs/job_options.h"

namespace sluice {

// The key of `e` for a job keyed by `kind` (`property` for kProperty), or
// nullopt when the event has none. kUser: the event's distinct id (user_id,
// else anonymous_id). This is the one place that decides what a "user" job
// is keyed by: when persons land (src/profile, PersonOf), only this changes.
std::optional<std::string> JobKeyFor(JobKeyKind kind, const std::string& property, const Event& e);

class JobConsumer final : public Consumer {
 public:
  // `metrics` may be null.
  JobConsumer(JobOptions options, Metrics* metrics);

  bool in_store() const override { return true; }
  // Pure: one JobDelta per (project, key) of `events`, sorted by (project, key).
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;

  const JobOptions& options() const { return options_; }

 private:
  const JobOptions options_;
  Counter* scheduled_ = nullptr;  // events put into job deltas
  Counter* keyless_ = nullptr;    // events skipped for want of a key
};

// One consumer per job (wrapped in a FilteredConsumer when it names events
// or projects). InvalidArgument when a job's name or bit is taken by one of
// `existing` or by another job.
Result<std::vector<ConsumerPtr>> MakeJobConsumers(const std::vector<JobOptions>& jobs,
                                                  std::span<const ConsumerPtr> existing,
                                                  Metrics* metrics);

}  // namespace sluice
