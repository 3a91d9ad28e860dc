// Helpers shared by the SDK wire-format decoders (Segment, Amplitude, PostHog,
// Mixpanel): bounded JSON parsing, id and timestamp coercion, JSON object
// building, form values, gzip sniffing. Pure functions; thread-safe.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/event.h"
#include "common/status.h"
#include "common/strings.h"
#include "ingest/formats/format.h"

namespace sluice {

// A failed DecodeResult: `status`, the failing event's index (-1 = the
// request) and the field, e.g. "batch[3].timestamp" is index 3, field "timestamp".
DecodeResult DecodeFailure(Status status, int32_t index = -1, std::string field = "");

// If `body` starts with the gzip magic bytes (1f 8b), gunzips it into
// `*storage` (bounded by limits.max_decompressed_bytes; TooLarge above,
// InvalidArgument when corrupt) and points `*out` at it; else `*out = body`.
// Clients that gzip without saying so (PostHog's compression=gzip-js, a
// proxy that strips Content-Encoding) are covered this way.
Status MaybeGunzip(std::string_view body, const DecodeLimits& limits, std::string* storage,
                   std::string_view* out);

// Parses `text` as JSON into `*root` using `parser` and checks it against the
// limits: nesting depth <= max_json_depth, every string and key <=
// max_string_bytes. InvalidArgument names what was exceeded.
Status ParseJsonBounded(std::string_view text, const DecodeLimits& limits,
                        simdjson::dom::parser* parser, simdjson::dom::element* root);

// An identifier given as a string or an integer (SDKs accept both):
// the string, or the integer's decimal form. nullopt for anything else
// (null, bool, float, object, array). "" stays "".
std::optional<std::string> IdString(simdjson::dom::element e);

// How a bare number is read as a time.
enum class NumericTime {
  kMillis,           // epoch milliseconds (Segment, Amplitude, PostHog)
  kSecondsOrMillis,  // |v| < 1e11 is seconds (fractions kept to the ms), else ms (Mixpanel)
};

// A timestamp: ISO-8601 string (with or without fraction / offset), a string of
// digits, or a number. nullopt when malformed or outside years 0001..9999.
std::optional<int64_t> TimeFromElement(simdjson::dom::element e, NumericTime numeric);

// The object `e` minified, "" when `e` is null or an empty object.
// InvalidArgument when `e` is not an object (and not null).
Status ObjectOrEmpty(simdjson::dom::element e, std::string* out);

// $unset: the property names as a minified JSON array of strings ("" when
// none), from an array of strings or an object whose keys are the names
// (Amplitude's {"name":"-"}). InvalidArgument for anything else.
Status UnsetNames(simdjson::dom::element e, std::string* out);

// $add: an object of numeric increments, minified ("" when none); each value
// must be a JSON number within +/-1e27 (profile/profile.h Decimal).
// InvalidArgument for anything else.
Status AddAmounts(simdjson::dom::element e, std::string* out);

// Builds a minified JSON object from members, dropping repeated keys (the last
// value wins). Thread-compatible.
class JsonObjectBuilder {
 public:
  // Adds every member of `obj` except the `skip` keys.
  void AddAll(simdjson::dom::object obj, std::initializer_list<std::string_view> skip = {});
  // Adds one member whose value is already minified JSON.
  void AddRaw(std::string_view key, std::string raw_json);
  void AddString(std::string_view key, std::string_view value);
  bool empty() const { return members_.empty(); }
  // "{...}", or "" when there are no members.
  std::string Build() const;

 private:
  std::vector<std::pair<std::string, std::string>> members_;  // key, minified value
};

// True when the JSON object text `obj` (minified, "" = none) has no members.
inline bool EmptyObject(std::string_view obj) { return obj.empty() || obj == "{}"; }

// How the SDKs' form values (Mixpanel and PostHog `data=`, `api_key=`) are
// percent-decoded: '+' stays '+' (Mixpanel's form bodies carry raw base64),
// malformed escapes are kept literally (so PercentDecode never fails).
inline constexpr PercentDecodeOptions kFormValueDecoding{.plus_is_space = false, .strict = false};
// How their base64 `data=` is read: line breaks skipped, ' ' read as '+'.
inline constexpr Base64Options kFormBase64{.form_whitespace = true};

// The raw (not decoded) value of `key` in "a=1&b=2" (query string or form
// body); nullopt when absent. A key without '=' has the value "".
std::optional<std::string_view> FormValue(std::string_view form, std::string_view key);

// Rough size of the stored body of `e`, to enforce max_event_bytes without
// serializing.
int64_t ApproxEventBytes(const Event& e);

// Checks the per-request limits on decoded events: count <= max_events and
// each event <= max_event_bytes (TooLarge, with the index).
DecodeResult CheckEventLimits(DecodeResult result, const DecodeLimits& limits);

// "the key <name>" / "batch[3].timestamp" style message helper.
std::string FieldMessage(std::string_view what, int32_t index, std::string_view field);

}  // namespace sluice
