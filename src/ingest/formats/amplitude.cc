#include "ingest/formats/amplitude.h"

#include <map>

#include "ingest/formats/common.h"
#include "ingest/formats/posthog.h"

namespace sluice {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

// reply_context, from Decode to Reply:
//   "posthog"                 the body was PostHog's: reply as PostHog
//   "K" | "N" + fragment      api_key present (K) or not (N), then JSON members
//                             (",\"events_with_invalid_fields\":{..}") for a 400
constexpr std::string_view kPostHogContext = "posthog";

// "/batch/" (with the slash) is PostHog's route.
bool IsPath(std::string_view path) {
  return path == "/2/httpapi" || path == "/2/httpapi/" || path == "/batch";
}

// Per-field index lists of invalid events, for Amplitude's 400 body.
struct EventErrors {
  std::map<std::string, std::vector<int32_t>> missing;  // field -> indices
  std::map<std::string, std::vector<int32_t>> invalid;
  Status first;
  int32_t first_index = -1;
  std::string first_field;

  void Add(bool is_missing, int32_t index, const std::string& field, std::string message) {
    (is_missing ? missing : invalid)[field].push_back(index);
    if (first.ok()) {
      first = Status::InvalidArgument(FieldMessage(message, index, ""));
      first_index = index;
      first_field = field;
    }
  }

  static void AppendMap(const char* name, const std::map<std::string, std::vector<int32_t>>& m,
                        std::string* out) {
    if (m.empty()) return;
    *out += ",\"";
    *out += name;
    *out += "\":{";
    bool first_field = true;
    for (const auto& [field, indices] : m) {
      if (!first_field) out->push_back(',');
      first_field = false;
      AppendJsonString(field, out);
      out->append(":[");
      for (size_t i = 0; i < indices.size(); ++i) {
        if (i > 0) out->push_back(',');
        out->append(std::to_string(indices[i]));
      }
      out->push_back(']');
    }
    out->push_back('}');
  }

  std::string Fragment() const {
    std::string out;
    AppendMap("events_with_missing_fields", missing, &out);
    AppendMap("events_with_invalid_fields", invalid, &out);
    return out;
  }
};

// Decodes event `index`; records problems in *errors (and returns false).
bool DecodeEvent(object ev, int32_t index, int64_t now_ms, Event* e, EventErrors* errors) {
  element v;
  bool ok = true;
  std::string_view name;
  if (ev["event_type"].get(v) != simdjson::SUCCESS || v.is_null()) {
    errors->Add(true, index, "event_type", "event_type is missing");
    ok = false;
  } else if (v.get_string().get(name) != simdjson::SUCCESS || name.empty()) {
    errors->Add(false, index, "event_type", "event_type must be a non-empty string");
    ok = false;
  } else {
    e->event = std::string(name);
    if (name == "$identify") e->type = "identify";
    if (name == "$groupidentify") e->type = "group";
  }

  for (auto [key, out] : {std::pair{"user_id", &e->user_id}, {"device_id", &e->anonymous_id}}) {
    if (ev[key].get(v) == simdjson::SUCCESS && !v.is_null()) {
      auto id = IdString(v);
      if (!id) {
        errors->Add(false, index, key, std::string(key) + " must be a string");
        ok = false;
      } else {
        *out = std::move(*id);
      }
    }
  }
  if (ok && e->user_id.empty() && e->anonymous_id.empty()) {
    errors->Add(true, index, "user_id", "user_id or device_id is required");
    ok = false;
  }

  if (ev["insert_id"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto id = IdString(v);
    if (!id) {
      errors->Add(false, index, "insert_id", "insert_id must be a string");
      ok = false;
    } else {
      e->insert_id = std::move(*id);
    }
  }
  if (e->insert_id.empty()) e->insert_id = RandomInsertId();

  e->time_ms = now_ms;
  if (ev["time"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto t = TimeFromElement(v, NumericTime::kMillis);
    if (!t) {
      errors->Add(false, index, "time", "time must be epoch milliseconds");
      ok = false;
    } else {
      e->time_ms = *t;
    }
  }

  object props;
  bool have_props = false;
  if (ev["event_properties"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.get_object().get(props) != simdjson::SUCCESS) {
      errors->Add(false, index, "event_properties", "event_properties must be an object");
      ok = false;
    } else {
      have_props = true;
    }
  }
  JsonObjectBuilder p;
  if (have_props) p.AddAll(props);
  // Group membership and group properties ride along so they are archived.
  for (auto [key, as] : {std::pair{"groups", "$groups"},
                         {"group_properties", "$group_properties"}}) {
    object o;
    if (ev[key].get(v) == simdjson::SUCCESS && v.get_object().get(o) == simdjson::SUCCESS &&
        o.size() > 0) {
      p.AddRaw(as, simdjson::minify(v));
    }
  }
  e->properties = p.Build();

  // user_properties: either operations ($set, $setOnce, $add, ...) or plain
  // keys, which Amplitude treats as $set.
  if (ev["user_properties"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    object up;
    if (v.get_object().get(up) != simdjson::SUCCESS) {
      errors->Add(false, index, "user_properties", "user_properties must be an object");
      return false;
    }
    JsonObjectBuilder set, set_once;
    for (auto field : up) {
      const std::string_view k = field.key;
      if (k.empty() || k.front() != '$') {
        set.AddRaw(k, simdjson::minify(field.value));
        continue;
      }
      if (k == "$add" || k == "$unset") {
        Status st = k == "$add" ? AddAmounts(field.value, &e->add) : UnsetNames(field.value, &e->unset);
        if (!st.ok()) {
          errors->Add(false, index, "user_properties",
                      "user_properties." + std::string(k) + ": " + st.message());
          return false;
        }
        continue;
      }
      JsonObjectBuilder* target = k == "$set" ? &set : k == "$setOnce" ? &set_once : nullptr;
      if (target == nullptr) continue;  // $append, $prepend, $remove, ...: not supported
      object o;
      if (field.value.get_object().get(o) != simdjson::SUCCESS) {
        errors->Add(false, index, "user_properties",
                    "user_properties." + std::string(k) + " must be an object");
        return false;
      }
      target->AddAll(o);
    }
    e->set = set.Build();
    e->set_once = set_once.Build();
  }
  e->received_ms = now_ms;
  return ok;
}

std::string CodeBody(int code, std::string_view error, std::string_view extra) {
  std::string body = "{\"code\":" + std::to_string(code) + ",\"error\":";
  AppendJsonString(error, &body);
  body += extra;
  body += "}";
  return body;
}

class AmplitudeFormat final : public Format {
 public:
  std::string_view name() const override { return "amplitude"; }

  bool Matches(std::string_view method, std::string_view path) const override {
    return method == "POST" && IsPath(path);
  }

  DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const override {
    std::string storage;
    std::string_view body;
    Status st = MaybeGunzip(req.body, limits, &storage, &body);
    if (!st.ok()) return DecodeFailure(std::move(st));
    simdjson::dom::parser parser;
    element root;
    st = ParseJsonBounded(body, limits, &parser, &root);
    if (!st.ok()) return WithContext(DecodeFailure(std::move(st)), "N");
    object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) {
      return WithContext(DecodeFailure(Status::InvalidArgument("body must be a JSON object")), "N");
    }
    element v;
    if (obj["events"].error() != simdjson::SUCCESS && obj["batch"].error() == simdjson::SUCCESS) {
      // posthog-node (or a user) pointed at "/batch" without the slash.
      DecodeResult r = DecodePostHog(req, limits);
      r.reply_context = kPostHogContext;
      return r;
    }

    DecodeResult result;
    std::string_view key;
    if (obj["api_key"].get(v) == simdjson::SUCCESS && v.get_string().get(key) ==
        simdjson::SUCCESS) {
      result.write_key = std::string(key);
    }
    const std::string context = result.write_key.empty() ? "N" : "K";
    simdjson::dom::array events;
    if (obj["events"].get(v) != simdjson::SUCCESS || v.get_array().get(events) !=
        simdjson::SUCCESS) {
      return WithContext(DecodeFailure(Status::InvalidArgument("events must be an array"), -1,
                                       "events"),
                         context + ",\"missing_field\":\"events\"");
    }
    if (events.size() > static_cast<size_t>(limits.max_events)) {
      // 413 makes analytics-node halve its batch size.
      return WithContext(DecodeFailure(Status::TooLarge(std::to_string(events.size()) +
                                                        " events in one request; limit " +
                                                        std::to_string(limits.max_events))),
                         context);
    }
    EventErrors errors;
    int32_t i = 0;
    result.events.reserve(events.size());
    for (element el : events) {
      Event e;
      object ev;
      if (el.get_object().get(ev) != simdjson::SUCCESS) {
        errors.Add(false, i, "event", "not an object");
      } else if (DecodeEvent(ev, i, req.now_ms, &e, &errors)) {
        result.events.push_back(std::move(e));
      }
      ++i;
    }
    if (!errors.first.ok()) {
      // Every bad index is listed: the SDK drops exactly those and resends the rest.
      return WithContext(DecodeFailure(errors.first, errors.first_index, errors.first_field),
                         context + errors.Fragment());
    }
    result.reply_context = context;
    return CheckEventLimits(std::move(result), limits);
  }

  IngestReply Reply(const IngestOutcome& outcome) const override {
    if (outcome.reply_context == kPostHogContext) return PostHogReply(outcome);
    // The body's "code" repeats the status: the SDK reads the body, not the
    // HTTP status line.
    IngestReply reply;
    const Status& st = outcome.status;
    reply.status = HttpStatusFor(st.code(), HttpDialect::kAmplitude);
    reply.retry_after_s = RetryAfterFor(outcome);
    const std::string_view ctx = outcome.reply_context;
    const std::string_view extra = ctx.size() > 1 ? ctx.substr(1) : std::string_view();
    switch (st.code()) {
      case Code::kOk:
        reply.body = "{\"code\":" + std::to_string(reply.status) +
                     ",\"events_ingested\":" + std::to_string(outcome.events) +
                     ",\"payload_size_bytes\":" + std::to_string(outcome.body_bytes) +
                     ",\"server_upload_time\":" + std::to_string(outcome.now_ms) + "}";
        return reply;
      case Code::kInvalidArgument: {
        std::string fields(extra);
        if (fields.empty()) {
          // A request-level problem (bad JSON, corrupt gzip): `missing_field`
          // is what makes the SDK drop instead of retrying 12 times.
          fields = ",\"missing_field\":";
          AppendJsonString(outcome.field.empty() ? "events" : outcome.field, &fields);
        }
        reply.body = CodeBody(reply.status, st.message(), fields);
        return reply;
      }
      case Code::kUnauthorized:
        // The SDK drops a batch whose error starts with "Invalid API key".
        if (ctx.empty() || ctx.front() != 'K') {
          reply.body =
              CodeBody(reply.status, "Invalid API key: missing", ",\"missing_field\":\"api_key\"");
        } else {
          reply.body = CodeBody(reply.status, "Invalid API key: not accepted by this server", "");
        }
        return reply;
      case Code::kTooLarge:
        // 413 makes the SDK halve its batch size and resend.
        reply.body = CodeBody(reply.status, st.message(), "");
        return reply;
      case Code::kBusy: {
        // throttled_events makes the SDK wait 30 s per attempt (12 attempts)
        // instead of its short 5xx backoff.
        std::string throttled = ",\"eps_threshold\":0,\"throttled_events\":[";
        for (int64_t i = 0; i < outcome.events; ++i) {
          if (i > 0) throttled.push_back(',');
          throttled += std::to_string(i);
        }
        throttled += "]";
        reply.body = CodeBody(reply.status, st.message(), throttled);
        return reply;
      }
      default:
        reply.body = CodeBody(reply.status, st.message(), "");
        return reply;
    }
  }

 private:
  static DecodeResult WithContext(DecodeResult r, std::string context) {
    r.reply_context = std::move(context);
    return r;
  }
};

}  // namespace

FormatPtr NewAmplitudeFormat() { return std::make_unique<AmplitudeFormat>(); }

}  // namespace sluice
