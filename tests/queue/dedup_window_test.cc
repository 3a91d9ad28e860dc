// The dedup window's bucket arithmetic (queue/dedup_window.h), without a store.
#include "queue/dedup_window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace sluice {
namespace {

constexpr int64_t kWindow = 1000;

TEST(DedupWindowTest, WidthIsWindowOverBucketsAndAtLeastOneMs) {
  EXPECT_EQ(DedupBucketWidthMs(24LL * 3600 * 1000, 4), 6LL * 3600 * 1000);
  EXPECT_EQ(DedupBucketWidthMs(1000, 1), 1000);
  EXPECT_EQ(DedupBucketWidthMs(10, 64), 1);
}

TEST(DedupWindowTest, ValidationRefusesBucketCountsOutsideOneTo64AndEmptyWindows) {
  EXPECT_TRUE(ValidateDedupWindow(1000, 1).ok());
  EXPECT_TRUE(ValidateDedupWindow(1000, 64).ok());
  EXPECT_EQ(ValidateDedupWindow(1000, 0).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateDedupWindow(1000, 65).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateDedupWindow(0, 4).code(), Code::kInvalidArgument);
}

TEST(DedupWindowTest, EmptyRegistryGetsBucketOne) {
  DedupPlan p = PlanDedupMaintenance({}, 5000, kWindow, 4);
  EXPECT_TRUE(p.create);
  EXPECT_EQ(p.new_id, 1);
  EXPECT_TRUE(p.drop.empty());
}

TEST(DedupWindowTest, NewBucketIsDueExactlyOneWidthAfterTheNewestStarted) {
  const std::vector<DedupBucket> live = {{3, 10000}};
  EXPECT_FALSE(PlanDedupMaintenance(live, 10249, kWindow, 4).create);
  DedupPlan p = PlanDedupMaintenance(live, 10250, kWindow, 4);
  EXPECT_TRUE(p.create);
  EXPECT_EQ(p.new_id, 4);
  // A clock behind the newest start creates nothing.
  EXPECT_FALSE(PlanDedupMaintenance(live, 9000, kWindow, 4).create);
}

TEST(DedupWindowTest, BucketIsDroppedOnlyWhenItsSuccessorStartedAWindowAgo) {
  const std::vector<DedupBucket> live = {{1, 0}, {2, 300}, {3, 600}};
  // Bucket 1's own start is a window old at 1000, but it took entries until
  // 300 (its successor's start): not before 1300.
  EXPECT_TRUE(PlanDedupMaintenance(live, 1000, kWindow, 4).drop.empty());
  EXPECT_TRUE(PlanDedupMaintenance(live, 1299, kWindow, 4).drop.empty());
  EXPECT_EQ(PlanDedupMaintenance(live, 1300, kWindow, 4).drop, std::vector<int64_t>{1});
  EXPECT_EQ(PlanDedupMaintenance(live, 1600, kWindow, 4).drop, (std::vector<int64_t>{1, 2}));
}

TEST(DedupWindowTest, NewestBucketIsNeverDropped) {
  const std::vector<DedupBucket> live = {{7, 0}};
  DedupPlan p = PlanDedupMaintenance(live, 1'000'000, kWindow, 4);
  EXPECT_TRUE(p.drop.empty());
  EXPECT_TRUE(p.create);
  EXPECT_EQ(p.new_id, 8);
}

TEST(DedupWindowTest, SteadyStateKeepsAboutBucketsPlusOneLive) {
  // Rotating and dropping every 10 ms of a 1 s window with 4 buckets: the
  // live count settles at buckets + 1 (the window plus the filling bucket).
  std::vector<DedupBucket> live;
  size_t most = 0;
  for (int64_t now = 0; now <= 10 * kWindow; now += 10) {
    DedupPlan p = PlanDedupMaintenance(live, now, kWindow, 4);
    std::erase_if(live, [&](const DedupBucket& b) {
      return std::find(p.drop.begin(), p.drop.end(), b.id) != p.drop.end();
    });
    if (p.create) live.push_back({p.new_id, now});
    if (now > 2 * kWindow) most = std::max(most, live.size());
  }
  EXPECT_EQ(most, 5u);
}

}  // namespace
}  // namespace sluice
