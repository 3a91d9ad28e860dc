#include "consumers/api/filter.h"

#include <utility>

namespace sluice {

EventFilter::EventFilter(std::vector<std::string> projects, std::vector<std::string> events)
    : projects_(projects.begin(), projects.end()), events_(events.begin(), events.end()) {}

bool EventFilter::MatchesProject(std::string_view project) const {
  return projects_.empty() || projects_.find(project) != projects_.end();
}

bool EventFilter::Matches(std::string_view project, std::string_view event_name) const {
  return MatchesProject(project) && (events_.empty() || events_.find(event_name) != events_.end());
}

bool EventFilter::Matches(const DecodedEvent& e) const {
  if (!MatchesProject(e.row->project)) return false;
  if (events_.empty()) return true;
  return e.event != nullptr && events_.find(e.event->event) != events_.end();
}

std::vector<DecodedEvent> EventFilter::Apply(std::span<const DecodedEvent> events) const {
  std::vector<DecodedEvent> out;
  out.reserve(events.size());
  for (const DecodedEvent& e : events) {
    if (Matches(e)) out.push_back(e);
  }
  return out;
}

FilteredConsumer::FilteredConsumer(ConsumerPtr inner, EventFilter filter)
    : Consumer(inner->name(), inner->bit()), inner_(std::move(inner)), filter_(std::move(filter)) {}

void FilteredConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects* out) const {
  if (filter_.all()) return inner_->BuildEffects(events, out);
  const std::vector<DecodedEvent> kept = filter_.Apply(events);
  if (!kept.empty()) inner_->BuildEffects(kept, out);
}

Status FilteredConsumer::Deliver(const Delivery& delivery) {
  if (filter_.all()) return inner_->Deliver(delivery);
  const std::vector<DecodedEvent> kept = filter_.Apply(delivery.events);
  // Filtered-out events count as done: Ok with nothing to write.
  if (kept.empty()) return Status::Ok();
  Delivery sub = delivery;
  sub.events = kept;
  return inner_->Deliver(sub);
}

}  // namespace sluice
