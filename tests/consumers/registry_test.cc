// MakeConsumers, EventFilter and FilteredConsumer.
#include "consumers/registry/registry.h"

#include <gtest/gtest.h>

#include <deque>

#include "common/event.h"
#include "consumers/api/filter.h"
#include "testing/decoded.h"
#include "testkit/flaky_consumer.h"

namespace sluice {
namespace {

ConsumerConfig Cfg(const std::string& type, const std::string& name = "", int bit = -1) {
  ConsumerConfig c;
  c.type = type;
  c.name = name;
  c.bit = bit;
  return c;
}

TEST(Registry, DefaultIsUsersOnBit0AndCountersOnBit1) {
  Metrics m;
  auto r = MakeConsumers({}, &m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0]->name(), "users");
  EXPECT_EQ((*r)[0]->bit(), 1u);
  EXPECT_TRUE((*r)[0]->in_store());
  EXPECT_EQ((*r)[1]->name(), "counters");
  EXPECT_EQ((*r)[1]->bit(), 2u);
  EXPECT_TRUE((*r)[1]->in_store());
}

TEST(Registry, ExplicitBitOverridesDefault) {
  Metrics m;
  auto r = MakeConsumers({Cfg("users", "", 5), Cfg("counters")}, &m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0]->bit(), uint64_t{1} << 5);
  EXPECT_EQ((*r)[1]->bit(), 2u);
}

TEST(Registry, UnknownTypeIsInvalidArgument) {
  Metrics m;
  auto r = MakeConsumers({Cfg("nope")}, &m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nope"), std::string::npos);
}

TEST(Registry, ExternalConsumerWithoutBitIsRefused) {
  Metrics m;
  auto r = MakeConsumers({Cfg("users"), Cfg("test", "t")}, &m, kTestConsumerTypes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("bit"), std::string::npos);
}

TEST(Registry, DuplicateBitIsRefused) {
  Metrics m;
  auto r = MakeConsumers({Cfg("users"), Cfg("test", "t", 0)}, &m, kTestConsumerTypes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(Registry, DuplicateNameIsRefused) {
  Metrics m;
  auto r = MakeConsumers({Cfg("test", "t", 3), Cfg("test", "t", 4)}, &m, kTestConsumerTypes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(Registry, BitOutOfRangeIsRefused) {
  Metrics m;
  EXPECT_FALSE(MakeConsumers({Cfg("test", "t", 63)}, &m, kTestConsumerTypes).ok());
}

TEST(Registry, TestTypeParsesItsOptions) {
  Metrics m;
  ConsumerConfig c = Cfg("test", "sink", 7);
  c.options = {{"sleep_ms", "3"}, {"fail_first_n", "2"}, {"poison_event", "boom"},
               {"fail_rate", "0.25"}, {"hang_ms", "10"}};
  auto r = MakeConsumers({c}, &m, kTestConsumerTypes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE((*r)[0]->in_store());
  EXPECT_EQ((*r)[0]->bit(), uint64_t{1} << 7);
  auto o = ParseFlakyConsumerOptions(c.options);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->sleep_ms, 3);
  EXPECT_EQ(o->fail_first_n, 2);
  EXPECT_EQ(o->poison_event, "boom");
  EXPECT_DOUBLE_EQ(o->fail_rate, 0.25);
}

TEST(Registry, TestTypeRefusesUnknownOption) {
  Metrics m;
  ConsumerConfig c = Cfg("test", "sink", 7);
  c.options = {{"sleep", "3"}};
  auto r = MakeConsumers({c}, &m, kTestConsumerTypes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("sleep"), std::string::npos);
}

class Rows {
 public:
  void Add(const std::string& project, const std::string& name) {
    Event e;
    e.event = name;
    e.user_id = "u";
    e.time_ms = 1;
    ClaimedEvent c;
    c.seq = static_cast<int64_t>(rows_.size()) + 1;
    c.project = project;
    c.body = ToBody(e);
    rows_.push_back(std::move(c));
  }
  std::vector<DecodedEvent> ptrs() const {
    std::vector<const ClaimedEvent*> out;
    for (const ClaimedEvent& c : rows_) out.push_back(&c);
    return testing::Decoded(out);
  }

 private:
  std::deque<ClaimedEvent> rows_;
};

TEST(EventFilter, EmptyFilterMatchesEverything) {
  EventFilter f;
  EXPECT_TRUE(f.all());
  EXPECT_TRUE(f.Matches("any", "thing"));
}

TEST(EventFilter, MatchesByProjectAndEventName) {
  EventFilter f({"p1"}, {"signup", "purchase"});
  EXPECT_TRUE(f.Matches("p1", "signup"));
  EXPECT_FALSE(f.Matches("p2", "signup"));
  EXPECT_FALSE(f.Matches("p1", "open"));
  Rows rows;
  rows.Add("p1", "signup");
  rows.Add("p1", "open");
  rows.Add("p2", "purchase");
  rows.Add("p1", "purchase");
  auto kept = f.Apply(rows.ptrs());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].row->seq, 1);
  EXPECT_EQ(kept[1].row->seq, 4);
}

TEST(FilteredConsumer, HandsOnlyMatchingEventsAndSkipsEmptyDeliveries) {
  Metrics m;
  ConsumerConfig c = Cfg("test", "hook", 4);
  c.events = {"signup"};
  auto r = MakeConsumers({c}, &m, kTestConsumerTypes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto* filtered = dynamic_cast<FilteredConsumer*>((*r)[0].get());
  ASSERT_NE(filtered, nullptr);
  EXPECT_EQ(filtered->name(), "hook");
  EXPECT_EQ(filtered->bit(), uint64_t{1} << 4);
  auto* inner = dynamic_cast<FlakyConsumer*>(filtered->inner());
  ASSERT_NE(inner, nullptr);

  Rows rows;
  rows.Add("p", "open");
  rows.Add("p", "signup");
  rows.Add("p", "close");
  auto ptrs = rows.ptrs();
  Delivery d{.events = ptrs, .token = 1, .deadline_mono_ms = 0, .cancelled = nullptr};
  ASSERT_TRUE(filtered->Deliver(d).ok());
  EXPECT_EQ(inner->seen_seqs(), std::vector<int64_t>{2});

  std::vector<DecodedEvent> none_match = {ptrs[0], ptrs[2]};
  d.events = none_match;
  ASSERT_TRUE(filtered->Deliver(d).ok());
  EXPECT_EQ(inner->calls(), 1);  // nothing matched: the inner consumer was not called
}

TEST(FlakyConsumer, FailsFirstNThenSucceedsAndAlwaysFailsPoison) {
  FlakyConsumerOptions o;
  o.fail_first_n = 2;
  o.poison_event = "boom";
  FlakyConsumer f("f", 8, o);
  Rows rows;
  rows.Add("p", "ok");
  auto ok_only = rows.ptrs();
  rows.Add("p", "boom");
  auto with_poison = rows.ptrs();
  Delivery d{.events = ok_only, .token = 1, .deadline_mono_ms = 0, .cancelled = nullptr};
  EXPECT_FALSE(f.Deliver(d).ok());
  EXPECT_FALSE(f.Deliver(d).ok());
  EXPECT_TRUE(f.Deliver(d).ok());
  d.events = with_poison;
  EXPECT_FALSE(f.Deliver(d).ok());
  EXPECT_EQ(f.calls(), 4);
  EXPECT_EQ(f.failures(), 3);
  EXPECT_EQ(f.delivered(), 1);
}

}  // namespace
}  // namespace sluice
