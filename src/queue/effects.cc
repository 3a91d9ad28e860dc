#include "queue/effects.h"

#include <simdjson.h>

#include <string_view>
#include <utility>
#include <vector>

#include "common/event.h"

namespace sluice {

const char* GranularityName(Granularity g) {
  switch (g) {
    case Granularity::kMinute:
      return "minute";
    case Granularity::kHour:
      return "hour";
    case Granularity::kDay:
      return "day";
  }
  return "hour";
}

int64_t BucketStartMs(Granularity g, int64_t ms) {
  int64_t width = 60'000;
  if (g == Granularity::kHour) width = 3'600'000;
  if (g == Granularity::kDay) width = 86'400'000;
  // Floor division: epoch ms before 1970 still land at their bucket's start.
  int64_t q = ms / width;
  if (ms % width != 0 && ms < 0) --q;
  return q * width;
}

namespace {

// Parses `text` as a JSON object into (key, minified value) pairs in document
// order. Returns false (and leaves `out` empty) unless it is an object.
bool ObjectMembers(simdjson::dom::parser& parser, const std::string& text,
                   std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  if (text.empty()) return true;
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS) return false;
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return false;
  for (auto field : obj) {
    out->emplace_back(std::string(field.key), simdjson::minify(field.value));
  }
  return true;
}

}  // namespace

std::string MergeJsonObjects(const std::string& base, const std::string& over, bool overwrite) {
  // Parsers are reused per thread: the merge runs inside store transactions,
  // once per user per batch, and allocating a parser each time would dominate.
  thread_local simdjson::dom::parser parser;
  std::vector<std::pair<std::string, std::string>> base_members;
  std::vector<std::pair<std::string, std::string>> over_members;
  if (!ObjectMembers(parser, base, &base_members)) base_members.clear();
  if (!ObjectMembers(parser, over, &over_members)) over_members.clear();

  // Duplicate keys inside one object: the last occurrence wins (JSON.parse semantics).
  auto find = [](std::vector<std::pair<std::string, std::string>>& v, std::string_view key) {
    for (auto& kv : v) {
      if (kv.first == key) return &kv;
    }
    return static_cast<std::pair<std::string, std::string>*>(nullptr);
  };
  std::vector<std::pair<std::string, std::string>> merged;
  merged.reserve(base_members.size() + over_members.size());
  for (auto& kv : base_members) {
    if (auto* existing = find(merged, kv.first)) {
      existing->second = std::move(kv.second);
    } else {
      merged.push_back(std::move(kv));
    }
  }
  const size_t base_count = merged.size();
  for (auto& kv : over_members) {
    auto* existing = find(merged, kv.first);
    if (existing == nullptr) {
      merged.push_back(std::move(kv));
    } else if (overwrite || existing >= merged.data() + base_count) {
      // Keys new to `base` behave like duplicates within `over`: last wins.
      existing->second = std::move(kv.second);
    }
  }

  std::string out = "{";
  for (size_t i = 0; i < merged.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(merged[i].first, &out);
    out.push_back(':');
    out += merged[i].second;
  }
  out.push_back('}');
  return out;
}

}  // namespace sluice
