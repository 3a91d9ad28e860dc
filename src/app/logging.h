// Structured logging for the sluice binary on spdlog: one JSON object per line
// on stderr by default ({"ts","level","msg",...fields}), or spdlog's text
// pattern. Messages other subsystems log with plain spdlog calls become
// {"msg":"..."}; LogEvent adds fields. Never pass secrets (write keys, admin
// token, passwords) as fields. Thread-safe after SetupLogging.
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace sluice {

// `level`: trace|debug|info|warn|error|critical|off; `format`: json|text.
void SetupLogging(const std::string& level, const std::string& format);

struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  LogField(std::string_view k, const char* v) : key(k), value(v), quoted(true) {}
  LogField(std::string_view k, int64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  LogField(std::string_view k, int v) : key(k), value(std::to_string(v)), quoted(false) {}
  std::string key;
  std::string value;
  bool quoted;
};

// Logs {"msg":msg, fields...} at `level`.
void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields = {});

}  // namespace sluice
