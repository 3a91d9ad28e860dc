#include "ingest/formats/gzip.h"

#include <zlib.h>

#include <algorithm>

namespace sluice {
namespace {

constexpr size_t kChunk = 64 * 1024;

// One inflate pass with the given windowBits. `*corrupt_at_start` tells the
// caller that the stream header itself was rejected (so a raw-deflate retry
// makes sense).
Result<std::string> Inflate(std::string_view in, int window_bits, bool multi_member,
                            int64_t max_out, bool* header_rejected) {
  *header_rejected = false;
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return Status::Internal("inflateInit2 failed");
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  const size_t limit = static_cast<size_t>(std::max<int64_t>(0, max_out));
  Status status;
  for (;;) {
    // Grow in chunks but never past limit + 1: one byte beyond the limit is
    // enough to know the body is too large.
    const size_t room = std::min(kChunk, limit + 1 - out.size());
    const size_t old = out.size();
    out.resize(old + room);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (room - zs.avail_out));
    if (out.size() > limit) {
      status = Status::TooLarge("decompressed body over " + std::to_string(limit) + " bytes");
      break;
    }
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (!multi_member) {
        status = Status::InvalidArgument("trailing bytes after the compressed body");
        break;
      }
      // Another gzip member follows (concatenated gzip files are legal).
      if (inflateReset(&zs) != Z_OK) {
        status = Status::InvalidArgument("corrupt compressed body");
        break;
      }
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      status = Status::InvalidArgument("truncated compressed body");
      break;
    }
    if (rc == Z_BUF_ERROR) continue;  // output full; loop grows it
    *header_rejected = zs.total_out == 0 && rc == Z_DATA_ERROR;
    status = Status::InvalidArgument("corrupt compressed body");
    break;
  }
  inflateEnd(&zs);
  if (!status.ok()) return status;
  return out;
}

}  // namespace

Result<std::string> Decompress(std::string_view in, Compression kind, int64_t max_out) {
  bool header_rejected = false;
  if (kind == Compression::kGzip) {
    return Inflate(in, 16 + MAX_WBITS, /*multi_member=*/true, max_out, &header_rejected);
  }
  auto r = Inflate(in, MAX_WBITS, /*multi_member=*/false, max_out, &header_rejected);
  if (!r.ok() && header_rejected) {
    return Inflate(in, -MAX_WBITS, /*multi_member=*/false, max_out, &header_rejected);
  }
  return r;
}

Result<std::string> Compress(std::string_view in, Compression kind, int level) {
  z_stream zs{};
  const int window_bits = kind == Compression::kGzip ? 16 + MAX_WBITS : MAX_WBITS;
  if (deflateInit2(&zs, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Status::Internal("deflateInit2 failed");
  }
  // deflateBound covers the whole stream, header and trailer included, so one
  // Z_FINISH call completes it.
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return Status::Internal("deflate did not finish");
  return out;
}

}  // namespace sluice
