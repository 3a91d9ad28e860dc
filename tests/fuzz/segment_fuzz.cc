// libFuzzer target: the Segment / RudderStack decoder (POST /v1/batch and the
// single-message routes; the first byte picks the route).
#include <array>
#include <string_view>

#include "fuzz_util.h"
#include "ingest/formats/segment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewSegmentFormat();
  static constexpr std::array<std::string_view, 4> kPaths = {"/v1/batch", "/v1/track",
                                                             "/v1/identify", "/v1/page"};
  if (size == 0) return 0;
  sluice::IngestRequest req;
  req.method = "POST";
  req.path = kPaths[data[0] % kPaths.size()];
  req.body = std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1);
  req.now_ms = 1795762800000;
  sluice::FuzzDecode(*format, req);
  return 0;
}
