#include "common/event.h"

#include <simdjson.h>

#include <cstdio>

namespace sluice {

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

std::string ToBody(const Event& e) {
  std::string out;
  out.reserve(64 + e.event.size() + e.user_id.size() + e.anonymous_id.size() +
              e.properties.size() + e.set.size() + e.set_once.size() + e.unset.size() +
              e.add.size() + e.previous_id.size());
  out.append("{\"event\":");
  AppendJsonString(e.event, &out);
  if (!e.user_id.empty()) {
    out.append(",\"user_id\":");
    AppendJsonString(e.user_id, &out);
  }
  if (!e.anonymous_id.empty()) {
    out.append(",\"anonymous_id\":");
    AppendJsonString(e.anonymous_id, &out);
  }
  out.append(",\"time\":");
  out.append(std::to_string(e.time_ms));
  if (!e.type.empty() && e.type != "track") {
    out.append(",\"type\":");
    AppendJsonString(e.type, &out);
  }
  if (!e.previous_id.empty()) {
    out.append(",\"previous_id\":");
    AppendJsonString(e.previous_id, &out);
  }
  if (!e.properties.empty()) {
    out.append(",\"properties\":");
    out.append(e.properties);
  }
  if (!e.set.empty()) {
    out.append(",\"set\":");
    out.append(e.set);
  }
  if (!e.set_once.empty()) {
    out.append(",\"set_once\":");
    out.append(e.set_once);
  }
  if (!e.unset.empty()) {
    out.append(",\"unset\":");
    out.append(e.unset);
  }
  if (!e.add.empty()) {
    out.append(",\"add\":");
    out.append(e.add);
  }
  if (e.received_ms != 0) {
    out.append(",\"received\":");
    out.append(std::to_string(e.received_ms));
  }
  out.push_back('}');
  return out;
}

Status ParseBody(std::string_view body, Event* out) {
  // One parser per thread: consumers parse every claimed body.
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return Status::InvalidArgument("body is not JSON");
  }
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) {
    return Status::InvalidArgument("body is not an object");
  }
  out->type = "track";
  out->user_id.clear();
  out->anonymous_id.clear();
  out->properties.clear();
  out->set.clear();
  out->set_once.clear();
  out->unset.clear();
  out->add.clear();
  out->previous_id.clear();
  out->received_ms = 0;
  bool have_event = false, have_time = false;
  for (auto field : obj) {
    const std::string_view k = field.key;
    std::string_view sv;
    if (k == "event" && field.value.get_string().get(sv) == simdjson::SUCCESS) {
      out->event.assign(sv);
      have_event = true;
    } else if (k == "user_id" && field.value.get_string().get(sv) == simdjson::SUCCESS) {
      out->user_id.assign(sv);
    } else if (k == "anonymous_id" && field.value.get_string().get(sv) == simdjson::SUCCESS) {
      out->anonymous_id.assign(sv);
    } else if (k == "type" && field.value.get_string().get(sv) == simdjson::SUCCESS) {
      out->type.assign(sv);
    } else if (k == "previous_id" && field.value.get_string().get(sv) == simdjson::SUCCESS) {
      out->previous_id.assign(sv);
    } else if (k == "time") {
      int64_t t;
      if (field.value.get_int64().get(t) == simdjson::SUCCESS) {
        out->time_ms = t;
        have_time = true;
      }
    } else if (k == "received") {
      int64_t t;
      if (field.value.get_int64().get(t) == simdjson::SUCCESS) out->received_ms = t;
    } else if (k == "properties") {
      out->properties = simdjson::minify(field.value);
    } else if (k == "set") {
      out->set = simdjson::minify(field.value);
    } else if (k == "set_once") {
      out->set_once = simdjson::minify(field.value);
    } else if (k == "unset") {
      out->unset = simdjson::minify(field.value);
    } else if (k == "add") {
      out->add = simdjson::minify(field.value);
    }
  }
  if (!have_event || !have_time) return Status::InvalidArgument("body lacks event or time");
  return Status::Ok();
}

}  // namespace sluice
