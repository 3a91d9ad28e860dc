// Format: one ingest wire format (native, Segment, Amplitude, PostHog,
// RudderStack, Mixpanel). A format decides which requests are its own, turns
// a request into normalized Events, and shapes the answer the way its SDKs
// expect (the body; the status from its dialect's column of the table in
// common/http_status.h), so SDKs neither drop good events nor retry bad ones
// forever. Formats are stateless and thread-safe.
//
// The ingest server does the rest, the same for every format: size limits,
// gunzip (bounded), auth of the key the format extracted, group commit,
// backpressure.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/event.h"
#include "common/http_status.h"
#include "common/status.h"

namespace sluice {

// The bounds every decoder enforces ([ingest] keys of the same names).
struct DecodeLimits {
  int64_t max_decompressed_bytes = 5 * 1024 * 1024;  // after gunzip; 413 above
  int32_t max_events = 1000;                         // per request; 413 above
  int32_t max_json_depth = 32;                       // nesting of any body; 400 above
  int32_t max_string_bytes = 65536;                  // any single string field; 400 above
  int32_t max_event_bytes = 256 * 1024;              // one normalized event; 413 above
};

struct IngestRequest {
  std::string_view method;  // "POST", "GET"
  std::string_view path;    // without the query string
  std::string_view query;   // raw, after '?', "" when none
  std::string_view content_type;
  std::string_view body;        // already gunzipped when Content-Encoding said so
  std::string_view basic_user;  // user part of Basic auth, "" when none
  std::string_view bearer;      // Bearer token, "" when none
  int64_t now_ms = 0;           // receive time, epoch ms
};

struct DecodeResult {
  std::vector<Event> events;  // project left empty: the server fills it from the key
  std::string write_key;      // key found in the request (header or body), "" if none
  // On failure: the first bad event's index (-1 = the request as a whole) and field.
  Status status;
  int32_t index = -1;
  std::string field;
  // Format-private data Decode hands to Reply for this request (e.g. Mixpanel's
  // verbose flag, Amplitude's list of every invalid event). The service copies it
  // verbatim into IngestOutcome::reply_context, also when Decode failed.
  std::string reply_context;
};

// What happened to a request, for the format to phrase.
struct IngestOutcome {
  Status status;       // Ok, InvalidArgument, TooLarge, Unauthorized, Busy, Unavailable...
  int32_t index = -1;  // failing event, when status is InvalidArgument
  std::string field;
  int64_t accepted = 0;
  int64_t duplicates = 0;
  int64_t events = 0;         // events in the request (decoded)
  int64_t body_bytes = 0;     // request body size as received
  int32_t retry_after_s = 0;  // > 0 on Busy/Unavailable
  int64_t now_ms = 0;
  std::string reply_context;  // DecodeResult::reply_context; "" when Decode did not run
};

struct IngestReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int32_t retry_after_s = 0;  // > 0 adds a Retry-After header
};

class Format {
 public:
  virtual ~Format() = default;
  virtual std::string_view name() const = 0;
  // True when this format owns the route.
  virtual bool Matches(std::string_view method, std::string_view path) const = 0;
  virtual DecodeResult Decode(const IngestRequest& req, const DecodeLimits& limits) const = 0;
  virtual IngestReply Reply(const IngestOutcome& outcome) const = 0;
};

using FormatPtr = std::unique_ptr<Format>;

// The generic JSON reply: 200 {"accepted":N,"duplicates":M}; errors
// {"error":..,"index":i,"field":..} with the status the table
// (common/http_status.h) gives the code in `dialect`, + Retry-After when the
// code asks to retry later.
IngestReply NativeReply(const IngestOutcome& outcome, HttpDialect dialect = HttpDialect::kDefault);

// Seconds for the Retry-After header of a reply to `outcome`: >= 1 when its
// code asks the client to retry later (common/http_status.h), else 0.
int32_t RetryAfterFor(const IngestOutcome& outcome);

// A random RFC 4122 version-4 UUID string ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"),
// the insert_id of an event that came without one. Thread-safe.
std::string RandomInsertId();

}  // namespace sluice
