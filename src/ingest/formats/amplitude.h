// Amplitude's HTTP V2 and Batch APIs: POST /2/httpapi and /batch.
// Body: {"api_key","events":[..],"options":{..},"client_upload_time"}.
// Write key: `api_key`. Dedup id: `insert_id`. A PostHog body (`batch`
// instead of `events`) on POST /batch is handed to the PostHog decoder.
//
// Mapping onto Event (docs/sdks.md): user_id; device_id -> anonymous_id;
// time = `time` (epoch ms) else receive time; event_properties -> properties;
// user_properties: $set -> set, $setOnce -> set_once, plain keys -> set.
// Replies in Amplitude's shape, because analytics-node reads the body's `code`,
// not the HTTP status: 200 {"code":200,"events_ingested":N,...};
// 400 with `missing_field` or `events_with_invalid_fields` /
// `events_with_missing_fields` (indices it drops; it never retries those);
// wrong key 400 "Invalid API key: ..." (dropped); 413 (it halves its batch);
// full queue 429 with every index in `throttled_events` (it waits 30 s);
// store down 503 (retried with backoff). Thread-safe (stateless).
#pragma once

#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewAmplitudeFormat();

}  // namespace sluice
