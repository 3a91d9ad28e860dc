#include "common/strings.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(Strings, HexValueReadsBothCasesAndRefusesTheRest) {
  EXPECT_EQ(HexValue('0'), 0);
  EXPECT_EQ(HexValue('9'), 9);
  EXPECT_EQ(HexValue('a'), 10);
  EXPECT_EQ(HexValue('F'), 15);
  EXPECT_EQ(HexValue('g'), -1);
  EXPECT_EQ(HexValue('%'), -1);
}

TEST(Strings, CaseAndWhitespaceHelpersTouchOnlyAscii) {
  EXPECT_EQ(ToLower("Content-TYPE \xc3\x89"), "content-type \xc3\x89");
  std::string s = "GZip";
  ToLowerInPlace(&s);
  EXPECT_EQ(s, "gzip");
  EXPECT_TRUE(EqualsNoCase("Content-Type", "content-type"));
  EXPECT_FALSE(EqualsNoCase("Content-Type", "content-typ"));
  EXPECT_TRUE(StartsWithNoCase("BASIC abc", "basic "));
  EXPECT_FALSE(StartsWithNoCase("bas", "basic "));
  EXPECT_EQ(Trim(" \t gzip \t"), "gzip");
  EXPECT_EQ(Trim(" \t "), "");
  EXPECT_EQ(Trim("a b"), "a b");
}

TEST(Strings, PercentDecodeLenientKeepsMalformedEscapesLiterally) {
  EXPECT_EQ(PercentDecode("a%2Bb+c%3D%3d"), "a+b+c==");
  EXPECT_EQ(PercentDecode("%zz%41"), "%zzA");
  EXPECT_EQ(PercentDecode("100%"), "100%");
  EXPECT_EQ(PercentDecode("%4"), "%4");
  EXPECT_EQ(PercentDecode("a%00b"), std::string("a\0b", 3));
  EXPECT_EQ(PercentDecode("x+y", {.plus_is_space = true}), "x y");
}

TEST(Strings, PercentDecodeStrictRefusesMalformedEscapesAndNul) {
  const PercentDecodeOptions strict{.plus_is_space = false, .strict = true};
  EXPECT_EQ(PercentDecode("/a%20b%2Fc", strict), "/a b/c");
  EXPECT_EQ(PercentDecode("a+b", strict), "a+b");
  EXPECT_FALSE(PercentDecode("bad%zz", strict));
  EXPECT_FALSE(PercentDecode("end%4", strict));
  EXPECT_FALSE(PercentDecode("end%", strict));
  EXPECT_FALSE(PercentDecode("nul%00", strict));
  EXPECT_EQ(PercentDecode("hello+world%21", {.plus_is_space = true, .strict = true}),
            "hello world!");
}

TEST(Strings, Base64DecodesBothAlphabetsWithOrWithoutPadding) {
  EXPECT_EQ(Base64Decode("aGVsbG8="), "hello");
  EXPECT_EQ(Base64Decode("aGVsbG8"), "hello");
  EXPECT_EQ(Base64Decode("a2V5LXR3bzo="), "key-two:");
  EXPECT_EQ(Base64Decode("Pj4+Pz8/"), ">>>???");
  EXPECT_EQ(Base64Decode("Pj4-Pz8_"), ">>>???");
  EXPECT_EQ(Base64Decode(""), "");
}

TEST(Strings, Base64RefusesMalformedInput) {
  EXPECT_FALSE(Base64Decode("a"));           // a lone 6-bit group
  EXPECT_FALSE(Base64Decode("aGVs*G8"));     // not in the alphabet
  EXPECT_FALSE(Base64Decode("aG==VsbG8"));   // data after padding
  EXPECT_FALSE(Base64Decode("aGVsbG8==="));  // three '='
  // Without form_whitespace, whitespace is not base64.
  EXPECT_FALSE(Base64Decode("Pj4 Pz8/"));
  EXPECT_FALSE(Base64Decode("aGVs\nbG8="));
}

TEST(Strings, Base64FormWhitespaceSkipsLineBreaksAndReadsSpaceAsPlus) {
  const Base64Options form{.form_whitespace = true};
  EXPECT_EQ(Base64Decode("Pj4 Pz8/", form), ">>>???");
  EXPECT_EQ(Base64Decode("aGVs\r\nbG8=\n", form), "hello");
  EXPECT_FALSE(Base64Decode("aG== VsbG8", form));  // data after padding, still
}

TEST(Strings, ConstantTimeEqualsIsPlainEquality) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("abcd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  // Callers that must refuse an empty credential say so themselves.
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(Strings, RedactUrlMasksPasswords) {
  EXPECT_EQ(RedactUrl("postgres://u:secret@h/db"), "postgres://u:***@h/db");
  EXPECT_EQ(RedactUrl("host=h password=secret dbname=x"), "host=h password=*** dbname=x");
  EXPECT_EQ(RedactUrl("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
}

}  // namespace
}  // namespace sluice
