// Shared checks for the decoder fuzz targets: whatever the input, Decode must
// return (no crash, no sanitizer report), and an accepted request must yield
// events that sluice can store and read back.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/event.h"
#include "ingest/formats/format.h"

namespace sluice {

// Tight limits so the fuzzer explores them instead of allocating.
inline DecodeLimits FuzzLimits() {
  DecodeLimits limits;
  limits.max_decompressed_bytes = 1 << 20;
  limits.max_events = 64;
  limits.max_json_depth = 16;
  limits.max_string_bytes = 4096;
  limits.max_event_bytes = 64 * 1024;
  return limits;
}

inline void FuzzCheck(bool ok) {
  if (!ok) __builtin_trap();
}

// Decodes `req`, checks the invariants, and phrases every outcome.
inline void FuzzDecode(const Format& format, const IngestRequest& req) {
  const DecodeLimits limits = FuzzLimits();
  DecodeResult r = format.Decode(req, limits);
  if (r.status.ok()) {
    FuzzCheck(r.events.size() <= static_cast<size_t>(limits.max_events));
    for (const Event& e : r.events) {
      FuzzCheck(!e.event.empty());
      FuzzCheck(!e.user_id.empty() || !e.anonymous_id.empty());
      FuzzCheck(!e.insert_id.empty());
      Event back;
      FuzzCheck(ParseBody(ToBody(e), &back).ok());  // properties/set are valid JSON
      FuzzCheck(back.event == e.event && back.time_ms == e.time_ms);
      FuzzCheck(back.properties == e.properties && back.set == e.set &&
                back.set_once == e.set_once);
    }
  } else {
    FuzzCheck(r.events.empty() || r.status.code() == Code::kTooLarge);
  }
  for (Code c : {Code::kOk, Code::kInvalidArgument, Code::kUnauthorized, Code::kTooLarge,
                 Code::kBusy, Code::kUnavailable}) {
    IngestOutcome o;
    o.status = c == Code::kOk ? Status::Ok() : Status(c, "fuzz");
    o.index = r.index;
    o.field = r.field;
    o.events = static_cast<int64_t>(r.events.size());
    o.reply_context = r.reply_context;
    IngestReply reply = format.Reply(o);
    FuzzCheck(reply.status >= 200 && reply.status < 600);
  }
}

}  // namespace sluice
