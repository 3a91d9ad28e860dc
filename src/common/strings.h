// Small string helpers shared by every layer: ASCII case and whitespace,
// percent and base64 decoding, constant-time comparison, URL redaction.
// Written once here; the HTTP server, the ops handlers, ingest and the format
// decoders all use these. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice {

// "postgres://user:secret@host/db" -> "postgres://user:***@host/db"; also
// masks password=... parameters. For logs and messages.
std::string RedactUrl(const std::string& url);

// The value of hex digit `c` (0-9, a-f, A-F), or -1.
int HexValue(char c);

// `s` with A-Z turned into a-z (other bytes unchanged).
std::string ToLower(std::string_view s);
// Lower-cases A-Z in place.
void ToLowerInPlace(std::string* s);
// ASCII case-insensitive comparisons.
bool EqualsNoCase(std::string_view a, std::string_view b);
bool StartsWithNoCase(std::string_view s, std::string_view prefix);
// `s` without leading and trailing spaces and tabs (HTTP's optional whitespace).
std::string_view Trim(std::string_view s);

// How PercentDecode treats the input; each caller states the dialect it reads.
struct PercentDecodeOptions {
  // '+' decodes to ' ' (query strings and HTML form bodies). Off: '+' stays
  // '+' (request paths; Mixpanel's form values carry raw base64).
  bool plus_is_space = false;
  // A malformed escape ("%zz", a '%' with fewer than two characters after it)
  // or an encoded NUL makes the whole input invalid (nullopt). Off: a
  // malformed escape is kept literally, "%00" decodes to a NUL byte, and the
  // result is never nullopt.
  bool strict = false;
};

// Decodes %XX escapes of `s` (upper- or lower-case hex).
std::optional<std::string> PercentDecode(std::string_view s, PercentDecodeOptions options = {});

// How Base64Decode treats the input.
struct Base64Options {
  // Skips '\n', '\r' and '\t', and reads ' ' as '+' (a form decoder upstream
  // may have turned '+' into a space). Off: any of them is malformed.
  bool form_whitespace = false;
};

// Decodes standard or URL-safe base64 (both alphabets accepted), with or
// without padding. nullopt when malformed: a byte outside the alphabet, data
// after '=', more than two '=', or a lone trailing 6-bit group.
std::optional<std::string> Base64Decode(std::string_view s, Base64Options options = {});

// a == b, in time that depends only on the lengths (not on where the strings
// differ), for secrets: write keys, admin tokens.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace sluice
