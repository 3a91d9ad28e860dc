#include "ingest/formats/posthog.h"

#include <array>

#include "ingest/formats/common.h"

namespace sluice {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

constexpr std::array<std::string_view, 4> kPaths = {"/batch", "/capture", "/e", "/i/v0/e"};

std::string_view TrimSlash(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

bool LooksLikeJson(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' ||
                        s.front() == '\t')) {
    s.remove_prefix(1);
  }
  return !s.empty() && (s.front() == '{' || s.front() == '[');
}

// Reads the optional object member `key` of `obj` into the builder; InvalidArgument
// when present and neither an object nor null.
Status MergeObjectMember(object obj, std::string_view key, JsonObjectBuilder* b) {
  element v;
  if (obj[key].get(v) != simdjson::SUCCESS || v.is_null()) return Status::Ok();
  object o;
  if (v.get_object().get(o) != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string(key) + " must be an object");
  }
  b->AddAll(o);
  return Status::Ok();
}

std::string_view TypeForEvent(std::string_view name) {
  if (name == "$identify") return "identify";
  if (name == "$create_alias") return "alias";
  if (name == "$pageview") return "page";
  if (name == "$screen") return "screen";
  if (name == "$groupidentify") return "group";
  return "track";
}

// One PostHog event -> Event. `*key` collects the event's own token (if any).
Status DecodeEvent(object ev, int64_t now_ms, Event* e, std::string* key, std::string* field) {
  element v;
  std::string_view name;
  if (ev["event"].get(v) != simdjson::SUCCESS || v.get_string().get(name) != simdjson::SUCCESS ||
      name.empty()) {
    *field = "event";
    return Status::InvalidArgument("event must be a non-empty string");
  }
  e->event = std::string(name);
  e->type = std::string(TypeForEvent(name));

  object props;
  bool have_props = false;
  if (ev["properties"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.get_object().get(props) != simdjson::SUCCESS) {
      *field = "properties";
      return Status::InvalidArgument("properties must be an object");
    }
    have_props = true;
  }

  // distinct_id: top level (posthog-node, posthog-python), else in properties
  // (posthog-js).
  std::optional<std::string> distinct;
  if (ev["distinct_id"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    distinct = IdString(v);
  } else if (have_props && props["distinct_id"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    distinct = IdString(v);
  }
  if (!distinct || distinct->empty()) {
    *field = "distinct_id";
    return Status::InvalidArgument("distinct_id must be a non-empty string");
  }
  e->user_id = std::move(*distinct);
  // Identity links: $identify carries the anonymous id it identifies,
  // $create_alias the id it aliases into distinct_id's person.
  if (have_props && props["$anon_distinct_id"].get(v) == simdjson::SUCCESS) {
    if (auto anon = IdString(v)) e->anonymous_id = std::move(*anon);
  }
  if (e->type == "alias" && have_props && props["alias"].get(v) == simdjson::SUCCESS) {
    if (auto alias = IdString(v)) e->previous_id = std::move(*alias);
  }

  if (ev["uuid"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto id = IdString(v);
    if (!id) {
      *field = "uuid";
      return Status::InvalidArgument("uuid must be a string");
    }
    e->insert_id = std::move(*id);
  }
  if (e->insert_id.empty()) e->insert_id = RandomInsertId();

  e->time_ms = now_ms;
  if (ev["timestamp"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto t = TimeFromElement(v, NumericTime::kMillis);
    if (!t) {
      *field = "timestamp";
      return Status::InvalidArgument("timestamp is not an ISO-8601 time or epoch ms");
    }
    e->time_ms = *t;
  } else if (ev["offset"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    // Older posthog-js: milliseconds between the event and the send.
    int64_t offset = 0;
    if (v.get_int64().get(offset) != simdjson::SUCCESS || offset < 0 ||
        offset > 10LL * 365 * 86400 * 1000) {
      *field = "offset";
      return Status::InvalidArgument("offset must be a non-negative number of ms");
    }
    e->time_ms = now_ms - offset;
  } else if (have_props && props["$time"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto t = TimeFromElement(v, NumericTime::kSecondsOrMillis);
    if (!t) {
      *field = "properties.$time";
      return Status::InvalidArgument("properties.$time is not an epoch time");
    }
    e->time_ms = *t;
  }

  // $set / $set_once may sit at the top (posthog-node identify) or in
  // properties (posthog-js); both are merged, properties last.
  JsonObjectBuilder set, set_once;
  for (auto [k, b] : {std::pair{"$set", &set}, {"$set_once", &set_once}}) {
    Status st = MergeObjectMember(ev, k, b);
    if (st.ok() && have_props) st = MergeObjectMember(props, k, b);
    if (!st.ok()) {
      *field = k;
      return st;
    }
  }
  e->set = set.Build();
  e->set_once = set_once.Build();
  // $unset: a list of property names, at the top or in properties.
  auto read_unset = [&](object o) -> Status {
    if (o["$unset"].get(v) != simdjson::SUCCESS) return Status::Ok();
    std::string names;
    if (Status st = UnsetNames(v, &names); !st.ok()) {
      *field = "$unset";
      return Status::InvalidArgument("$unset " + st.message());
    }
    if (!names.empty()) e->unset = std::move(names);
    return Status::Ok();
  };
  SLUICE_RETURN_IF_ERROR(read_unset(ev));
  if (have_props) SLUICE_RETURN_IF_ERROR(read_unset(props));

  if (have_props) {
    JsonObjectBuilder p;
    p.AddAll(props, {"$set", "$set_once", "$unset", "token"});
    e->properties = p.Build();
  }

  for (const char* k : {"api_key", "token"}) {
    if (ev[k].get(v) == simdjson::SUCCESS) {
      std::string_view s;
      if (v.get_string().get(s) == simdjson::SUCCESS) *key = std::string(s);
      break;
    }
  }
  if (key->empty() && have_props && props["token"].get(v) == simdjson::SUCCESS) {
    std::string_view s;
    if (v.get_string().get(s) == simdjson::SUCCESS) *key = std::string(s);
  }
  e->received_ms = now_ms;
  return Status::Ok();
}

std::string ReplyBody(std::string_view type, std::string_view code, std::string_view detail,
                      std::string_view attr) {
  std::string body = "{\"type\":";
  AppendJsonString(type, &body);
  body += ",\"code\":";
  AppendJsonString(code, &body);
  body += ",\"detail\":";
  AppendJsonString(detail, &body);
  if (!attr.empty()) {
    body += ",\"attr\":";
    AppendJsonString(attr, &body);
  }
  body += "}";
  return body;
}

class PostHogFormat final : public Format {
 public:
  std::string_view name() const override { return "posthog"; }

  bool Matches(std::string_view method, std::string_view path) const override {
    if (method != "POST" && method != "GET") return false;
    // "/batch" without the slash is Amplitude's; its format hands PostHog
    // bodies over to DecodePostHog.
    if (path == "/batch") return false;
    path = TrimSlash(path);
    for (std::string_view p : kPaths) {
      if (p == path) return method == "POST" || p != "/batch";
    }
    return false;
  }

  DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const override {
    return DecodePostHog(req, limits);
  }

  IngestReply Reply(const IngestOutcome& outcome) const override { return PostHogReply(outcome); }
};

}  // namespace

DecodeResult DecodePostHog(const IngestRequest& req, const DecodeLimits& limits) {
  std::string storage, decoded;
  std::string_view text;
  std::string_view compression = FormValue(req.query, "compression").value_or("");
  if (req.method == "GET") {
    auto data = FormValue(req.query, "data");
    if (!data) return DecodeFailure(Status::InvalidArgument("GET needs a data= parameter"), -1,
                                    "data");
    decoded = *PercentDecode(*data, kFormValueDecoding);
    text = decoded;
  } else {
    Status st = MaybeGunzip(req.body, limits, &storage, &text);
    if (!st.ok()) return DecodeFailure(std::move(st));
    if (!LooksLikeJson(text)) {
      // posthog-js without compression support posts a form: data=<base64 JSON>.
      if (auto c = FormValue(text, "compression")) compression = *c;
      auto data = FormValue(text, "data");
      if (!data) {
        return DecodeFailure(Status::InvalidArgument("body is neither JSON nor data=<base64>"),
                             -1, "data");
      }
      decoded = *PercentDecode(*data, kFormValueDecoding);
      text = decoded;
    }
  }
  if (compression == "lz64" || compression == "lz-string") {
    return DecodeFailure(Status::InvalidArgument("lz64 compression is not supported; use gzip-js"),
                         -1, "compression");
  }
  std::string unbased, unzipped;
  if (!LooksLikeJson(text)) {
    auto raw = Base64Decode(text, kFormBase64);
    if (!raw) return DecodeFailure(Status::InvalidArgument("data is not base64"), -1, "data");
    unbased = std::move(*raw);
    Status st = MaybeGunzip(unbased, limits, &unzipped, &text);
    if (!st.ok()) return DecodeFailure(std::move(st));
    if (static_cast<int64_t>(text.size()) > limits.max_decompressed_bytes) {
      return DecodeFailure(Status::TooLarge("decoded data is over the size limit"));
    }
  }

  simdjson::dom::parser parser;
  element root;
  Status st = ParseJsonBounded(text, limits, &parser, &root);
  if (!st.ok()) return DecodeFailure(std::move(st));

  DecodeResult result;
  std::vector<object> events;
  object obj;
  simdjson::dom::array arr;
  bool is_batch = false;
  if (root.get_array().get(arr) == simdjson::SUCCESS) {
    is_batch = true;
  } else if (root.get_object().get(obj) == simdjson::SUCCESS) {
    element v;
    for (const char* k : {"api_key", "token"}) {
      std::string_view s;
      if (obj[k].get(v) == simdjson::SUCCESS && v.get_string().get(s) == simdjson::SUCCESS) {
        result.write_key = std::string(s);
        break;
      }
    }
    if (obj["batch"].get(v) == simdjson::SUCCESS) {
      if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return DecodeFailure(Status::InvalidArgument("batch must be an array"), -1, "batch");
      }
      is_batch = true;
    }
  } else {
    return DecodeFailure(Status::InvalidArgument("body must be a JSON object or array"));
  }

  if (is_batch) {
    if (arr.size() > static_cast<size_t>(limits.max_events)) {
      return DecodeFailure(Status::TooLarge(std::to_string(arr.size()) +
                                            " events in one request; limit " +
                                            std::to_string(limits.max_events)));
    }
    int32_t i = 0;
    for (element el : arr) {
      object ev;
      if (el.get_object().get(ev) != simdjson::SUCCESS) {
        return DecodeFailure(Status::InvalidArgument(FieldMessage("not an object", i, "")), i);
      }
      events.push_back(ev);
      ++i;
    }
  } else {
    events.push_back(obj);
  }

  result.events.reserve(events.size());
  std::string event_key;  // the one key every event-level token must agree on
  for (size_t i = 0; i < events.size(); ++i) {
    Event e;
    std::string key, field;
    st = DecodeEvent(events[i], req.now_ms, &e, &key, &field);
    const auto idx = static_cast<int32_t>(i);
    if (!st.ok()) {
      return DecodeFailure(Status(st.code(), FieldMessage(st.message(), idx, "")), idx, field);
    }
    if (!key.empty()) {
      if (!event_key.empty() && key != event_key) {
        return DecodeFailure(
            Status::InvalidArgument("events of one request carry different project tokens"),
            idx, "token");
      }
      event_key = key;
    }
    result.events.push_back(std::move(e));
  }
  if (result.write_key.empty()) {
    result.write_key = event_key;
  } else if (!event_key.empty() && event_key != result.write_key) {
    return DecodeFailure(
        Status::InvalidArgument("an event's token differs from the request's api_key"), -1,
        "token");
  }
  return CheckEventLimits(std::move(result), limits);
}

IngestReply PostHogReply(const IngestOutcome& outcome) {
  IngestReply reply;
  const Status& st = outcome.status;
  reply.status = HttpStatusFor(st.code(), HttpDialect::kPostHog);
  reply.retry_after_s = RetryAfterFor(outcome);
  switch (st.code()) {
    case Code::kOk:
      reply.body = "{\"status\":1}";
      return reply;
    case Code::kInvalidArgument:
      reply.body = ReplyBody("validation_error", "invalid_payload", st.message(), outcome.field);
      return reply;
    case Code::kUnauthorized:
      reply.body = ReplyBody("authentication_error", "invalid_api_key", st.message(), "");
      return reply;
    case Code::kTooLarge:
      // posthog-node halves its batch size and resends at once.
      reply.body = ReplyBody("validation_error", "payload_too_large", st.message(), "");
      return reply;
    case Code::kBusy:
      // 429 and 503 are both retried by posthog-node (3 more attempts, 3 s apart).
      reply.body = ReplyBody("server_error", "rate_limited", st.message(), "");
      return reply;
    case Code::kUnavailable:
      reply.body = ReplyBody("server_error", "unavailable", st.message(), "");
      return reply;
    default:
      reply.body = ReplyBody("server_error", "internal", st.message(), "");
      return reply;
  }
}

FormatPtr NewPostHogFormat() { return std::make_unique<PostHogFormat>(); }

}  // namespace sluice
