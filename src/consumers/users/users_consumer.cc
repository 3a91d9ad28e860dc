#include "consumers/users/users_consumer.h"

#include <utility>

#include "profile/profile.h"

namespace sluice {

UsersConsumer::UsersConsumer(std::string name, uint64_t bit, Counter* unattributed)
    : Consumer(std::move(name), bit), unattributed_(unattributed) {}

void UsersConsumer::BuildEffects(std::span<const DecodedEvent> events, Effects* out) const {
  ProfileBatch batch;
  for (const DecodedEvent& e : events) {
    // Unparsable bodies were counted by the watcher; a body that names no
    // user cannot be attributed. Skipping keeps the rest of the batch flowing.
    if (e.event == nullptr) continue;
    if (e.event->distinct_id().empty()) {
      if (unattributed_ != nullptr) unattributed_->Inc();
      continue;
    }
    // No sorting: AddEvent keys every operation by (event time, insert_id),
    // so the fold gives the same state in any order.
    AddEvent(e.row->project, e.row->insert_id, *e.event, &batch);
  }
  out->users.reserve(out->users.size() + batch.size());
  for (auto& [key, state] : batch) {
    out->users.push_back(IdDelta{key.first, key.second, std::move(state)});
  }
}

}  // namespace sluice
