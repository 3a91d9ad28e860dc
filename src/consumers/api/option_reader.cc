#include "consumers/api/option_reader.h"

#include <charconv>

#include "common/time.h"

namespace sluice {

void OptionReader::Fail(const std::string& key, const std::string& why) {
  if (first_error_.ok()) first_error_ = Error("option " + key + ": " + why);
}

void OptionReader::String(const std::string& key, std::string* out) {
  used_.insert(key);
  if (auto it = options_.find(key); it != options_.end()) *out = it->second;
}

void OptionReader::Int(const std::string& key, int64_t* out, int64_t min, int64_t max) {
  used_.insert(key);
  auto it = options_.find(key);
  if (it == options_.end()) return;
  const std::string& s = it->second;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return Fail(key, "not an integer: " + s);
  if (v < min || v > max) {
    return Fail(key, std::to_string(v) + " is out of range " + std::to_string(min) + ".." +
                         std::to_string(max));
  }
  *out = v;
}

void OptionReader::Bool(const std::string& key, bool* out) {
  used_.insert(key);
  auto it = options_.find(key);
  if (it == options_.end()) return;
  if (it->second == "true" || it->second == "1") {
    *out = true;
  } else if (it->second == "false" || it->second == "0") {
    *out = false;
  } else {
    Fail(key, "not a boolean: " + it->second);
  }
}

void OptionReader::DurationMs(const std::string& key, int64_t* out) {
  used_.insert(key);
  auto it = options_.find(key);
  if (it == options_.end()) return;
  std::optional<int64_t> ms = ParseDurationMs(it->second);
  if (!ms || *ms <= 0) return Fail(key, "not a positive duration: " + it->second);
  *out = *ms;
}

Status OptionReader::Finish() const {
  if (!first_error_.ok()) return first_error_;
  std::string unknown;
  for (const auto& [k, v] : options_) {
    if (!used_.contains(k)) unknown += (unknown.empty() ? "" : ", ") + k;
  }
  if (!unknown.empty()) return Error("unknown option(s): " + unknown);
  return Status::Ok();
}

}  // namespace sluice
