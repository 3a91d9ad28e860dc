#include "ingest/formats/gzip.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>

namespace sluice {
namespace {

// Compresses `in` with the given windowBits (16+15 gzip, 15 zlib, -15 raw).
std::string Compress(std::string_view in, int window_bits) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A gzip stream of `n` zero bytes, built in chunks so the test never holds
// the uncompressed bomb in memory either.
std::string GzipZeros(size_t n) {
  z_stream zs{};
  EXPECT_EQ(
      deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY),
      Z_OK);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  char buf[1 << 16];
  size_t left = n;
  int flush = Z_NO_FLUSH;
  do {
    const size_t take = std::min(left, zeros.size());
    left -= take;
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zeros.data()));
    zs.avail_in = static_cast<uInt>(take);
    do {
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof buf;
      deflate(&zs, flush);
      out.append(buf, sizeof buf - zs.avail_out);
    } while (zs.avail_out == 0);
  } while (flush != Z_FINISH);
  deflateEnd(&zs);
  return out;
}

std::string Text(size_t n) {
  std::string s;
  for (size_t i = 0; s.size() < n; ++i) s += "{\"event\":\"e" + std::to_string(i) + "\"},";
  s.resize(n);
  return s;
}

TEST(GzipTest, GzipRoundTrips) {
  const std::string text = Text(300000);
  auto out = Decompress(Compress(text, 16 + MAX_WBITS), Compression::kGzip, 1 << 20);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, text);
}

TEST(GzipTest, ZlibAndRawDeflateBothDecode) {
  const std::string text = Text(5000);
  auto zlib = Decompress(Compress(text, MAX_WBITS), Compression::kDeflate, 1 << 20);
  ASSERT_TRUE(zlib.ok()) << zlib.status().ToString();
  EXPECT_EQ(*zlib, text);
  auto raw = Decompress(Compress(text, -MAX_WBITS), Compression::kDeflate, 1 << 20);
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  EXPECT_EQ(*raw, text);
}

TEST(GzipTest, ConcatenatedGzipMembersAreJoined) {
  auto out = Decompress(Compress("abc", 16 + MAX_WBITS) + Compress("def", 16 + MAX_WBITS),
                        Compression::kGzip, 100);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "abcdef");
}

TEST(GzipTest, OutputExactlyAtLimitIsAccepted) {
  const std::string text = Text(1000);
  auto out = Decompress(Compress(text, 16 + MAX_WBITS), Compression::kGzip, 1000);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(), 1000u);
  auto over = Decompress(Compress(text, 16 + MAX_WBITS), Compression::kGzip, 999);
  EXPECT_EQ(over.status().code(), Code::kTooLarge);
}

TEST(GzipTest, BombStopsAtTheLimitQuickly) {
  // 1 GiB of zeros is about 1 MiB compressed (64 gzip members of 16 MiB,
  // cheaper to build than one stream); decompression must stop at the 5 MiB
  // limit instead of inflating (and allocating) the whole gigabyte.
  const std::string member = GzipZeros(size_t{16} << 20);
  std::string bomb;
  for (int i = 0; i < 64; ++i) bomb += member;
  ASSERT_LT(bomb.size(), 2u << 20);
  const auto start = std::chrono::steady_clock::now();
  auto out = Decompress(bomb, Compression::kGzip, 5 << 20);
  EXPECT_EQ(out.status().code(), Code::kTooLarge);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(GzipTest, CorruptTruncatedAndEmptyInputsAreInvalid) {
  const std::string good = Compress(Text(10000), 16 + MAX_WBITS);
  EXPECT_EQ(
      Decompress(good.substr(0, good.size() / 2), Compression::kGzip, 1 << 20).status().code(),
      Code::kInvalidArgument);
  std::string corrupt = good;
  for (size_t i = 20; i < 60 && i < corrupt.size(); ++i) corrupt[i] = static_cast<char>(0xA5);
  EXPECT_EQ(Decompress(corrupt, Compression::kGzip, 1 << 20).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Decompress("not gzip at all", Compression::kGzip, 1 << 20).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Decompress("", Compression::kGzip, 1 << 20).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Decompress("garbage!", Compression::kDeflate, 1 << 20).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
