#include "ingest/formats/common.h"

#include <cmath>
#include <cstdio>

#include "common/time.h"
#include "ingest/formats/gzip.h"
#include "profile/profile.h"

namespace sluice {
namespace {

// Epoch ms of 0001-01-01 and 9999-12-31T23:59:59.999: anything outside is a
// unit mistake or garbage, and FormatIso8601Ms could not print it back.
constexpr int64_t kMinTimeMs = -62135596800000;
constexpr int64_t kMaxTimeMs = 253402300799999;

bool TimeInRange(int64_t ms) { return ms >= kMinTimeMs && ms <= kMaxTimeMs; }

// Walks `e` recursively; depth 1 is the root value. simdjson has already
// bounded the nesting (its own max depth), so the recursion is bounded too.
Status CheckElement(simdjson::dom::element e, int32_t depth, const DecodeLimits& limits) {
  if (depth > limits.max_json_depth) {
    return Status::InvalidArgument("JSON nesting deeper than " +
                                   std::to_string(limits.max_json_depth));
  }
  switch (e.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s;
      s = e.get_string().value_unsafe();
      if (s.size() > static_cast<size_t>(limits.max_string_bytes)) {
        return Status::InvalidArgument("a string is longer than " +
                                       std::to_string(limits.max_string_bytes) + " bytes");
      }
      return Status::Ok();
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array arr;
      arr = e.get_array().value_unsafe();
      for (simdjson::dom::element child : arr) {
        SLUICE_RETURN_IF_ERROR(CheckElement(child, depth + 1, limits));
      }
      return Status::Ok();
    }
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object obj;
      obj = e.get_object().value_unsafe();
      for (auto field : obj) {
        if (field.key.size() > static_cast<size_t>(limits.max_string_bytes)) {
          return Status::InvalidArgument("a key is longer than " +
                                         std::to_string(limits.max_string_bytes) + " bytes");
        }
        SLUICE_RETURN_IF_ERROR(CheckElement(field.value, depth + 1, limits));
      }
      return Status::Ok();
    }
    default:
      return Status::Ok();
  }
}

std::optional<int64_t> SecondsOrMillis(double v) {
  if (!std::isfinite(v)) return std::nullopt;
  const double ms = std::fabs(v) < 1e11 ? v * 1000.0 : v;
  if (ms < static_cast<double>(kMinTimeMs) || ms > static_cast<double>(kMaxTimeMs)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(std::llround(ms));
}

}  // namespace

DecodeResult DecodeFailure(Status status, int32_t index, std::string field) {
  DecodeResult r;
  r.status = std::move(status);
  r.index = index;
  r.field = std::move(field);
  return r;
}

Status MaybeGunzip(std::string_view body, const DecodeLimits& limits, std::string* storage,
                   std::string_view* out) {
  if (body.size() >= 2 && static_cast<unsigned char>(body[0]) == 0x1f &&
      static_cast<unsigned char>(body[1]) == 0x8b) {
    auto r = Decompress(body, Compression::kGzip, limits.max_decompressed_bytes);
    if (!r.ok()) return r.status();
    *storage = std::move(r).value();
    *out = *storage;
    return Status::Ok();
  }
  *out = body;
  return Status::Ok();
}

Status ParseJsonBounded(std::string_view text, const DecodeLimits& limits,
                        simdjson::dom::parser* parser, simdjson::dom::element* root) {
  const auto err = parser->parse(text.data(), text.size()).get(*root);
  if (err == simdjson::DEPTH_ERROR) {
    return Status::InvalidArgument("JSON nesting deeper than " +
                                   std::to_string(limits.max_json_depth));
  }
  if (err != simdjson::SUCCESS) {
    return Status::InvalidArgument(std::string("body is not valid JSON: ") +
                                   simdjson::error_message(err));
  }
  return CheckElement(*root, 1, limits);
}

std::optional<std::string> IdString(simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s;
      s = e.get_string().value_unsafe();
      return std::string(s);
    }
    case simdjson::dom::element_type::INT64: {
      int64_t v = 0;
      v = e.get_int64().value_unsafe();
      return std::to_string(v);
    }
    case simdjson::dom::element_type::UINT64: {
      uint64_t v = 0;
      v = e.get_uint64().value_unsafe();
      return std::to_string(v);
    }
    default:
      return std::nullopt;
  }
}

std::optional<int64_t> TimeFromElement(simdjson::dom::element e, NumericTime numeric) {
  std::optional<int64_t> ms;
  switch (e.type()) {
    case simdjson::dom::element_type::STRING: {
      std::string_view s;
      s = e.get_string().value_unsafe();
      bool digits = !s.empty();
      bool dot = false;
      for (char c : s) {
        if (c == '.' && !dot) {
          dot = true;
        } else if (c < '0' || c > '9') {
          digits = false;
          break;
        }
      }
      if (digits && s.size() <= 20) {
        // A number sent as a string ("1704067200000", "1704067200.5").
        const double v = std::strtod(std::string(s).c_str(), nullptr);
        if (numeric == NumericTime::kSecondsOrMillis) return SecondsOrMillis(v);
        if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(kMaxTimeMs)) {
          return std::nullopt;
        }
        ms = static_cast<int64_t>(std::llround(v));
      } else {
        ms = ParseIso8601Ms(s);
      }
      break;
    }
    case simdjson::dom::element_type::INT64: {
      int64_t v = 0;
      v = e.get_int64().value_unsafe();
      if (numeric == NumericTime::kSecondsOrMillis) return SecondsOrMillis(static_cast<double>(v));
      ms = v;
      break;
    }
    case simdjson::dom::element_type::UINT64:
      return std::nullopt;  // > INT64_MAX: no plausible time
    case simdjson::dom::element_type::DOUBLE: {
      double v = 0;
      v = e.get_double().value_unsafe();
      if (numeric == NumericTime::kSecondsOrMillis) return SecondsOrMillis(v);
      if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(kMaxTimeMs)) {
        return std::nullopt;
      }
      ms = static_cast<int64_t>(std::llround(v));
      break;
    }
    default:
      return std::nullopt;
  }
  if (!ms || !TimeInRange(*ms)) return std::nullopt;
  return ms;
}

Status ObjectOrEmpty(simdjson::dom::element e, std::string* out) {
  out->clear();
  if (e.is_null()) return Status::Ok();
  simdjson::dom::object obj;
  if (e.get_object().get(obj) != simdjson::SUCCESS) {
    return Status::InvalidArgument("not an object");
  }
  if (obj.size() == 0) return Status::Ok();
  *out = simdjson::minify(e);
  return Status::Ok();
}

Status UnsetNames(simdjson::dom::element e, std::string* out) {
  out->clear();
  if (e.is_null()) return Status::Ok();
  std::vector<std::string_view> names;
  simdjson::dom::array arr;
  simdjson::dom::object obj;
  if (e.get_array().get(arr) == simdjson::SUCCESS) {
    for (auto v : arr) {
      std::string_view name;
      if (v.get_string().get(name) != simdjson::SUCCESS) {
        return Status::InvalidArgument("must list property names (strings)");
      }
      names.push_back(name);
    }
  } else if (e.get_object().get(obj) == simdjson::SUCCESS) {
    for (auto f : obj) names.push_back(f.key);
  } else {
    return Status::InvalidArgument("must be an array of property names");
  }
  if (names.empty()) return Status::Ok();
  out->push_back('[');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(names[i], out);
  }
  out->push_back(']');
  return Status::Ok();
}

Status AddAmounts(simdjson::dom::element e, std::string* out) {
  out->clear();
  if (e.is_null()) return Status::Ok();
  simdjson::dom::object obj;
  if (e.get_object().get(obj) != simdjson::SUCCESS) {
    return Status::InvalidArgument("must be an object of numbers");
  }
  for (auto f : obj) {
    if (!f.value.is_number() || !Decimal::Parse(simdjson::minify(f.value))) {
      return Status::InvalidArgument("increment of \"" + std::string(f.key) +
                                     "\" must be a number within +/-1e27");
    }
  }
  if (obj.size() > 0) *out = simdjson::minify(e);
  return Status::Ok();
}

void JsonObjectBuilder::AddAll(simdjson::dom::object obj,
                               std::initializer_list<std::string_view> skip) {
  for (auto field : obj) {
    bool skipped = false;
    for (std::string_view s : skip) {
      if (field.key == s) {
        skipped = true;
        break;
      }
    }
    if (!skipped) AddRaw(field.key, simdjson::minify(field.value));
  }
}

void JsonObjectBuilder::AddRaw(std::string_view key, std::string raw_json) {
  // Objects are small (tens of keys): a linear scan beats a map here.
  for (auto& [k, v] : members_) {
    if (k == key) {
      v = std::move(raw_json);
      return;
    }
  }
  members_.emplace_back(std::string(key), std::move(raw_json));
}

void JsonObjectBuilder::AddString(std::string_view key, std::string_view value) {
  std::string raw;
  AppendJsonString(value, &raw);
  AddRaw(key, std::move(raw));
}

std::string JsonObjectBuilder::Build() const {
  if (members_.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < members_.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(members_[i].first, &out);
    out.push_back(':');
    out.append(members_[i].second);
  }
  out.push_back('}');
  return out;
}

std::optional<std::string_view> FormValue(std::string_view form, std::string_view key) {
  while (!form.empty()) {
    const size_t amp = form.find('&');
    const std::string_view pair = form.substr(0, amp);
    const size_t eq = pair.find('=');
    const std::string_view k = pair.substr(0, eq);
    if (k == key) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    form.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

int64_t ApproxEventBytes(const Event& e) {
  return 96 + static_cast<int64_t>(e.event.size() + e.user_id.size() + e.anonymous_id.size() +
                                   e.type.size() + e.properties.size() + e.set.size() +
                                   e.set_once.size() + e.unset.size() + e.add.size() +
                                   e.previous_id.size());
}

DecodeResult CheckEventLimits(DecodeResult result, const DecodeLimits& limits) {
  if (!result.status.ok()) return result;
  if (result.events.size() > static_cast<size_t>(limits.max_events)) {
    DecodeResult r = DecodeFailure(
        Status::TooLarge(std::to_string(result.events.size()) + " events in one request; limit " +
                         std::to_string(limits.max_events)));
    r.reply_context = std::move(result.reply_context);
    r.write_key = std::move(result.write_key);
    return r;
  }
  for (size_t i = 0; i < result.events.size(); ++i) {
    if (ApproxEventBytes(result.events[i]) > limits.max_event_bytes) {
      DecodeResult r = DecodeFailure(
          Status::TooLarge("event " + std::to_string(i) + " is larger than " +
                           std::to_string(limits.max_event_bytes) + " bytes"),
          static_cast<int32_t>(i));
      r.reply_context = std::move(result.reply_context);
      r.write_key = std::move(result.write_key);
      return r;
    }
  }
  return result;
}

std::string FieldMessage(std::string_view what, int32_t index, std::string_view field) {
  std::string m(what);
  if (index >= 0) {
    m += " in event " + std::to_string(index);
  }
  if (!field.empty()) {
    m += " (field ";
    m += field;
    m += ")";
  }
  return m;
}

}  // namespace sluice
