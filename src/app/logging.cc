#include "app/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>

#include "common/event.h"
#include "common/time.h"

namespace sluice {
namespace {

// A payload that LogEvent produced: a JSON object whose fields are merged
// into the line. Anything else is a plain message.
bool IsObjectPayload(std::string_view p) {
  return p.size() >= 2 && p.front() == '{' && p.back() == '}' && p[1] == '"';
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    std::string line = "{\"ts\":\"" + FormatIso8601Ms(ms) + "\",\"level\":\"";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",";
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (IsObjectPayload(payload)) {
      line.append(payload.substr(1));
    } else {
      line += "\"msg\":";
      AppendJsonString(payload, &line);
      line += "}";
    }
    line += "\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

void SetupLogging(const std::string& level, const std::string& format) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("sluice", sink);
  if (format == "text") {
    logger->set_formatter(
        std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v"));
  } else {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);  // tests and operators tail the log live
  spdlog::set_default_logger(logger);
}

void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields) {
  if (!spdlog::should_log(level)) return;
  std::string out = "{\"msg\":";
  AppendJsonString(msg, &out);
  for (const LogField& f : fields) {
    out.push_back(',');
    AppendJsonString(f.key, &out);
    out.push_back(':');
    if (f.quoted) {
      AppendJsonString(f.value, &out);
    } else {
      out += f.value;
    }
  }
  out.push_back('}');
  spdlog::log(level, "{}", out);
}


}  // namespace sluice
