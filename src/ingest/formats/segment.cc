#include "ingest/formats/segment.h"

#include <array>

#include "ingest/formats/common.h"

namespace sluice {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

constexpr std::array<std::string_view, 7> kPaths = {
    "/v1/batch", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"};

std::string_view TrimSlash(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

// One Segment message -> Event. On failure returns the Status and sets *field
// to the offending Segment field name.
Status DecodeMessage(object msg, std::string_view default_type, int64_t now_ms, Event* e,
                     std::string* field) {
  element v;
  std::string_view type = default_type;
  if (msg["type"].get(v) == simdjson::SUCCESS) {
    if (v.get_string().get(type) != simdjson::SUCCESS) {
      *field = "type";
      return Status::InvalidArgument("type must be a string");
    }
  } else if (type.empty()) {
    // Batches from older libraries omit `type` on tracks.
    type = msg["event"].error() == simdjson::SUCCESS ? "track" : "";
  }
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kNames = {{
      {"track", ""}, {"identify", "$identify"}, {"page", "$page"},
      {"screen", "$screen"}, {"group", "$group"}, {"alias", "$alias"}}};
  bool known = false;
  for (const auto& [t, name] : kNames) {
    if (t == type) {
      known = true;
      e->type = std::string(t);
      e->event = std::string(name);
    }
  }
  if (!known) {
    *field = "type";
    return Status::InvalidArgument("type must be track, identify, page, screen, group or alias");
  }

  if (msg["messageId"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto id = IdString(v);
    if (!id) {
      *field = "messageId";
      return Status::InvalidArgument("messageId must be a string");
    }
    e->insert_id = std::move(*id);
  }
  if (e->insert_id.empty()) e->insert_id = RandomInsertId();

  for (auto [key, out] : {std::pair{"userId", &e->user_id}, {"anonymousId", &e->anonymous_id}}) {
    if (msg[key].get(v) == simdjson::SUCCESS && !v.is_null()) {
      auto id = IdString(v);
      if (!id) {
        *field = key;
        return Status::InvalidArgument(std::string(key) + " must be a string");
      }
      *out = std::move(*id);
    }
  }
  if (e->user_id.empty() && e->anonymous_id.empty()) {
    *field = "userId";
    return Status::InvalidArgument("userId or anonymousId is required");
  }

  e->time_ms = now_ms;
  for (const char* key : {"timestamp", "originalTimestamp"}) {
    if (msg[key].get(v) == simdjson::SUCCESS && !v.is_null()) {
      auto t = TimeFromElement(v, NumericTime::kMillis);
      if (!t) {
        *field = key;
        return Status::InvalidArgument(std::string(key) + " is not an ISO-8601 time");
      }
      e->time_ms = *t;
      break;
    }
  }

  // properties / traits must be objects (or null / absent).
  auto object_field = [&](const char* key, std::string* out) -> Status {
    element f;
    if (msg[key].get(f) != simdjson::SUCCESS) return Status::Ok();
    if (!ObjectOrEmpty(f, out).ok()) {
      *field = key;
      return Status::InvalidArgument(std::string(key) + " must be an object");
    }
    return Status::Ok();
  };
  auto string_field = [&](const char* key, bool required, std::string* out) -> Status {
    element f;
    if (msg[key].get(f) == simdjson::SUCCESS && !f.is_null()) {
      auto s = IdString(f);
      if (!s) {
        *field = key;
        return Status::InvalidArgument(std::string(key) + " must be a string");
      }
      *out = std::move(*s);
    }
    if (required && out->empty()) {
      *field = key;
      return Status::InvalidArgument(std::string(key) + " is required");
    }
    return Status::Ok();
  };

  if (type == "track") {
    SLUICE_RETURN_IF_ERROR(string_field("event", true, &e->event));
    SLUICE_RETURN_IF_ERROR(object_field("properties", &e->properties));
  } else if (type == "identify") {
    SLUICE_RETURN_IF_ERROR(object_field("traits", &e->set));
    if (e->set.empty()) {
      // analytics.js-era libraries sent identify traits only in context.traits.
      element ctx, traits;
      if (msg["context"].get(ctx) == simdjson::SUCCESS &&
          ctx["traits"].get(traits) == simdjson::SUCCESS) {
        if (!ObjectOrEmpty(traits, &e->set).ok()) {
          *field = "context.traits";
          return Status::InvalidArgument("context.traits must be an object");
        }
      }
    }
  } else if (type == "page" || type == "screen") {
    std::string props, name, category;
    SLUICE_RETURN_IF_ERROR(object_field("properties", &props));
    SLUICE_RETURN_IF_ERROR(string_field("name", false, &name));
    SLUICE_RETURN_IF_ERROR(string_field("category", false, &category));
    JsonObjectBuilder b;
    // The page name / category go in first so explicit properties win.
    if (!name.empty()) b.AddString("name", name);
    if (!category.empty()) b.AddString("category", category);
    if (!props.empty()) {
      element pe;
      object po;
      if (msg["properties"].get(pe) == simdjson::SUCCESS && pe.get_object().get(po) ==
          simdjson::SUCCESS) {
        b.AddAll(po);
      }
    }
    e->properties = b.Build();
  } else if (type == "group") {
    std::string group_id, traits;
    SLUICE_RETURN_IF_ERROR(string_field("groupId", true, &group_id));
    SLUICE_RETURN_IF_ERROR(object_field("traits", &traits));
    JsonObjectBuilder b;
    b.AddString("group_id", group_id);
    if (!traits.empty()) b.AddRaw("traits", traits);
    e->properties = b.Build();
  } else {  // alias
    std::string previous;
    SLUICE_RETURN_IF_ERROR(string_field("previousId", true, &previous));
    JsonObjectBuilder b;
    b.AddString("previous_id", previous);
    e->properties = b.Build();
    e->previous_id = std::move(previous);  // previousId -> userId: an identity link
  }
  e->received_ms = now_ms;
  return Status::Ok();
}

class SegmentFormat final : public Format {
 public:
  std::string_view name() const override { return "segment"; }

  bool Matches(std::string_view method, std::string_view path) const override {
    if (method != "POST") return false;
    path = TrimSlash(path);
    for (std::string_view p : kPaths) {
      if (p == path) return true;
    }
    return false;
  }

  DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const override {
    std::string storage;
    std::string_view body;
    Status st = MaybeGunzip(req.body, limits, &storage, &body);
    if (!st.ok()) return DecodeFailure(std::move(st));
    simdjson::dom::parser parser;
    element root;
    st = ParseJsonBounded(body, limits, &parser, &root);
    if (!st.ok()) return DecodeFailure(std::move(st));
    object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) {
      return DecodeFailure(Status::InvalidArgument("body must be a JSON object"));
    }

    DecodeResult result;
    element v;
    if (obj["writeKey"].get(v) == simdjson::SUCCESS && !v.is_null()) {
      std::string_view key;
      if (v.get_string().get(key) != simdjson::SUCCESS) {
        return DecodeFailure(Status::InvalidArgument("writeKey must be a string"), -1,
                             "writeKey");
      }
      result.write_key = std::string(key);
    }

    const std::string_view path = TrimSlash(req.path);
    if (path == "/v1/batch") {
      simdjson::dom::array batch;
      if (obj["batch"].get(v) != simdjson::SUCCESS || v.get_array().get(batch) !=
          simdjson::SUCCESS) {
        return DecodeFailure(Status::InvalidArgument("batch must be an array of messages"), -1,
                             "batch");
      }
      if (batch.size() > static_cast<size_t>(limits.max_events)) {
        return DecodeFailure(Status::TooLarge(std::to_string(batch.size()) +
                                              " messages in one batch; limit " +
                                              std::to_string(limits.max_events)));
      }
      result.events.reserve(batch.size());
      int32_t i = 0;
      for (element m : batch) {
        object msg;
        Event e;
        std::string field;
        if (m.get_object().get(msg) != simdjson::SUCCESS) {
          return DecodeFailure(Status::InvalidArgument("batch[" + std::to_string(i) +
                                                       "] is not an object"), i, "");
        }
        st = DecodeMessage(msg, "", req.now_ms, &e, &field);
        if (!st.ok()) {
          return DecodeFailure(
              Status(st.code(), "batch[" + std::to_string(i) + "]: " + st.message()), i, field);
        }
        result.events.push_back(std::move(e));
        ++i;
      }
    } else {
      Event e;
      std::string field;
      st = DecodeMessage(obj, path.substr(4), req.now_ms, &e, &field);  // "/v1/track" -> "track"
      if (!st.ok()) return DecodeFailure(std::move(st), 0, field);
      result.events.push_back(std::move(e));
    }
    return CheckEventLimits(std::move(result), limits);
  }

  IngestReply Reply(const IngestOutcome& outcome) const override {
    // Busy is 429 + Retry-After here: analytics-node waits it without spending
    // one of its 10 retries (up to 30 attempts); rudder-sdk-node waits at least
    // that long. Both give up sooner on 503.
    IngestReply reply = NativeReply(outcome, HttpDialect::kSegment);
    if (outcome.status.ok()) {
      reply.body = "{\"success\":true,\"accepted\":" + std::to_string(outcome.accepted) +
                   ",\"duplicates\":" + std::to_string(outcome.duplicates) + "}";
    }
    return reply;
  }
};

}  // namespace

FormatPtr NewSegmentFormat() { return std::make_unique<SegmentFormat>(); }

}  // namespace sluice
