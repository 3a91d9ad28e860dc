#include "ingest/formats/native.h"

#include <simdjson.h>

#include <cmath>
#include <string_view>
#include <utility>

#include "common/time.h"
#include "ingest/formats/common.h"

namespace sluice {
namespace {

using simdjson::dom::element;

// Latest accepted event time: 9999-12-31T23:59:59.999Z.
constexpr int64_t kMaxTimeMs = 253402300799999LL;

struct Failure {
  Status status;
  std::string field;
};

// True when every string (and key) under `e` is at most `max` bytes.
bool StringsWithin(const element& e, size_t max) {
  std::string_view sv;
  simdjson::dom::array arr;
  simdjson::dom::object obj;
  if (e.get_string().get(sv) == simdjson::SUCCESS) return sv.size() <= max;
  if (e.get_array().get(arr) == simdjson::SUCCESS) {
    for (element child : arr) {
      if (!StringsWithin(child, max)) return false;
    }
    return true;
  }
  if (e.get_object().get(obj) == simdjson::SUCCESS) {
    for (auto kv : obj) {
      if (kv.key.size() > max || !StringsWithin(kv.value, max)) return false;
    }
  }
  return true;
}

// Reads an optional JSON object into minified text; null counts as absent.
std::optional<Failure> ReadObject(const element& v, const std::string& field, size_t max_string,
                                  std::string* out) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_object()) return Failure{Status::InvalidArgument(field + ": must be an object"), field};
  if (!StringsWithin(v, max_string)) {
    return Failure{Status::InvalidArgument(field + ": a string is over " +
                                           std::to_string(max_string) + " bytes"),
                   field};
  }
  *out = simdjson::minify(v);
  return std::nullopt;
}

std::optional<Failure> ReadString(const element& v, const std::string& field, size_t max_string,
                                  std::string* out) {
  if (v.is_null()) return std::nullopt;
  std::string_view sv;
  if (v.get_string().get(sv) != simdjson::SUCCESS) {
    return Failure{Status::InvalidArgument(field + ": must be a string"), field};
  }
  if (sv.size() > max_string) {
    return Failure{
        Status::InvalidArgument(field + ": over " + std::to_string(max_string) + " bytes"), field};
  }
  out->assign(sv);
  return std::nullopt;
}

std::optional<Failure> ReadTime(const element& v, int64_t* out) {
  const Failure bad{
      Status::InvalidArgument("time: must be ISO-8601 or epoch milliseconds (number or string)"),
      "time"};
  if (v.is_null()) return std::nullopt;
  int64_t t = 0;
  if (v.is_int64()) {
    t = v.get_int64().value_unsafe();
  } else if (v.is_double()) {
    const double d = v.get_double().value_unsafe();
    if (!std::isfinite(d) || d < 0 || d > static_cast<double>(kMaxTimeMs)) return bad;
    t = static_cast<int64_t>(d);
  } else if (v.is_string()) {
    auto parsed = ParseTimeMs(v.get_string().value_unsafe());
    if (!parsed) return bad;
    t = *parsed;
  } else {
    return bad;
  }
  if (t < 0 || t > kMaxTimeMs) return bad;
  *out = t;
  return std::nullopt;
}

bool KnownType(std::string_view t) {
  return t == "track" || t == "identify" || t == "page" || t == "screen" || t == "group" ||
         t == "alias";
}

std::optional<Failure> DecodeEvent(const element& v, const IngestRequest& req,
                                   const DecodeLimits& limits, Event* ev) {
  simdjson::dom::object obj;
  if (v.get_object().get(obj) != simdjson::SUCCESS) {
    return Failure{Status::InvalidArgument("event must be an object"), ""};
  }
  const size_t max_string = static_cast<size_t>(std::max(0, limits.max_string_bytes));
  bool have_event = false, have_time = false;
  for (auto kv : obj) {
    const std::string_view k = kv.key;
    std::optional<Failure> f;
    if (k == "event") {
      f = ReadString(kv.value, "event", max_string, &ev->event);
      have_event = true;
    } else if (k == "user_id") {
      f = ReadString(kv.value, "user_id", max_string, &ev->user_id);
    } else if (k == "anonymous_id") {
      f = ReadString(kv.value, "anonymous_id", max_string, &ev->anonymous_id);
    } else if (k == "previous_id") {
      f = ReadString(kv.value, "previous_id", max_string, &ev->previous_id);
    } else if (k == "insert_id") {
      f = ReadString(kv.value, "insert_id", max_string, &ev->insert_id);
    } else if (k == "type") {
      f = ReadString(kv.value, "type", max_string, &ev->type);
      if (!f && !KnownType(ev->type)) {
        f = Failure{Status::InvalidArgument(
                        "type: must be one of track, identify, page, screen, group, alias"),
                    "type"};
      }
    } else if (k == "time") {
      f = ReadTime(kv.value, &ev->time_ms);
      have_time = !kv.value.is_null();
    } else if (k == "properties") {
      f = ReadObject(kv.value, "properties", max_string, &ev->properties);
    } else if (k == "user_properties") {
      if (kv.value.is_null()) continue;
      simdjson::dom::object up;
      if (kv.value.get_object().get(up) != simdjson::SUCCESS) {
        f = Failure{Status::InvalidArgument("user_properties: must be an object"),
                    "user_properties"};
      } else {
        for (auto op : up) {
          if (op.key == "$set") {
            f = ReadObject(op.value, "user_properties.$set", max_string, &ev->set);
          } else if (op.key == "$set_once") {
            f = ReadObject(op.value, "user_properties.$set_once", max_string, &ev->set_once);
          } else if (op.key == "$unset" || op.key == "$add") {
            const std::string field = "user_properties." + std::string(op.key);
            std::string out;
            Status st = op.key == "$unset" ? UnsetNames(op.value, &out) : AddAmounts(op.value, &out);
            if (st.ok() && !StringsWithin(op.value, max_string)) {
              st = Status::InvalidArgument("a string is over " + std::to_string(max_string) +
                                           " bytes");
            }
            if (!st.ok()) {
              f = Failure{Status::InvalidArgument(field + ": " + st.message()), field};
            } else {
              (op.key == "$unset" ? ev->unset : ev->add) = std::move(out);
            }
          } else {
            const std::string field = "user_properties." + std::string(op.key);
            f = Failure{Status::InvalidArgument(
                            field + ": unsupported (use $set, $set_once, $unset or $add)"),
                        field};
          }
          if (f) break;
        }
      }
    }
    // Unknown keys are ignored: newer clients may send more than we read.
    if (f) return f;
  }
  if (!have_event || ev->event.empty()) {
    return Failure{Status::InvalidArgument("event: a non-empty event name is required"), "event"};
  }
  if (ev->user_id.empty() && ev->anonymous_id.empty()) {
    return Failure{Status::InvalidArgument("user_id or anonymous_id is required"), "user_id"};
  }
  if (ev->type == "alias" && (ev->previous_id.empty() || ev->user_id.empty())) {
    return Failure{Status::InvalidArgument(
                       "alias: previous_id (the id being aliased) and user_id are required"),
                   ev->previous_id.empty() ? "previous_id" : "user_id"};
  }
  if (!have_time) ev->time_ms = req.now_ms;
  if (ev->insert_id.empty()) ev->insert_id = RandomInsertId();
  return std::nullopt;
}

class NativeFormat final : public Format {
 public:
  std::string_view name() const override { return "native"; }

  bool Matches(std::string_view method, std::string_view path) const override {
    return method == "POST" && (path == "/v1/events" || path == "/v1/events/");
  }

  DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const override {
    DecodeResult r;
    // One parser per I/O thread: reusing its buffers avoids an allocation per request.
    thread_local simdjson::dom::parser parser;
    const size_t depth = static_cast<size_t>(std::max(1, limits.max_json_depth));
    if (parser.max_depth() != depth) {
      if (parser.allocate(std::max<size_t>(req.body.size(), 4096), depth) != simdjson::SUCCESS) {
        r.status = Status::Internal("JSON parser allocation failed");
        return r;
      }
    }
    element root;
    const auto err = parser.parse(req.body.data(), req.body.size()).get(root);
    if (err != simdjson::SUCCESS) {
      if (err == simdjson::DEPTH_ERROR) {
        r.status = Status::InvalidArgument("JSON nested deeper than " + std::to_string(depth));
      } else if (err == simdjson::UTF8_ERROR) {
        r.status = Status::InvalidArgument("body is not valid UTF-8");
      } else if (err == simdjson::CAPACITY || err == simdjson::MEMALLOC) {
        r.status = Status::TooLarge("body too large to parse");
      } else {
        r.status =
            Status::InvalidArgument(std::string("malformed JSON: ") + simdjson::error_message(err));
      }
      return r;
    }
    simdjson::dom::object top;
    if (root.get_object().get(top) != simdjson::SUCCESS) {
      r.status = Status::InvalidArgument("body must be a JSON object with an \"events\" array");
      return r;
    }
    element wk;
    if (top["write_key"].get(wk) == simdjson::SUCCESS && !wk.is_null()) {
      std::string_view key;
      if (wk.get_string().get(key) != simdjson::SUCCESS) {
        r.status = Status::InvalidArgument("write_key: must be a string");
        r.field = "write_key";
        return r;
      }
      r.write_key.assign(key);
    }
    simdjson::dom::array events;
    if (top["events"].get_array().get(events) != simdjson::SUCCESS) {
      r.status = Status::InvalidArgument("events: an array of events is required");
      r.field = "events";
      return r;
    }
    const size_t n = events.size();
    if (n > static_cast<size_t>(std::max(0, limits.max_events))) {
      r.status = Status::TooLarge("more than " + std::to_string(limits.max_events) +
                                  " events in one request");
      r.field = "events";
      return r;
    }
    r.events.reserve(n);
    int32_t index = 0;
    for (element v : events) {
      Event ev;
      if (auto f = DecodeEvent(v, req, limits, &ev)) {
        r.events.clear();
        r.status = std::move(f->status);
        r.index = index;
        r.field = std::move(f->field);
        return r;
      }
      ev.received_ms = req.now_ms;
      r.events.push_back(std::move(ev));
      ++index;
    }
    return r;
  }

  IngestReply Reply(const IngestOutcome& outcome) const override { return NativeReply(outcome); }
};

}  // namespace

FormatPtr NewNativeFormat() { return std::make_unique<NativeFormat>(); }

void EncodeNativeEvent(const Event& e, std::string* out) {
  out->push_back('{');
  bool first = true;
  auto key = [&](std::string_view k) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(k, out);
    out->push_back(':');
  };
  auto string_field = [&](std::string_view k, const std::string& v) {
    if (v.empty()) return;
    key(k);
    AppendJsonString(v, out);
  };
  string_field("insert_id", e.insert_id);
  string_field("event", e.event);
  string_field("user_id", e.user_id);
  string_field("anonymous_id", e.anonymous_id);
  string_field("previous_id", e.previous_id);
  if (e.time_ms > 0) {
    key("time");
    out->append(std::to_string(e.time_ms));
  }
  if (e.type != "track") string_field("type", e.type);
  if (!e.properties.empty()) {
    key("properties");
    out->append(e.properties);
  }
  if (!e.set.empty() || !e.set_once.empty() || !e.unset.empty() || !e.add.empty()) {
    key("user_properties");
    out->push_back('{');
    bool first_op = true;
    for (const auto& [op, v] : {std::pair<std::string_view, const std::string*>{"$set", &e.set},
                                {"$set_once", &e.set_once},
                                {"$unset", &e.unset},
                                {"$add", &e.add}}) {
      if (v->empty()) continue;
      if (!first_op) out->push_back(',');
      first_op = false;
      AppendJsonString(op, out);
      out->push_back(':');
      out->append(*v);
    }
    out->push_back('}');
  }
  out->push_back('}');
}

size_t NativeBodyBuilder::Separate() {
  if (events_++ > 0) body_.push_back(',');
  return body_.size();
}

size_t NativeBodyBuilder::Add(const Event& e) {
  const size_t at = Separate();
  EncodeNativeEvent(e, &body_);
  return at;
}

size_t NativeBodyBuilder::AddRaw(std::string_view event_json) {
  const size_t at = Separate();
  body_.append(event_json);
  return at;
}

std::string NativeBodyBuilder::Finish(std::string_view write_key) {
  std::string body = std::move(body_);
  body.push_back(']');
  if (!write_key.empty()) {
    body.append(",\"write_key\":");
    AppendJsonString(write_key, &body);
  }
  body.push_back('}');
  body_ = "{\"events\":[";
  events_ = 0;
  return body;
}

std::string EncodeNativeBody(std::span<const Event> events, std::string_view write_key) {
  NativeBodyBuilder b;
  for (const Event& e : events) b.Add(e);
  return b.Finish(write_key);
}

}  // namespace sluice
