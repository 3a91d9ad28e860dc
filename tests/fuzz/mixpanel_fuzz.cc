// libFuzzer target: the Mixpanel decoder. The first byte picks the endpoint and
// GET (the rest is the query) or POST (the rest is the body, form or JSON).
#include <array>
#include <string_view>

#include "fuzz_util.h"
#include "ingest/formats/mixpanel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewMixpanelFormat();
  static constexpr std::array<std::string_view, 4> kPaths = {"/track", "/engage", "/groups",
                                                             "/import"};
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  sluice::IngestRequest req;
  req.now_ms = 1795762800000;
  req.path = kPaths[(data[0] >> 1) % kPaths.size()];
  if (data[0] & 1) {
    req.method = "GET";
    req.query = rest;
  } else {
    req.method = "POST";
    req.query = "ip=0&verbose=1&api_key=k";
    req.body = rest;
  }
  sluice::FuzzDecode(*format, req);
  return 0;
}
