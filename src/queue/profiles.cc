// The users effects' store-agnostic parts: combining the parts of a request,
// merging one stored id with its delta, and assembling a person for GetUser.
#include <map>
#include <string_view>
#include <utility>

#include "queue/effects.h"
#include "queue/store.h"

namespace sluice {

IdDeltaSet::IdDeltaSet(std::span<const InStoreEffects> in_store) {
  std::map<std::pair<std::string_view, std::string_view>, std::vector<const IdDelta*>> by_id;
  for (const InStoreEffects& part : in_store) {
    for (const IdDelta& d : part.effects.users) by_id[{d.project, d.id}].push_back(&d);
  }
  size_t shared = 0;
  for (const auto& [key, parts] : by_id) shared += parts.size() > 1 ? 1 : 0;
  merged_.reserve(shared);  // pointers into merged_ stay valid
  rows_.reserve(by_id.size());
  for (auto& [key, parts] : by_id) {
    if (parts.size() == 1) {
      rows_.push_back(parts.front());
      continue;
    }
    IdDelta& m = merged_.emplace_back(IdDelta{std::string(key.first), std::string(key.second), {}});
    for (const IdDelta* d : parts) m.state.Merge(d->state);
    rows_.push_back(&m);
  }
}

bool NeedsAllLinks(const IdState& delta) { return !delta.links.empty() || delta.linked_to; }

bool NeedsStoredRow(const IdState& delta) {
  return !delta.properties.empty() || NeedsAllLinks(delta);
}

Result<IdWrite> MergeId(const StoredId& stored, const IdState& delta) {
  IdWrite w;
  w.merged = stored.state;
  w.merged.properties.clear();
  w.merged.event_counts.clear();
  IdState counted = delta;
  counted.event_counts.clear();
  counted.properties.clear();
  w.merged.Merge(counted);
  if (delta.properties.empty()) {
    w.properties = stored.exists ? stored.properties : "{}";
  } else {
    // A plain object (a row older than per-property state) counts as $sets
    // at the row's last_seen, as the schema migration reads it.
    PropertyMap props;
    if (stored.exists) {
      SLUICE_RETURN_IF_ERROR(
          ParseProperties(stored.properties, OpKey{stored.state.last_seen_ms, ""}, &props));
    }
    for (const auto& [name, p] : delta.properties) props[name].Merge(p);
    w.properties = SerializeProperties(props);
  }
  w.earliest = EarliestLink(w.merged);
  if (stored.all_links) {
    const LinkCounts before = CountLinks(stored.state);
    const LinkCounts after = CountLinks(w.merged);
    w.change.applied = after.applied - before.applied;
    w.change.refused = after.refused - before.refused;
  }
  return w;
}

UserProfile MakeUserProfile(const std::string& project, const std::string& root,
                            const std::vector<IdRow>& rows) {
  Person person = AssemblePerson(root, rows);
  UserProfile p;
  p.project = project;
  p.user_id = root;
  p.ids = std::move(person.ids);
  p.first_seen_ms = person.merged.first_seen_ms;
  p.last_seen_ms = person.merged.last_seen_ms;
  p.events = person.merged.events;
  p.event_counts.assign(person.merged.event_counts.begin(), person.merged.event_counts.end());
  p.properties = RenderProperties(person.merged.properties);
  p.merges_refused = std::move(person.refused);
  return p;
}

}  // namespace sluice
