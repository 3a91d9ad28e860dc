// EventFilter: which events a consumer wants, by project and event name
// (`[[consumer]] projects = [...]`, `events = [...]`; empty = all).
//
// FilteredConsumer wraps any consumer with a filter: it hands the inner
// consumer only matching events and reports the others as done (deliberately
// filtered out), so their bit is set and they are not offered again. The
// registry wraps a consumer whose config names a filter.
// EventFilter is an immutable value: thread-safe. FilteredConsumer is
// thread-safe when its inner consumer is.
#pragma once

#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "consumers/api/consumer.h"

namespace sluice {

class EventFilter {
 public:
  EventFilter() = default;  // matches everything
  EventFilter(std::vector<std::string> projects, std::vector<std::string> events);
  static EventFilter FromConfig(const ConsumerConfig& config) {
    return EventFilter(config.projects, config.events);
  }

  // True when no project and no event name is listed.
  bool all() const { return projects_.empty() && events_.empty(); }
  bool MatchesProject(std::string_view project) const;
  bool Matches(std::string_view project, std::string_view event_name) const;
  // By the row's project and the decoded event's name (needed only when an
  // event list is set). A body that did not parse matches no event list.
  bool Matches(const DecodedEvent& e) const;
  // The matching subset, order kept.
  std::vector<DecodedEvent> Apply(std::span<const DecodedEvent> events) const;

 private:
  std::set<std::string, std::less<>> projects_;
  std::set<std::string, std::less<>> events_;
};

class FilteredConsumer final : public Consumer {
 public:
  // Takes the inner consumer's name and bit.
  FilteredConsumer(ConsumerPtr inner, EventFilter filter);

  bool in_store() const override { return inner_->in_store(); }
  void BuildEffects(std::span<const DecodedEvent> events, Effects* out) const override;
  Status Deliver(const Delivery& delivery) override;
  int64_t RetryAfterMs() const override { return inner_->RetryAfterMs(); }

  Consumer* inner() const { return inner_.get(); }

 private:
  const ConsumerPtr inner_;
  const EventFilter filter_;
};

}  // namespace sluice
