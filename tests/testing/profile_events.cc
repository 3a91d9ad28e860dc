#include "testing/profile_events.h"

#include <simdjson.h>

#include <algorithm>
#include <random>
#include <set>
#include <tuple>
#include <utility>

#include "ops/user_json.h"
#include "profile/profile.h"
#include "queue/store.h"

namespace sluice::testing {
namespace {

std::string Pick(std::mt19937_64& rng, const std::string& prefix, int n) {
  return prefix + std::to_string(std::uniform_int_distribution<int>(0, n - 1)(rng));
}

// A JSON object of 1..2 members on random keys with `value` producing each value.
template <typename Fn>
std::string RandomObject(std::mt19937_64& rng, int keys, Fn value) {
  std::set<std::string> names;
  const int n = std::uniform_int_distribution<int>(1, 2)(rng);
  for (int i = 0; i < n; ++i) names.insert(Pick(rng, "k", keys));
  std::string out = "{";
  for (const std::string& k : names) {
    if (out.size() > 1) out.push_back(',');
    AppendJsonString(k, &out);
    out.push_back(':');
    out += value();
  }
  return out + "}";
}

}  // namespace

std::vector<Event> RandomProfileEvents(uint64_t seed, const std::string& project,
                                       const ProfileEventsOptions& o) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> percent(0, 99);
  std::vector<Event> out;
  out.reserve(static_cast<size_t>(o.events));
  for (int i = 0; i < o.events; ++i) {
    Event e;
    e.project = project;
    e.insert_id = "e" + std::to_string(i);
    e.time_ms = o.t0_ms + 1000 * std::uniform_int_distribution<int>(0, o.times - 1)(rng);
    const int kind = percent(rng);
    if (kind < 10) {  // identify: links the anonymous id to the user
      e.event = "identify";
      e.type = "identify";
      e.user_id = Pick(rng, "u", o.users);
      e.anonymous_id = Pick(rng, "a", o.anonymous);
    } else if (kind < 14) {  // alias: anonymous or (refused) another user -> user
      e.event = "alias";
      e.type = "alias";
      e.user_id = Pick(rng, "u", o.users);
      e.previous_id = percent(rng) < 70 ? Pick(rng, "a", o.anonymous) : Pick(rng, "u", o.users);
    } else if (kind < 55) {
      e.event = percent(rng) < 50 ? "view" : "click";
      e.user_id = Pick(rng, "u", o.users);
    } else {
      e.event = percent(rng) < 50 ? "view" : "open";
      e.anonymous_id = Pick(rng, "a", o.anonymous);
    }
    int value_seq = 0;
    auto text = [&] {
      return "\"v" + std::to_string(i) + "-" + std::to_string(value_seq++) + "\"";
    };
    if (percent(rng) < 40) e.set = RandomObject(rng, o.keys, text);
    if (percent(rng) < 25) e.set_once = RandomObject(rng, o.keys, text);
    if (percent(rng) < 10) e.unset = "[\"" + Pick(rng, "k", o.keys) + "\"]";
    if (percent(rng) < 20) {
      e.add = RandomObject(rng, o.keys, [&] {
        static const char* kAmounts[] = {"1", "2", "-1", "0.1", "0.2", "2.5"};
        return std::string(kAmounts[std::uniform_int_distribution<int>(0, 5)(rng)]);
      });
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> IdsOf(const std::vector<Event>& events) {
  std::set<std::string> ids;
  for (const Event& e : events) {
    for (const std::string* id : {&e.user_id, &e.anonymous_id, &e.previous_id}) {
      if (!id->empty()) ids.insert(*id);
    }
  }
  return {ids.begin(), ids.end()};
}

std::map<std::string, std::string> ModelProfiles(const std::string& project,
                                                 const std::vector<Event>& events) {
  ProfileBatch batch;
  for (const Event& e : events) AddEvent(project, e.insert_id, e, &batch);
  std::vector<IdRow> rows;
  for (const auto& [key, state] : batch) rows.push_back(IdRow{key.second, state});
  std::map<std::string, std::string> out;
  for (const IdRow& row : rows) {
    out[row.id] = UserProfileJson(MakeUserProfile(project, PersonOf(row.id, row.state), rows));
  }
  return out;
}

std::map<std::string, std::string> LastBatchWinsProperties(
    const std::vector<std::vector<Event>>& batches) {
  simdjson::dom::parser parser;
  // Per id, the stored object as (key -> minified value), then rendered.
  std::map<std::string, std::map<std::string, std::string>> stored;
  auto members = [&](const std::string& text) {
    std::vector<std::pair<std::string, std::string>> out;
    simdjson::dom::object obj;
    if (text.empty() || parser.parse(text).get_object().get(obj) != simdjson::SUCCESS) return out;
    for (auto field : obj) out.emplace_back(std::string(field.key), simdjson::minify(field.value));
    return out;
  };
  for (const std::vector<Event>& batch : batches) {
    std::vector<const Event*> sorted;
    for (const Event& e : batch) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(), [](const Event* a, const Event* b) {
      return std::tie(a->time_ms, a->insert_id) < std::tie(b->time_ms, b->insert_id);
    });
    std::map<std::string, std::map<std::string, std::string>> set, set_once;
    for (const Event* e : sorted) {
      for (auto& [k, v] : members(e->set)) set[e->distinct_id()][k] = v;
      for (auto& [k, v] : members(e->set_once)) set_once[e->distinct_id()].try_emplace(k, v);
    }
    for (auto& [id, kv] : set) {
      for (auto& [k, v] : kv) stored[id][k] = v;
    }
    for (auto& [id, kv] : set_once) {
      for (auto& [k, v] : kv) stored[id].try_emplace(k, v);
    }
  }
  std::map<std::string, std::string> out;
  for (const auto& [id, kv] : stored) {
    std::string json = "{";
    for (const auto& [k, v] : kv) {
      if (json.size() > 1) json.push_back(',');
      AppendJsonString(k, &json);
      json += ":" + v;
    }
    out[id] = json + "}";
  }
  return out;
}

}  // namespace sluice::testing
