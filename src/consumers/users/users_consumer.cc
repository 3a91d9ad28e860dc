#include "consumers/users/users_consumer.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "common/event.h"

namespace sluice {

UsersConsumer::UsersConsumer(std::string name, uint64_t bit, Counter* bad_bodies)
    : Consumer(std::move(name), bit), bad_bodies_(bad_bodies) {}

void UsersConsumer::BuildEffects(std::span<const ClaimedEvent* const> events,
                                 Effects* out) const {
  struct Parsed {
    const ClaimedEvent* row;
    Event event;
  };
  std::vector<Parsed> parsed;
  parsed.reserve(events.size());
  for (const ClaimedEvent* row : events) {
    Parsed p{row, {}};
    if (!ParseBody(row->body, &p.event).ok() || p.event.distinct_id().empty()) {
      // Ingest validated every body, so this means a bug or a hand-edited row:
      // skipping keeps the rest of the batch flowing and the counter shows it.
      if (bad_bodies_ != nullptr) bad_bodies_->Inc();
      continue;
    }
    parsed.push_back(std::move(p));
  }
  // Property merges must follow event order, not arrival order: a late-arriving
  // old event must not overwrite a newer $set. seq breaks ties deterministically.
  std::sort(parsed.begin(), parsed.end(), [](const Parsed& a, const Parsed& b) {
    return std::tie(a.event.time_ms, a.row->seq) < std::tie(b.event.time_ms, b.row->seq);
  });

  std::map<std::pair<std::string, std::string>, UserDelta> by_user;
  for (const Parsed& p : parsed) {
    const std::string& user = p.event.distinct_id();
    auto [it, inserted] = by_user.try_emplace({p.row->project, user});
    UserDelta& d = it->second;
    if (inserted) {
      d.project = p.row->project;
      d.user_id = user;
      d.first_seen_ms = p.event.time_ms;
      d.last_seen_ms = p.event.time_ms;
    }
    // Sorted by time, so the first event is the earliest and the last the latest.
    d.last_seen_ms = p.event.time_ms;
    ++d.events;
    ++d.event_counts[p.event.event];
    if (!p.event.set.empty() && p.event.set != "{}") {
      d.set = d.set.empty() ? p.event.set : MergeJsonObjects(d.set, p.event.set, true);
    }
    if (!p.event.set_once.empty() && p.event.set_once != "{}") {
      d.set_once = d.set_once.empty() ? p.event.set_once
                                      : MergeJsonObjects(d.set_once, p.event.set_once, false);
    }
  }
  out->users.reserve(out->users.size() + by_user.size());
  for (auto& [key, delta] : by_user) out->users.push_back(std::move(delta));
}

}  // namespace sluice
