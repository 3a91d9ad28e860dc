#include "common/http_status.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

using D = HttpDialect;

TEST(HttpStatusTable, HasOneRowPerCodeInEnumOrder) {
  const auto table = HttpStatusTable();
  ASSERT_EQ(table.size(), static_cast<size_t>(Code::kInternal) + 1);
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(table[i].code), i);
    for (int status : table[i].status) {
      EXPECT_GE(status, 200) << CodeName(table[i].code);
      EXPECT_LT(status, 600) << CodeName(table[i].code);
    }
  }
}

TEST(HttpStatusTable, DefaultDialectMapsEveryCode) {
  EXPECT_EQ(HttpStatusFor(Code::kOk), 200);
  EXPECT_EQ(HttpStatusFor(Code::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(Code::kTooLarge), 413);
  EXPECT_EQ(HttpStatusFor(Code::kUnauthorized), 401);
  EXPECT_EQ(HttpStatusFor(Code::kForbidden), 403);
  EXPECT_EQ(HttpStatusFor(Code::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(Code::kBusy), 503);
  EXPECT_EQ(HttpStatusFor(Code::kLeaseLost), 409);
  EXPECT_EQ(HttpStatusFor(Code::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(Code::kIoError), 500);
  EXPECT_EQ(HttpStatusFor(Code::kInternal), 500);
}

// docs/sdks.md, "Answers, and why": what each SDK gets for backpressure, an
// outage and a bad key.
TEST(HttpStatusTable, SdkDialectsAnswerBackpressureWith429AndKeepTheRest) {
  for (D d : {D::kSegment, D::kAmplitude, D::kPostHog, D::kMixpanel}) {
    EXPECT_EQ(HttpStatusFor(Code::kBusy, d), 429);
    EXPECT_EQ(HttpStatusFor(Code::kUnavailable, d), 503);
    EXPECT_EQ(HttpStatusFor(Code::kOk, d), 200);
    EXPECT_EQ(HttpStatusFor(Code::kInvalidArgument, d), 400);
    EXPECT_EQ(HttpStatusFor(Code::kTooLarge, d), 413);
  }
  EXPECT_EQ(HttpStatusFor(Code::kUnauthorized, D::kSegment), 401);
  EXPECT_EQ(HttpStatusFor(Code::kUnauthorized, D::kAmplitude), 400);
  EXPECT_EQ(HttpStatusFor(Code::kUnauthorized, D::kPostHog), 401);
  EXPECT_EQ(HttpStatusFor(Code::kUnauthorized, D::kMixpanel), 401);
}

TEST(HttpStatusTable, OnlyBusyAndUnavailableAskToRetryLater) {
  for (const HttpStatusRow& row : HttpStatusTable()) {
    EXPECT_EQ(HttpRetryLater(row.code), row.code == Code::kBusy || row.code == Code::kUnavailable)
        << CodeName(row.code);
  }
}

TEST(HttpStatusTable, OutOfRangeCodeAnswersAsInternal) {
  EXPECT_EQ(HttpStatusFor(static_cast<Code>(999)), 500);
  EXPECT_FALSE(HttpRetryLater(static_cast<Code>(999)));
}

}  // namespace
}  // namespace sluice
