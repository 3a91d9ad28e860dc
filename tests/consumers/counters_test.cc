// CountersConsumer::BuildEffects: pure bucketing of one batch.
#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "common/event.h"
#include "consumers/counters/counters_consumer.h"
#include "testing/decoded.h"

namespace sluice {
namespace {

constexpr int64_t kMin = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 86'400'000;
// 2024-05-01T00:00:00Z
constexpr int64_t kT0 = 1714521600000;

class Batch {
 public:
  Batch& Add(const std::string& project, const std::string& user, const std::string& name,
             int64_t time_ms) {
    Event e;
    e.event = name;
    e.user_id = user;
    e.time_ms = time_ms;
    ClaimedEvent c;
    c.seq = static_cast<int64_t>(rows_.size()) + 1;
    c.project = project;
    c.body = ToBody(e);
    rows_.push_back(std::move(c));
    return *this;
  }
  Batch& AddRaw(const std::string& body) {
    ClaimedEvent c;
    c.seq = static_cast<int64_t>(rows_.size()) + 1;
    c.project = "p";
    c.body = body;
    rows_.push_back(std::move(c));
    return *this;
  }
  std::vector<DecodedEvent> ptrs() const {
    std::vector<const ClaimedEvent*> out;
    for (const ClaimedEvent& c : rows_) out.push_back(&c);
    return testing::Decoded(out);
  }

 private:
  std::deque<ClaimedEvent> rows_;
};

Effects Build(const Batch& b) {
  CountersConsumer counters("counters", 2);
  Effects out;
  counters.BuildEffects(b.ptrs(), &out);
  return out;
}

const CounterDelta* Find(const Effects& e, const std::string& project, const std::string& event,
                         Granularity g, int64_t bucket) {
  for (const CounterDelta& d : e.counters) {
    if (d.project == project && d.event == event && d.granularity == g && d.bucket_ms == bucket) {
      return &d;
    }
  }
  return nullptr;
}

TEST(CountersConsumer, OneEventLandsInMinuteHourAndDayBuckets) {
  Batch b;
  b.Add("p", "u", "open", kT0 + 2 * kHour + 5 * kMin + 30'000);
  Effects out = Build(b);
  ASSERT_EQ(out.counters.size(), 3u);
  const CounterDelta* m = Find(out, "p", "open", Granularity::kMinute, kT0 + 2 * kHour + 5 * kMin);
  const CounterDelta* h = Find(out, "p", "open", Granularity::kHour, kT0 + 2 * kHour);
  const CounterDelta* d = Find(out, "p", "open", Granularity::kDay, kT0);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(h, nullptr);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(m->count, 1);
  EXPECT_EQ(h->users, std::vector<std::string>{"u"});
  EXPECT_TRUE(out.users.empty());
}

TEST(CountersConsumer, CountsAndDistinctUsersPerBucket) {
  Batch b;
  b.Add("p", "u2", "open", kT0 + 1000).Add("p", "u1", "open", kT0 + 2000);
  b.Add("p", "u2", "open", kT0 + 3000).Add("p", "u1", "open", kT0 + kMin + 1);
  Effects out = Build(b);
  const CounterDelta* m0 = Find(out, "p", "open", Granularity::kMinute, kT0);
  const CounterDelta* m1 = Find(out, "p", "open", Granularity::kMinute, kT0 + kMin);
  const CounterDelta* h = Find(out, "p", "open", Granularity::kHour, kT0);
  ASSERT_NE(m0, nullptr);
  ASSERT_NE(m1, nullptr);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(m0->count, 3);
  EXPECT_EQ(m0->users, (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(m1->count, 1);
  EXPECT_EQ(m1->users, std::vector<std::string>{"u1"});
  EXPECT_EQ(h->count, 4);
  EXPECT_EQ(h->users, (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(out.counters.size(), 4u);  // 2 minutes + 1 hour + 1 day
}

TEST(CountersConsumer, ProjectsAndEventNamesAreSeparate) {
  Batch b;
  b.Add("p1", "u", "open", kT0).Add("p2", "u", "open", kT0).Add("p1", "u", "close", kT0);
  Effects out = Build(b);
  EXPECT_EQ(out.counters.size(), 9u);
  for (const CounterDelta& d : out.counters) EXPECT_EQ(d.count, 1);
  ASSERT_NE(Find(out, "p2", "open", Granularity::kDay, kT0), nullptr);
  ASSERT_NE(Find(out, "p1", "close", Granularity::kDay, kT0), nullptr);
}

TEST(CountersConsumer, BucketsUseEventTimeAcrossDays) {
  Batch b;
  b.Add("p", "u", "open", kT0 - 1).Add("p", "u", "open", kT0);
  Effects out = Build(b);
  const CounterDelta* before = Find(out, "p", "open", Granularity::kDay, kT0 - kDay);
  const CounterDelta* after = Find(out, "p", "open", Granularity::kDay, kT0);
  ASSERT_NE(before, nullptr);
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(before->count, 1);
  EXPECT_EQ(after->count, 1);
}

TEST(CountersConsumer, UnparsableBodiesAreSkipped) {
  Batch b;
  b.AddRaw("{").Add("p", "u", "open", kT0);
  Effects out = Build(b);
  EXPECT_EQ(out.counters.size(), 3u);
}

}  // namespace
}  // namespace sluice
