// libFuzzer target: the PostHog decoder. The first byte picks GET (the rest is
// the query) or POST (the rest is the body) and the compression parameter.
#include <string_view>

#include "fuzz_util.h"
#include "ingest/formats/posthog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewPostHogFormat();
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  sluice::IngestRequest req;
  req.now_ms = 1795762800000;
  if (data[0] & 1) {
    req.method = "GET";
    req.path = "/e/";
    req.query = rest;
  } else {
    req.method = "POST";
    req.path = (data[0] & 2) ? "/e/" : "/batch/";
    req.query = (data[0] & 4) ? "compression=gzip-js" : "";
    req.body = rest;
  }
  sluice::FuzzDecode(*format, req);
  return 0;
}
