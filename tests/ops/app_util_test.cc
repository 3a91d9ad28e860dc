// Small pure helpers of src/app used by serve and the CLI.
#include <gtest/gtest.h>

#include <regex>

#include "app/logging.h"
#include "app/replica.h"

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
  EXPECT_TRUE(std::regex_match(id, std::regex(".+-[0-9]+-[0-9a-f]{4}"))) << id;
}

}  // namespace
}  // namespace sluice
