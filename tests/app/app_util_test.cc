// Small pure helpers of src/app used by serve and the CLI.
#include <gtest/gtest.h>


#include "app/logging.h"
#include "app/replica.h"
#include "common/strings.h"

namespace sluice {
namespace {

TEST(RedactUrl, HidesPasswordsAndKeepsTheRest) {
  EXPECT_EQ(RedactUrl("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
  EXPECT_EQ(RedactUrl("postgres://db/x?user=u&password=secret&sslmode=require"),
            "postgres://db/x?user=u&password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("sqlite:./sluice-data/sluice.db"), "sqlite:./sluice-data/sluice.db");
  EXPECT_EQ(RedactUrl("postgres://u@db/x"), "postgres://u@db/x");
}

TEST(GenerateReplicaId, IsHostPidAndFourHexDigits) {
  const std::string id = GenerateReplicaId();
  // "<host>-<pid>-<4 hex>" (no std::regex: GCC 12 -O1 warns inside it).
  const size_t dash2 = id.rfind('-');
  ASSERT_NE(dash2, std::string::npos) << id;
  const size_t dash1 = id.rfind('-', dash2 - 1);
  ASSERT_NE(dash1, std::string::npos) << id;
  EXPECT_GT(dash1, 0u) << id;
  const std::string pid = id.substr(dash1 + 1, dash2 - dash1 - 1);
  const std::string hex = id.substr(dash2 + 1);
  EXPECT_FALSE(pid.empty()) << id;
  EXPECT_EQ(pid.find_first_not_of("0123456789"), std::string::npos) << id;
  EXPECT_EQ(hex.size(), 4u) << id;
  EXPECT_EQ(hex.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
}

}  // namespace
}  // namespace sluice
