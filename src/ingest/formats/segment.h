// Segment's HTTP tracking API, also spoken by RudderStack's server SDKs:
// POST /v1/batch, /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group,
// /v1/alias. Write key: `writeKey` in the body, else the Basic auth user
// (RudderStack sends only the latter). Dedup id: `messageId`.
//
// Mapping onto Event (docs/sdks.md):
//   track -> `event`; identify -> "$identify" (traits -> set); page -> "$page";
//   screen -> "$screen"; group -> "$group"; alias -> "$alias".
//   time = `timestamp`, else `originalTimestamp` (RudderStack), else receive time.
// Replies: 200 {"success":true,...}; 400 / 401 / 413 are dropped by both SDKs;
// a full queue gets 429 + Retry-After (Segment waits it without spending a
// retry; RudderStack uses it as the minimum delay); store down gets 503.
// Thread-safe (stateless).
#pragma once

#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewSegmentFormat();

}  // namespace sluice
