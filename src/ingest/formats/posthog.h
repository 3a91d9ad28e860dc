// PostHog's capture API: POST /batch/, /capture/, /e/, /i/v0/e/ (with or
// without the trailing slash; GET with ?data= on the capture paths too).
// Body: {"api_key","batch":[..]}, a single event {"api_key"|"token","event",..},
// or a bare array of events (posthog-js); JSON, gzip (Content-Encoding,
// `compression=gzip-js`, or just the magic bytes), or a form `data=<base64>`.
// Write key: `api_key` / `token` at the top, else each event's
// `properties.token`. Dedup id: `uuid`.
//
// Mapping onto Event (docs/sdks.md): distinct_id -> user_id ($identify's
// $anon_distinct_id -> anonymous_id); $set / $set_once (top-level or in
// properties) -> set / set_once; time = `timestamp` (ISO or epoch ms), else
// now - `offset` ms, else properties.$time (epoch seconds), else receive time.
// Replies: 200 {"status":1}; 400 / 401 are dropped by posthog-node; 413 makes
// it halve its batch size; a full queue gets 429, store down 503 (both
// retried 3 times, 3 s apart). Thread-safe (stateless).
#pragma once

#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewPostHogFormat();

// The PostHog decoder and reply, also used by the Amplitude format when a
// PostHog body arrives on POST /batch (Amplitude's path, without the slash).
DecodeResult DecodePostHog(const IngestRequest& req, const DecodeLimits& limits);
IngestReply PostHogReply(const IngestOutcome& outcome);

}  // namespace sluice
