// Mixpanel's ingestion API: /track, /engage, /groups, /import (GET or POST,
// with or without the trailing slash). The payload is base64 JSON in `data=`:
// in the query (GET, percent-encoded) or a form body (POST; its base64 keeps
// raw '+', which must not become a space). /import also takes a JSON body.
// Write key: the project token (`properties.token` on events, `$token` on
// engage / groups), else `?api_key=` (/import), else the Basic auth user.
// Dedup id: `properties.$insert_id`; without one a random id (the SDK never
// retries, so no retry can duplicate).
//
// Mapping onto Event (docs/sdks.md): distinct_id -> user_id ($device_id ->
// anonymous_id); time = properties.time (epoch seconds, or ms when >= 1e11);
// /engage -> "$identify" with $set / $set_once; /groups -> "$groupidentify"
// for the user "$<group_key>_<group_id>".
// Replies: the SDK ignores the status and reads the body: "1" / "0", or with
// ?verbose=1 {"status":1,"error":null} / {"status":0,"error":".."}. The
// status is honest (400/401/413/429/503) for other clients. Thread-safe (stateless).
#pragma once

#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewMixpanelFormat();

}  // namespace sluice
