#include "ops/user_json.h"

#include "common/event.h"
#include "common/time.h"

namespace sluice {

std::string UserProfileJson(const UserProfile& u) {
  std::string out = "{\"user_id\":";
  AppendJsonString(u.user_id, &out);
  out += ",\"ids\":[";
  for (size_t i = 0; i < u.ids.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(u.ids[i], &out);
  }
  out += "],\"project\":";
  AppendJsonString(u.project, &out);
  out += ",\"first_seen\":";
  AppendJsonString(FormatIso8601Ms(u.first_seen_ms), &out);
  out += ",\"last_seen\":";
  AppendJsonString(FormatIso8601Ms(u.last_seen_ms), &out);
  out += ",\"events\":" + std::to_string(u.events) + ",\"event_counts\":{";
  bool first = true;
  for (const auto& [name, n] : u.event_counts) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(name, &out);
    out += ":" + std::to_string(n);
  }
  out += "},\"properties\":";
  out += u.properties.empty() ? "{}" : u.properties;
  out += ",\"merges_refused\":[";
  for (size_t i = 0; i < u.merges_refused.size(); ++i) {
    const RefusedMerge& m = u.merges_refused[i];
    if (i > 0) out.push_back(',');
    out += "{\"from\":";
    AppendJsonString(m.from, &out);
    out += ",\"to\":";
    AppendJsonString(m.to, &out);
    out += ",\"time\":";
    AppendJsonString(FormatIso8601Ms(m.key.time_ms), &out);
    out += ",\"insert_id\":";
    AppendJsonString(m.key.insert_id, &out);
    out += "}";
  }
  out += "]}";
  return out;
}

}  // namespace sluice
