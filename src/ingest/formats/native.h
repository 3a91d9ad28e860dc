// The native wire format: POST /v1/events
//   {"events":[{"insert_id":"..","event":"..","user_id":".." | "anonymous_id":"..",
//               "time":"ISO-8601" | <epoch ms> | "<epoch ms>",
//               "type":"track|identify|page|screen|group|alias",
//               "properties":{..},"user_properties":{"$set":{..},"$set_once":{..}}}],
//    "write_key":".."}
// Answers 200 {"accepted":N,"duplicates":M}; errors {"error","index","field"}.
// Stateless and thread-safe.
#pragma once

#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewNativeFormat();

}  // namespace sluice
