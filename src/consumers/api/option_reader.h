// OptionReader: typed access to a `[[consumer]]` table's type-specific keys
// (ConsumerConfig::options, all strings), remembering which keys were read so
// Finish() can refuse unknown ones (typos). Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "common/status.h"

namespace sluice {

class OptionReader {
 public:
  // `where` prefixes error messages ("consumer NAME").
  OptionReader(const std::map<std::string, std::string>& options, std::string where)
      : options_(options), where_(std::move(where)) {}

  // Each getter leaves *out unchanged when the key is absent; a malformed
  // value is remembered and reported by Finish.
  void String(const std::string& key, std::string* out);
  void Int(const std::string& key, int64_t* out, int64_t min, int64_t max);
  void Bool(const std::string& key, bool* out);
  // "30s", "250ms", "5m" or bare milliseconds (config.h ParseDurationMs).
  void DurationMs(const std::string& key, int64_t* out);
  bool Has(const std::string& key) const { return options_.contains(key); }

  // The first malformed value, else InvalidArgument naming unknown keys, else Ok.
  Status Finish() const;
  // For checks done by the caller: "consumer NAME: message".
  Status Error(const std::string& message) const {
    return Status::InvalidArgument(where_ + ": " + message);
  }

 private:
  void Fail(const std::string& key, const std::string& why);

  const std::map<std::string, std::string>& options_;
  const std::string where_;
  std::set<std::string> used_;
  Status first_error_;
};

}  // namespace sluice
