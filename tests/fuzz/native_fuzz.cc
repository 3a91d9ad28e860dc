// libFuzzer target: the native batch decoder (POST /v1/events) on arbitrary
// bodies; fuzz_util.h checks that an accepted batch stores and reads back and
// that every outcome is phrased. Seeds: tests/fuzz/corpus/native_fuzz/.
#include <string_view>

#include "fuzz_util.h"
#include "ingest/formats/native.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const sluice::FormatPtr format = sluice::NewNativeFormat();
  sluice::IngestRequest req;
  req.method = "POST";
  req.path = "/v1/events";
  req.content_type = "application/json";
  req.body = std::string_view(reinterpret_cast<const char*>(data), size);
  req.now_ms = 1795762800000;
  sluice::FuzzDecode(*format, req);
  return 0;
}
