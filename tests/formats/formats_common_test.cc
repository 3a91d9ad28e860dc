// Tests of the helpers shared by the SDK wire-format decoders.
#include <gtest/gtest.h>

#include "ingest/formats/common.h"
#include "formats_test_util.h"

namespace sluice::testing {
namespace {

std::optional<int64_t> TimeOf(std::string_view json, NumericTime numeric) {
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(json.data(), json.size()).get(e) != simdjson::SUCCESS) return std::nullopt;
  return TimeFromElement(e, numeric);
}

// The decoders' dialect of the shared helpers (common/strings.h).
TEST(FormatsCommon, FormBase64DecodesStandardUrlSafeUnpaddedAndSpacedInput) {
  EXPECT_EQ(Base64Decode("aGVsbG8=", kFormBase64), "hello");
  EXPECT_EQ(Base64Decode("aGVsbG8", kFormBase64), "hello");
  EXPECT_EQ(Base64Decode("Pj4+Pz8/", kFormBase64), ">>>???");
  EXPECT_EQ(Base64Decode("Pj4-Pz8_", kFormBase64), ">>>???");
  EXPECT_EQ(Base64Decode("Pj4 Pz8/", kFormBase64), ">>>???");  // '+' turned into ' ' upstream
  EXPECT_EQ(Base64Decode("aGVs\nbG8=", kFormBase64), "hello");
  EXPECT_EQ(Base64Decode("", kFormBase64), "");
  EXPECT_FALSE(Base64Decode("a", kFormBase64));          // a lone 6-bit group
  EXPECT_FALSE(Base64Decode("aGVs*G8", kFormBase64));    // not in the alphabet
  EXPECT_FALSE(Base64Decode("aG==VsbG8", kFormBase64));  // data after padding
}

TEST(FormatsCommon, FormValueDecodingKeepsPlusAndBadEscapes) {
  EXPECT_EQ(PercentDecode("a%2Bb+c%3D%3d", kFormValueDecoding), "a+b+c==");
  EXPECT_EQ(PercentDecode("100%", kFormValueDecoding), "100%");
  EXPECT_EQ(PercentDecode("%zz%4", kFormValueDecoding), "%zz%4");
}

TEST(FormatsCommon, FormValueFindsRawValues) {
  EXPECT_EQ(FormValue("ip=0&verbose=1&data=ab+c%3D", "data"), "ab+c%3D");
  EXPECT_EQ(FormValue("ip=0&verbose=1", "verbose"), "1");
  EXPECT_EQ(FormValue("flag&x=1", "flag"), "");
  EXPECT_FALSE(FormValue("ip=0", "data"));
  EXPECT_FALSE(FormValue("", "data"));
  EXPECT_FALSE(FormValue("xdata=1", "data"));
}

TEST(FormatsCommon, TimesInEveryShape) {
  EXPECT_EQ(TimeOf(R"("2024-01-01T00:00:00Z")", NumericTime::kMillis), 1704067200000);
  EXPECT_EQ(TimeOf(R"("2024-01-01T00:00:00.5-01:00")", NumericTime::kMillis), 1704070800500);
  EXPECT_EQ(TimeOf("1704067200000", NumericTime::kMillis), 1704067200000);
  EXPECT_EQ(TimeOf("1704067200", NumericTime::kSecondsOrMillis), 1704067200000);
  EXPECT_EQ(TimeOf("1704067200.5", NumericTime::kSecondsOrMillis), 1704067200500);
  EXPECT_EQ(TimeOf("1704067200000", NumericTime::kSecondsOrMillis), 1704067200000);
  EXPECT_EQ(TimeOf(R"("1704067200")", NumericTime::kSecondsOrMillis), 1704067200000);
  EXPECT_FALSE(TimeOf(R"("tomorrow")", NumericTime::kMillis));
  EXPECT_FALSE(TimeOf("true", NumericTime::kMillis));
  EXPECT_FALSE(TimeOf("1e300", NumericTime::kMillis));
  EXPECT_FALSE(TimeOf("1e300", NumericTime::kSecondsOrMillis));
  EXPECT_FALSE(TimeOf("18446744073709551615", NumericTime::kMillis));
  EXPECT_FALSE(TimeOf(R"("99999999999999999999")", NumericTime::kMillis));
}

TEST(FormatsCommon, IdsAreStringsOrIntegers) {
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  ASSERT_EQ(parser.parse(std::string_view(R"(["a",12,-3,1.5,null,{}])")).get(e), simdjson::SUCCESS);
  std::vector<std::optional<std::string>> got;
  simdjson::dom::array arr;
  ASSERT_EQ(e.get_array().get(arr), simdjson::SUCCESS);
  for (simdjson::dom::element v : arr) got.push_back(IdString(v));
  EXPECT_EQ(got[0], "a");
  EXPECT_EQ(got[1], "12");
  EXPECT_EQ(got[2], "-3");
  EXPECT_FALSE(got[3]);
  EXPECT_FALSE(got[4]);
  EXPECT_FALSE(got[5]);
}

TEST(FormatsCommon, ObjectBuilderDropsRepeatedKeysLastWins) {
  JsonObjectBuilder b;
  EXPECT_EQ(b.Build(), "");
  b.AddString("a", "x\"y");
  b.AddRaw("b", "1");
  b.AddRaw("a", "2");
  EXPECT_EQ(b.Build(), R"({"a":2,"b":1})");
}

TEST(FormatsCommon, BoundedParseRejectsDeepNestingAndLongStrings) {
  DecodeLimits limits;
  limits.max_json_depth = 3;
  limits.max_string_bytes = 4;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  EXPECT_TRUE(ParseJsonBounded(R"({"a":{"b":1}})", limits, &parser, &root).ok());
  EXPECT_FALSE(ParseJsonBounded(R"({"a":{"b":[1]}})", limits, &parser, &root).ok());
  EXPECT_FALSE(ParseJsonBounded(R"({"a":"12345"})", limits, &parser, &root).ok());
  EXPECT_FALSE(ParseJsonBounded(R"({"abcde":1})", limits, &parser, &root).ok());
  EXPECT_FALSE(ParseJsonBounded("{", limits, &parser, &root).ok());
}

TEST(FormatsCommon, GzipIsSniffedAndBounded) {
  DecodeLimits limits;
  std::string storage;
  std::string_view out;
  const std::string zipped = Gzip("{\"a\":1}");
  ASSERT_TRUE(MaybeGunzip(zipped, limits, &storage, &out).ok());
  EXPECT_EQ(out, "{\"a\":1}");
  ASSERT_TRUE(MaybeGunzip("{}", limits, &storage, &out).ok());
  EXPECT_EQ(out, "{}");
  limits.max_decompressed_bytes = 3;
  EXPECT_EQ(MaybeGunzip(zipped, limits, &storage, &out).code(), Code::kTooLarge);
  EXPECT_EQ(MaybeGunzip("\x1f\x8b junk", DecodeLimits(), &storage, &out).code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace sluice::testing
