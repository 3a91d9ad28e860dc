// The native wire format: POST /v1/events
//   {"events":[{"insert_id":"..","event":"..","user_id":".." | "anonymous_id":"..",
//               "time":"ISO-8601" | <epoch ms> | "<epoch ms>",
//               "type":"track|identify|page|screen|group|alias",
//               "properties":{..},"user_properties":{"$set":{..},"$set_once":{..}}}],
//    "write_key":".."}
// Answers 200 {"accepted":N,"duplicates":M}; errors {"error","index","field"}.
// Stateless and thread-safe.
//
// The encoder below writes that body from Events: the one writer of native
// bodies (sluice send, the bench load generator, the tests). Decoding what it
// wrote gives the Event back (round-trip test in tests/formats).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "common/event.h"
#include "ingest/formats/format.h"

namespace sluice {

FormatPtr NewNativeFormat();

// Appends `e` as one native event object to `*out`, keys in the order of the
// format above. Left out: empty strings and objects, type "track" (the
// decoder's default) and time_ms <= 0 (the server then uses its receive
// time). `project` and `received_ms` are not part of the wire form.
// REQUIRES: properties, set, set_once and add are "" or JSON objects, unset
// "" or a JSON array of names.
void EncodeNativeEvent(const Event& e, std::string* out);

// Builds one native request body event by event. Thread-compatible.
class NativeBodyBuilder {
 public:
  // Appends `e` (EncodeNativeEvent); returns the offset in the body where
  // its object starts.
  size_t Add(const Event& e);
  // Appends an event object that is already native JSON (`sluice send
  // --file` lines), verbatim. Returns its offset.
  size_t AddRaw(std::string_view event_json);
  int64_t events() const { return events_; }
  // Bytes of the body so far (without the closing "]}").
  size_t bytes() const { return body_.size(); }
  // {"events":[...]} plus "write_key" when non-empty; the builder starts over.
  std::string Finish(std::string_view write_key = "");

 private:
  size_t Separate();

  std::string body_ = "{\"events\":[";
  int64_t events_ = 0;
};

// The body of `events`: {"events":[...]} (+ "write_key" when non-empty).
std::string EncodeNativeBody(std::span<const Event> events, std::string_view write_key = "");

}  // namespace sluice
