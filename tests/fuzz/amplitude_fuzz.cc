// libFuzzer target: the Amplitude decoder (POST /2/httpapi and /batch, which
// hands PostHog bodies over; the first byte picks the route).
#include <string_view>

#include "fuzz_util.h"
#include "ingest/formats/amplitude.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewAmplitudeFormat();
  if (size == 0) return 0;
  sluice::IngestRequest req;
  req.method = "POST";
  req.path = data[0] % 2 ? "/batch" : "/2/httpapi";
  req.body = std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1);
  req.now_ms = 1795762800000;
  sluice::FuzzDecode(*format, req);
  return 0;
}
