#include "ingest/formats/mixpanel.h"

#include "ingest/formats/common.h"

namespace sluice {
namespace {

using simdjson::dom::element;
using simdjson::dom::object;

enum class Endpoint { kNone, kTrack, kImport, kEngage, kGroups };

// reply_context, from Decode to Reply: "verbose" when the client asked for
// JSON answers (?verbose=1), else "".
constexpr std::string_view kVerbose = "verbose";

Endpoint EndpointFor(std::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/track") return Endpoint::kTrack;
  if (path == "/import") return Endpoint::kImport;
  if (path == "/engage") return Endpoint::kEngage;
  if (path == "/groups") return Endpoint::kGroups;
  return Endpoint::kNone;
}

bool LooksLikeJson(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' ||
                        s.front() == '\t')) {
    s.remove_prefix(1);
  }
  return !s.empty() && (s.front() == '{' || s.front() == '[');
}

bool GetString(object o, std::string_view key, std::string* out) {
  element v;
  if (o[key].get(v) != simdjson::SUCCESS) return false;
  std::string_view s;
  if (v.get_string().get(s) != simdjson::SUCCESS) return false;
  *out = std::string(s);
  return true;
}

std::string_view TypeForEvent(std::string_view name) {
  if (name == "$create_alias") return "alias";
  if (name == "$identify") return "identify";
  if (name == "$mp_web_page_view") return "page";
  return "track";
}

// /track and /import: {"event":..,"properties":{"distinct_id","time","$insert_id","token",..}}
Status DecodeTrack(object ev, int64_t now_ms, Event* e, std::string* token, std::string* field) {
  element v;
  std::string_view name;
  if (ev["event"].get(v) != simdjson::SUCCESS || v.get_string().get(name) != simdjson::SUCCESS ||
      name.empty()) {
    *field = "event";
    return Status::InvalidArgument("event must be a non-empty string");
  }
  e->event = std::string(name);
  e->type = std::string(TypeForEvent(name));
  e->time_ms = now_ms;
  object props;
  if (ev["properties"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    if (v.get_object().get(props) != simdjson::SUCCESS) {
      *field = "properties";
      return Status::InvalidArgument("properties must be an object");
    }
  } else {
    *field = "properties.distinct_id";
    return Status::InvalidArgument("properties.distinct_id is required");
  }

  std::string distinct, device, user;
  if (props["distinct_id"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto id = IdString(v);
    if (!id) {
      *field = "properties.distinct_id";
      return Status::InvalidArgument("properties.distinct_id must be a string");
    }
    distinct = std::move(*id);
  }
  if (props["$device_id"].get(v) == simdjson::SUCCESS) device = IdString(v).value_or("");
  if (props["$user_id"].get(v) == simdjson::SUCCESS) user = IdString(v).value_or("");
  // Simplified ID merge: "$device:<id>" is an anonymous distinct_id.
  constexpr std::string_view kDevicePrefix = "$device:";
  if (distinct.starts_with(kDevicePrefix)) {
    if (device.empty()) device = distinct.substr(kDevicePrefix.size());
  } else if (user.empty()) {
    user = distinct;
  }
  if (e->type == "identify") {
    // Original ID merge: {"$anon_id": anonymous, "$identified_id": the user}.
    std::string anon, identified;
    if (props["$anon_id"].get(v) == simdjson::SUCCESS) anon = IdString(v).value_or("");
    if (props["$identified_id"].get(v) == simdjson::SUCCESS) identified = IdString(v).value_or("");
    if (!identified.empty()) user = std::move(identified);
    if (!anon.empty()) device = std::move(anon);
  } else if (e->type == "alias") {
    // mixpanel.alias(alias, distinct_id): the new id `alias` and the id it
    // names, distinct_id: an identity link distinct_id -> alias.
    std::string alias;
    if (props["alias"].get(v) == simdjson::SUCCESS) alias = IdString(v).value_or("");
    if (alias.empty()) {
      *field = "properties.alias";
      return Status::InvalidArgument("$create_alias needs properties.alias");
    }
    e->previous_id = distinct;
    user = std::move(alias);
  }
  e->user_id = std::move(user);
  e->anonymous_id = std::move(device);
  if (e->user_id.empty() && e->anonymous_id.empty()) {
    *field = "properties.distinct_id";
    return Status::InvalidArgument("properties.distinct_id is required");
  }

  if (props["time"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto t = TimeFromElement(v, NumericTime::kSecondsOrMillis);
    if (!t) {
      *field = "properties.time";
      return Status::InvalidArgument("properties.time must be epoch seconds or milliseconds");
    }
    e->time_ms = *t;
  }
  if (props["$insert_id"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto id = IdString(v);
    if (!id) {
      *field = "properties.$insert_id";
      return Status::InvalidArgument("properties.$insert_id must be a string");
    }
    e->insert_id = std::move(*id);
  }
  GetString(props, "token", token);
  JsonObjectBuilder b;
  b.AddAll(props, {"token"});
  e->properties = b.Build();
  return Status::Ok();
}

// $set, $set_once, $add and $unset go to the profile; the other operations
// ($append, $union, $remove, $delete) go to properties (archived, not merged
// into the profile).
Status DecodeProfileOps(object op, Event* e, std::string* field,
                        std::initializer_list<std::string_view> skip) {
  element v;
  for (auto [key, out] : {std::pair{"$set", &e->set}, {"$set_once", &e->set_once}}) {
    if (op[key].get(v) == simdjson::SUCCESS && !ObjectOrEmpty(v, out).ok()) {
      *field = key;
      return Status::InvalidArgument(std::string(key) + " must be an object");
    }
  }
  if (op["$add"].get(v) == simdjson::SUCCESS) {
    if (Status st = AddAmounts(v, &e->add); !st.ok()) {
      *field = "$add";
      return Status::InvalidArgument("$add " + st.message());
    }
  }
  if (op["$unset"].get(v) == simdjson::SUCCESS) {
    if (Status st = UnsetNames(v, &e->unset); !st.ok()) {
      *field = "$unset";
      return Status::InvalidArgument("$unset " + st.message());
    }
  }
  JsonObjectBuilder b;
  for (auto f : op) {
    bool skipped = f.key == "$set" || f.key == "$set_once" || f.key == "$add" ||
                   f.key == "$unset" || f.key == "$token" || f.key == "$time";
    for (std::string_view s : skip) skipped = skipped || f.key == s;
    if (!skipped) b.AddRaw(f.key, simdjson::minify(f.value));
  }
  e->properties = b.Build();
  return Status::Ok();
}

Status DecodeTime(object op, Event* e, std::string* field) {
  element v;
  if (op["$time"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    auto t = TimeFromElement(v, NumericTime::kSecondsOrMillis);
    if (!t) {
      *field = "$time";
      return Status::InvalidArgument("$time must be epoch seconds or milliseconds");
    }
    e->time_ms = *t;
  }
  return Status::Ok();
}

// /engage: {"$token","$distinct_id","$set":{..},"$set_once":{..},"$add":{..},"$time",..}
Status DecodeEngage(object op, int64_t now_ms, Event* e, std::string* token, std::string* field) {
  element v;
  e->event = "$identify";
  e->type = "identify";
  e->time_ms = now_ms;
  if (op["$distinct_id"].get(v) == simdjson::SUCCESS) e->user_id = IdString(v).value_or("");
  if (e->user_id.empty()) {
    *field = "$distinct_id";
    return Status::InvalidArgument("$distinct_id must be a non-empty string");
  }
  GetString(op, "$token", token);
  SLUICE_RETURN_IF_ERROR(DecodeTime(op, e, field));
  return DecodeProfileOps(op, e, field, {"$distinct_id"});
}

// /groups: {"$token","$group_key","$group_id","$set":{..},..} -> the pseudo user
// "$<group_key>_<group_id>" (PostHog's convention for group profiles).
Status DecodeGroups(object op, int64_t now_ms, Event* e, std::string* token, std::string* field) {
  element v;
  e->event = "$groupidentify";
  e->type = "group";
  e->time_ms = now_ms;
  std::string key, id;
  if (op["$group_key"].get(v) == simdjson::SUCCESS) key = IdString(v).value_or("");
  if (op["$group_id"].get(v) == simdjson::SUCCESS) id = IdString(v).value_or("");
  if (key.empty() || id.empty()) {
    *field = key.empty() ? "$group_key" : "$group_id";
    return Status::InvalidArgument("$group_key and $group_id are required");
  }
  e->user_id = "$" + key + "_" + id;
  GetString(op, "$token", token);
  SLUICE_RETURN_IF_ERROR(DecodeTime(op, e, field));
  return DecodeProfileOps(op, e, field, {});
}

class MixpanelFormat final : public Format {
 public:
  std::string_view name() const override { return "mixpanel"; }

  bool Matches(std::string_view method, std::string_view path) const override {
    return (method == "GET" || method == "POST") && EndpointFor(path) != Endpoint::kNone;
  }

  DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const override {
    DecodeResult r = DecodeInner(req, limits);
    const bool verbose = FormValue(req.query, "verbose").value_or("") == "1" ||
                         (req.method == "POST" && !LooksLikeJson(req.body) &&
                          FormValue(req.body, "verbose").value_or("") == "1");
    if (verbose) r.reply_context = kVerbose;
    return r;
  }

  IngestReply Reply(const IngestOutcome& outcome) const override {
    IngestReply reply;
    const Status& st = outcome.status;
    const bool verbose = outcome.reply_context == kVerbose;
    reply.status = HttpStatusFor(st.code(), HttpDialect::kMixpanel);
    reply.retry_after_s = RetryAfterFor(outcome);
    if (verbose) {
      reply.content_type = "application/json";
      if (st.ok()) {
        reply.body = "{\"status\":1,\"error\":null}";
      } else {
        reply.body = "{\"status\":0,\"error\":";
        AppendJsonString(st.message(), &reply.body);
        reply.body += "}";
      }
    } else {
      reply.content_type = "text/plain";
      reply.body = st.ok() ? "1" : "0";
    }
    return reply;
  }

 private:
  static DecodeResult DecodeInner(const IngestRequest& req, const DecodeLimits& limits) {
    const Endpoint endpoint = EndpointFor(req.path);
    std::string storage, decoded, unbased, unzipped;
    std::string_view text;
    std::optional<std::string_view> data;
    if (req.method == "POST") {
      Status st = MaybeGunzip(req.body, limits, &storage, &text);
      if (!st.ok()) return DecodeFailure(std::move(st));
      if (!LooksLikeJson(text)) {
        data = FormValue(text, "data");
        if (!data) data = FormValue(req.query, "data");
      }
    } else {
      data = FormValue(req.query, "data");
    }
    if (data) {
      // Never '+' -> ' ': the SDK's form body carries raw base64.
      decoded = *PercentDecode(*data, kFormValueDecoding);
      text = decoded;
    } else if (!LooksLikeJson(text)) {
      return DecodeFailure(Status::InvalidArgument("missing data=<base64 JSON>"), -1, "data");
    }
    if (!LooksLikeJson(text)) {
      auto raw = Base64Decode(text, kFormBase64);
      if (!raw) return DecodeFailure(Status::InvalidArgument("data is not base64"), -1, "data");
      unbased = std::move(*raw);
      Status st = MaybeGunzip(unbased, limits, &unzipped, &text);
      if (!st.ok()) return DecodeFailure(std::move(st));
    }

    simdjson::dom::parser parser;
    element root;
    Status st = ParseJsonBounded(text, limits, &parser, &root);
    if (!st.ok()) return DecodeFailure(std::move(st));
    std::vector<object> items;
    simdjson::dom::array arr;
    object obj;
    if (root.get_array().get(arr) == simdjson::SUCCESS) {
      if (arr.size() > static_cast<size_t>(limits.max_events)) {
        return DecodeFailure(Status::TooLarge(std::to_string(arr.size()) +
                                              " events in one request; limit " +
                                              std::to_string(limits.max_events)));
      }
      int32_t i = 0;
      for (element el : arr) {
        if (el.get_object().get(obj) != simdjson::SUCCESS) {
          return DecodeFailure(Status::InvalidArgument(FieldMessage("not an object", i, "")), i);
        }
        items.push_back(obj);
        ++i;
      }
    } else if (root.get_object().get(obj) == simdjson::SUCCESS) {
      items.push_back(obj);
    } else {
      return DecodeFailure(Status::InvalidArgument("data must be a JSON object or array"), -1,
                           "data");
    }

    DecodeResult result;
    result.events.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      Event e;
      std::string token, field;
      switch (endpoint) {
        case Endpoint::kEngage: st = DecodeEngage(items[i], req.now_ms, &e, &token, &field); break;
        case Endpoint::kGroups: st = DecodeGroups(items[i], req.now_ms, &e, &token, &field); break;
        default: st = DecodeTrack(items[i], req.now_ms, &e, &token, &field);
      }
      const auto idx = static_cast<int32_t>(i);
      if (!st.ok()) {
        return DecodeFailure(Status(st.code(), FieldMessage(st.message(), idx, "")), idx, field);
      }
      if (!token.empty()) {
        if (!result.write_key.empty() && token != result.write_key) {
          return DecodeFailure(
              Status::InvalidArgument("events of one request carry different project tokens"),
              idx, "token");
        }
        result.write_key = token;
      }
      // Mixpanel SDKs never retry, so a random id cannot turn a retry into a duplicate.
      if (e.insert_id.empty()) e.insert_id = RandomInsertId();
      e.received_ms = req.now_ms;
      result.events.push_back(std::move(e));
    }
    if (result.write_key.empty() && endpoint == Endpoint::kImport) {
      if (auto key = FormValue(req.query, "api_key")) {
        result.write_key = *PercentDecode(*key, kFormValueDecoding);
      }
    }
    return CheckEventLimits(std::move(result), limits);
  }
};

}  // namespace

FormatPtr NewMixpanelFormat() { return std::make_unique<MixpanelFormat>(); }

}  // namespace sluice
