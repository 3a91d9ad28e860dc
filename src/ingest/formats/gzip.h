// Bounded decompression of request bodies (Content-Encoding gzip / deflate).
// Output never grows beyond the caller's limit, so a gzip bomb costs at most
// `max_out` bytes of memory. And the compressor of the clients that send such
// bodies (the bench load generator, the tests). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace sluice {

enum class Compression {
  kGzip,     // RFC 1952; concatenated members are accepted
  kDeflate,  // RFC 1950 zlib stream; raw RFC 1951 deflate also accepted (common in the wild)
};

// Decompresses `in`. Returns kTooLarge as soon as the output would exceed
// `max_out` bytes, kInvalidArgument for corrupt or truncated input.
// REQUIRES: max_out >= 0.
Result<std::string> Decompress(std::string_view in, Compression kind, int64_t max_out);

// Compresses `in` into one gzip member (kGzip) or one zlib stream (kDeflate)
// at zlib `level` (0..9; -1 = zlib's default). kInternal when zlib fails.
Result<std::string> Compress(std::string_view in, Compression kind, int level = -1);

}  // namespace sluice
