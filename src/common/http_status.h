// The one table from Code (common/status.h) to HTTP status, with the columns
// of the SDK dialects: every error answer sluice writes — the native API,
// ops/admin/read endpoints, the HTTP server's own refusals and each wire
// format's Reply — takes its status from here. The SDKs decide by status what
// to retry, drop or wait for, so a few codes answer differently per dialect
// (docs/sdks.md, "Answers, and why"):
//
//   code              default  segment  amplitude  posthog  mixpanel  Retry-After
//   kOk                 200      200       200       200      200
//   kInvalidArgument    400      400       400       400      400
//   kTooLarge           413      413       413       413      413
//   kUnauthorized       401      401       400       401      401
//   kForbidden          403      403       403       403      403
//   kNotFound           404      404       404       404      404
//   kBusy               503      429       429       429      429         yes
//   kLeaseLost          409      409       409       409      409
//   kUnavailable        503      503       503       503      503         yes
//   kIoError            500      500       500       500      500
//   kInternal           500      500       500       500      500
//
// Pure functions over constant data; thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <span>

#include "common/status.h"

namespace sluice {

// Who reads the answer.
enum class HttpDialect {
  kDefault = 0,  // sluice's own API: native /v1/events, ops, admin, reads, the HTTP server
  kSegment,      // Segment and RudderStack SDKs
  kAmplitude,    // Amplitude (the SDK drops "Invalid API key" 400s instead of retrying)
  kPostHog,
  kMixpanel,
};
inline constexpr size_t kHttpDialectCount = 5;

struct HttpStatusRow {
  Code code;
  // The answer asks the client to come back later: a Retry-After header.
  bool retry_later = false;
  std::array<int, kHttpDialectCount> status{};  // indexed by HttpDialect
};

// Every Code, one row each, in enum order (row i is Code(i)).
std::span<const HttpStatusRow> HttpStatusTable();

// The status `code` answers in `dialect`.
int HttpStatusFor(Code code, HttpDialect dialect = HttpDialect::kDefault);

// True for the codes whose answer carries Retry-After (kBusy, kUnavailable).
bool HttpRetryLater(Code code);

// Statuses that no error Code maps to: successes, and the refusals of the
// HTTP protocol layer itself (http/http_server.cc).
inline constexpr int kHttpOk = 200;
inline constexpr int kHttpNoContent = 204;             // CORS preflight
inline constexpr int kHttpMethodNotAllowed = 405;      // a known path with another method
inline constexpr int kHttpHeaderFieldsTooLarge = 431;  // request line + headers over the limit
inline constexpr int kHttpVersionNotSupported = 505;   // a streamed answer to an HTTP/1.0 request

}  // namespace sluice
