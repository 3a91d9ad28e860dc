#include "consumers/users/users_consumer.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice {

UsersConsumer::UsersConsumer(std::string name, uint64_t bit, Counter* unattributed)
    : Consumer(std::move(name), bit), unattributed_(unattributed) {}

void UsersConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects* out) const {
  std::vector<DecodedEvent> rows;
  rows.reserve(events.size());
  for (const DecodedEvent& e : events) {
    // Unparsable bodies were counted by the watcher; a body that names no
    // user cannot be attributed. Skipping keeps the rest of the batch flowing.
    if (e.event == nullptr) continue;
    if (e.event->distinct_id().empty()) {
      if (unattributed_ != nullptr) unattributed_->Inc();
      continue;
    }
    rows.push_back(e);
  }
  // Property merges must follow event order, not arrival order: a late-arriving
  // old event must not overwrite a newer $set. seq breaks ties deterministically.
  std::sort(rows.begin(), rows.end(), [](const DecodedEvent& a, const DecodedEvent& b) {
    return std::tie(a.event->time_ms, a.row->seq) < std::tie(b.event->time_ms, b.row->seq);
  });

  std::map<std::pair<std::string, std::string>, UserDelta> by_user;
  for (const DecodedEvent& row : rows) {
    const Event& ev = *row.event;
    const std::string& user = ev.distinct_id();
    auto [it, inserted] = by_user.try_emplace({row.row->project, user});
    UserDelta& d = it->second;
    if (inserted) {
      d.project = row.row->project;
      d.user_id = user;
      d.first_seen_ms = ev.time_ms;
      d.last_seen_ms = ev.time_ms;
    }
    // Sorted by time, so the first event is the earliest and the last the latest.
    d.last_seen_ms = ev.time_ms;
    ++d.events;
    ++d.event_counts[ev.event];
    if (!ev.set.empty() && ev.set != "{}") {
      d.set = d.set.empty() ? ev.set : MergeJsonObjects(d.set, ev.set, true);
    }
    if (!ev.set_once.empty() && ev.set_once != "{}") {
      d.set_once =
          d.set_once.empty() ? ev.set_once : MergeJsonObjects(d.set_once, ev.set_once, false);
    }
  }
  out->users.reserve(out->users.size() + by_user.size());
  for (auto& [key, delta] : by_user) out->users.push_back(std::move(delta));
}

}  // namespace sluice
