// Event: sluice's normalized event, and its stored form (the queue's `body`).
//
// Every decoder (native, Segment, Amplitude, PostHog, ...) produces Events;
// every consumer reads them back with ParseBody. The queue treats the body as
// opaque bytes. Thread-compatible value type.
//
// Stored body: minified JSON, keys in this order, absent keys omitted:
//   {"event":"..","user_id":"..","anonymous_id":"..","time":<epoch ms>,
//    "type":"track|identify|page|screen|group|alias","previous_id":"..",
//    "properties":{..},"set":{..},"set_once":{..},"unset":[..],"add":{..},
//    "received":<epoch ms>}
// `project` and `insert_id` are queue columns, not part of the body.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace sluice {

struct Event {
  std::string project;       // tenant, from the write key; "default" without auth
  std::string insert_id;     // client dedup key; generated when absent
  std::string event;         // event name; REQUIRES: non-empty
  std::string user_id;       // at least one of user_id / anonymous_id is non-empty
  std::string anonymous_id;
  std::string type = "track";
  int64_t time_ms = 0;       // the event's own time, epoch milliseconds
  int64_t received_ms = 0;   // server receive time, epoch milliseconds
  // Raw minified JSON objects ("" when absent). Validated as objects by decoders.
  std::string properties;
  std::string set;           // user properties to overwrite ($set, identify traits)
  std::string set_once;      // user properties to set only when absent
  std::string unset;         // JSON array of property names to remove ($unset), "" when none
  std::string add;           // JSON object of numeric increments ($add), "" when none
  // alias: the id being aliased to user_id (Segment previousId, PostHog/Mixpanel
  // alias); "" otherwise.
  std::string previous_id;

  // The user the event is attributed to: user_id, else anonymous_id.
  const std::string& distinct_id() const { return user_id.empty() ? anonymous_id : user_id; }
};

// Serializes the body fields of `e` (see the format above).
std::string ToBody(const Event& e);

// Parses a stored body back into `out` (project/insert_id untouched).
// Returns InvalidArgument for anything ToBody could not have produced.
Status ParseBody(std::string_view body, Event* out);

// Appends `s` to `out` as a JSON string literal (quotes and escapes).
void AppendJsonString(std::string_view s, std::string* out);

}  // namespace sluice
