// UsersConsumer::BuildEffects: one mergeable IdDelta per (project, id) of a batch.
#include <gtest/gtest.h>

#include <deque>
#include <tuple>
#include <vector>

#include "common/event.h"
#include "common/metrics.h"
#include "consumers/users/users_consumer.h"
#include "profile/profile.h"
#include "testing/decoded.h"

namespace sluice {
namespace {

class Batch {
 public:
  // Adds an event; `user` goes to user_id, or anonymous_id when `anon`.
  Batch& Add(int64_t seq, const std::string& project, const std::string& user,
             const std::string& name, int64_t time_ms, const std::string& set = "",
             const std::string& set_once = "", bool anon = false, const std::string& other_anon = "") {
    Event e;
    e.event = name;
    (anon ? e.anonymous_id : e.user_id) = user;
    if (!other_anon.empty()) e.anonymous_id = other_anon;
    e.time_ms = time_ms;
    e.set = set;
    e.set_once = set_once;
    ClaimedEvent c;
    c.seq = seq;
    c.project = project;
    c.insert_id = "i" + std::to_string(seq);
    c.body = ToBody(e);
    rows_.push_back(std::move(c));
    return *this;
  }
  Batch& AddRaw(int64_t seq, const std::string& body) {
    ClaimedEvent c;
    c.seq = seq;
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

Effects Build(const Batch& b, Counter* bad = nullptr) {
  UsersConsumer users("users", 1, bad);
  Effects out;
  users.BuildEffects(b.ptrs(), &out);
  return out;
}

TEST(UsersConsumer, GroupsByProjectAndUserSorted) {
  Batch b;
  b.Add(1, "p2", "u1", "a", 1000).Add(2, "p1", "u2", "a", 1000).Add(3, "p1", "u1", "b", 1000);
  b.Add(4, "p1", "u1", "a", 2000);
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 3u);
  EXPECT_EQ(out.users[0].project, "p1");
  EXPECT_EQ(out.users[0].id, "u1");
  EXPECT_EQ(out.users[0].state.events, 2);
  EXPECT_EQ(out.users[1].id, "u2");
  EXPECT_EQ(out.users[2].project, "p2");
  EXPECT_TRUE(out.counters.empty());
}

TEST(UsersConsumer, FirstAndLastSeenComeFromEventTimeNotArrival) {
  Batch b;
  b.Add(1, "p", "u", "a", 5000).Add(2, "p", "u", "a", 1000).Add(3, "p", "u", "a", 9000);
  b.Add(4, "p", "u", "a", 3000);
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(out.users[0].state.first_seen_ms, 1000);
  EXPECT_EQ(out.users[0].state.last_seen_ms, 9000);
  EXPECT_EQ(out.users[0].state.events, 4);
}

TEST(UsersConsumer, CountsEventsPerName) {
  Batch b;
  b.Add(1, "p", "u", "open", 1).Add(2, "p", "u", "click", 2).Add(3, "p", "u", "open", 3);
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(out.users[0].state.event_counts.at("open"), 2);
  EXPECT_EQ(out.users[0].state.event_counts.at("click"), 1);
  EXPECT_EQ(out.users[0].state.event_counts.size(), 2u);
}

TEST(UsersConsumer, SetLaterEventTimeWinsEvenWhenItArrivedFirst) {
  Batch b;
  // seq 1 is the newest event: its plan must win over the older seq 2.
  b.Add(1, "p", "u", "a", 2000, R"({"plan":"pro","a":1})");
  b.Add(2, "p", "u", "a", 1000, R"({"plan":"free","b":2})");
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(RenderProperties(out.users[0].state.properties), R"({"a":1,"b":2,"plan":"pro"})");
  EXPECT_EQ(out.users[0].state.properties.at("plan").last_write->key, (OpKey{2000, "i1"}));
}

TEST(UsersConsumer, SameTimeTieBrokenByInsertIdNotSeq) {
  Batch b;
  b.Add(7, "p", "u", "a", 1000, R"({"k":"seven"})");  // insert_id i7 > i3
  b.Add(3, "p", "u", "a", 1000, R"({"k":"three"})");
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(RenderProperties(out.users[0].state.properties), R"({"k":"seven"})");
}

TEST(UsersConsumer, SetOnceKeepsEarliestValue) {
  Batch b;
  b.Add(1, "p", "u", "a", 3000, "", R"({"src":"late","x":1})");
  b.Add(2, "p", "u", "a", 1000, "", R"({"src":"early"})");
  b.Add(3, "p", "u", "a", 2000, "", R"({"src":"middle","y":2})");
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(RenderProperties(out.users[0].state.properties), R"({"src":"early","x":1,"y":2})");
}

TEST(UsersConsumer, IdentifyLinksTheAnonymousIdToTheUser) {
  Batch b;
  b.Add(1, "p", "ann", "identify", 5000, "", "", /*anon=*/false, /*other_anon=*/"anon-1");
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 2u);
  EXPECT_EQ(out.users[0].id, "ann");  // the event's own id: counts, target of the link
  EXPECT_EQ(out.users[0].state.events, 1);
  EXPECT_TRUE(out.users[0].state.user_seen);
  EXPECT_TRUE(out.users[0].state.linked_to);
  EXPECT_EQ(out.users[1].id, "anon-1");  // the link's source, no events of its own
  EXPECT_EQ(out.users[1].state.events, 0);
  EXPECT_EQ(out.users[1].state.links.at("ann"), (OpKey{5000, "i1"}));
}

TEST(UsersConsumer, TheBatchOrderDoesNotChangeTheEffects) {
  Batch forward, backward;
  const std::vector<std::tuple<int64_t, std::string, int64_t, std::string>> rows = {
      {1, "u", 3000, R"({"k":1})"}, {2, "u", 1000, R"({"k":2})"}, {3, "v", 2000, R"({"k":3})"},
      {4, "u", 3000, R"({"k":4})"}};
  for (const auto& [seq, user, t, set] : rows) forward.Add(seq, "p", user, "a", t, set);
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    const auto& [seq, user, t, set] = *it;
    backward.Add(seq, "p", user, "a", t, set);
  }
  Effects f = Build(forward), r = Build(backward);
  ASSERT_EQ(f.users.size(), r.users.size());
  for (size_t i = 0; i < f.users.size(); ++i) {
    EXPECT_EQ(f.users[i].id, r.users[i].id);
    EXPECT_EQ(f.users[i].state, r.users[i].state) << f.users[i].id;
  }
}

TEST(UsersConsumer, AnonymousIdIsTheUserWhenNoUserId) {
  Batch b;
  b.Add(1, "p", "anon-1", "a", 1, "", "", /*anon=*/true);
  Effects out = Build(b);
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(out.users[0].id, "anon-1");
}

TEST(UsersConsumer, UnparsableBodiesAndEventsWithoutAUserAreSkipped) {
  Batch b;
  b.AddRaw(1, "not json").AddRaw(2, R"({"event":"x"})");  // second lacks time
  b.Add(3, "p", "u", "a", 1);
  b.AddRaw(4, R"({"event":"x","time":5})");  // parses, names no user
  Counter unattributed;
  Effects out = Build(b, &unattributed);
  EXPECT_EQ(unattributed.value(), 1);  // only the one without a user: the watcher counts the rest
  ASSERT_EQ(out.users.size(), 1u);
  EXPECT_EQ(out.users[0].state.events, 1);
}

TEST(UsersConsumer, EmptyBatchAddsNothing) {
  Batch b;
  Effects out = Build(b);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace sluice
