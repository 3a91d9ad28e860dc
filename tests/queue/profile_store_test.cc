// Per-person profiles on both stores are a function of the SET of events
// (docs/users.md): random event sets with identifies, aliases (some refused)
// and conflicting $set / $set_once / $unset / $add at colliding times go
// through the users consumer's effects and Complete in many random orders
// and batchings, on real SQLite and the real PostgreSQL of the CTest
// fixture; every id's GetUser JSON must be byte-identical across orders, across
// the two stores, and equal to the profile library's model of the whole set.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "consumers/users/users_consumer.h"
#include "ops/user_json.h"
#include "queue/store.h"
#include "testing/decoded.h"
#include "testing/profile_events.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using Profiles = std::map<std::string, std::string>;  // id -> GetUser JSON

// Enqueues `events` in a random order in random chunks, then claims random
// batch sizes and completes each through the users consumer's effects,
// interleaving enqueues and claims. Returns every id's GetUser JSON.
Profiles ApplyInRandomOrder(Store& store, std::vector<Event> events, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::shuffle(events.begin(), events.end(), rng);
  const UsersConsumer users("users", 1);
  size_t next = 0;
  int64_t done = 0;
  while (done < static_cast<int64_t>(events.size())) {
    if (next < events.size() && (rng() % 3 != 0 || done == static_cast<int64_t>(next))) {
      const size_t n = std::min<size_t>(events.size() - next, 1 + rng() % 40);
      std::vector<NewEvent> chunk;
      for (size_t i = next; i < next + n; ++i) {
        chunk.push_back(NewEvent{events[i].project, events[i].insert_id, ToBody(events[i])});
      }
      next += n;
      EnqueueBatch batch{chunk};
      auto r = store.Enqueue(std::span<const EnqueueBatch>(&batch, 1));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return {};
      continue;
    }
    auto lease = store.Claim(ClaimRequest{"r/0", static_cast<int32_t>(1 + rng() % 50), 60000});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    if (!lease.ok()) return {};
    if (lease->events.empty()) continue;
    CompleteRequest req{lease->token, lease->events, 1, 0, {}};
    InStoreEffects& part = req.in_store.emplace_back();
    part.bit = 1;
    users.BuildEffects(testing::Decoded(std::span<const ClaimedEvent>(lease->events)),
                       &part.effects);
    auto c = store.Complete(req);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (!c.ok()) return {};
    EXPECT_FALSE(c->stale);
    done += static_cast<int64_t>(c->deleted.size());
  }
  Profiles out;
  for (const std::string& id : testing::IdsOf(events)) {
    Result<UserProfile> p = store.GetUser("p", id);
    EXPECT_TRUE(p.ok()) << id << ": " << p.status().ToString();
    out[id] = p.ok() ? UserProfileJson(*p) : p.status().ToString();
  }
  return out;
}

// The first id whose profile differs, "" when none.
std::string FirstDifference(const Profiles& want, const Profiles& got) {
  if (want.size() != got.size()) return "different id sets";
  for (const auto& [id, json] : want) {
    auto it = got.find(id);
    if (it == got.end()) return id + " missing";
    if (it->second != json) return id + ":\n  want " + json + "\n  got  " + it->second;
  }
  return "";
}

TEST(ProfileStoreTest, ProfilesAreByteIdenticalForEveryOrderBatchingAndStore) {
  constexpr int kSets = 3;
  constexpr int kSqliteOrders = 5;
  constexpr int kPostgresOrders = 3;
  for (int set = 0; set < kSets; ++set) {
    const uint64_t seed = 1000 + static_cast<uint64_t>(set);
    SCOPED_TRACE("event set seed " + std::to_string(seed));
    const std::vector<Event> events = testing::RandomProfileEvents(seed, "p");
    const Profiles model = testing::ModelProfiles("p", events);
    // The set exercises what the test is about: merged ids and refused merges.
    size_t merged = 0, refused = 0;
    for (const auto& [id, json] : model) {
      merged += json.find("\"user_id\":\"" + id + "\"") == std::string::npos ? 1 : 0;
      refused += json.find("\"merges_refused\":[{") != std::string::npos ? 1 : 0;
    }
    EXPECT_GT(merged, 0u);
    EXPECT_GT(refused, 0u);
    for (const char* kind : {"sqlite", "postgres"}) {
      const int orders = std::string(kind) == "sqlite" ? kSqliteOrders : kPostgresOrders;
      for (int order = 0; order < orders; ++order) {
        SCOPED_TRACE(std::string(kind) + " order " + std::to_string(order));
        testing::TempDir dir;
        StorePtr store = testing::OpenTestStore(kind, dir);
        ASSERT_NE(store, nullptr);
        const Profiles got = ApplyInRandomOrder(*store, events, seed * 100 + order);
        const std::string diff = FirstDifference(model, got);
        ASSERT_EQ(diff, "");
      }
    }
  }
}

TEST(ProfileStoreTest, MergeMetricsCountAppliedAndRefusedLinksOnBothStores) {
  // u1 <- a1 (identify), a2 -> u1 then a2 -> u2 (a2 stays with u1),
  // u2 -> u1 (alias) while u2 is a link target: refused.
  std::vector<Event> events(4);
  auto ev = [](Event* e, const char* type, const char* user, const char* anon, const char* previous,
               int64_t t, const char* id) {
    e->project = "p";
    e->event = e->type = type;
    e->user_id = user;
    e->anonymous_id = anon;
    e->previous_id = previous;
    e->time_ms = t;
    e->insert_id = id;
  };
  ev(&events[0], "identify", "u1", "a1", "", 1000, "e0");
  ev(&events[1], "identify", "u1", "a2", "", 2000, "e1");
  ev(&events[2], "identify", "u2", "a2", "", 3000, "e2");
  ev(&events[3], "alias", "u1", "", "u2", 4000, "e3");
  for (const char* kind : {"sqlite", "postgres"}) {
    SCOPED_TRACE(kind);
    testing::TempDir dir;
    StorePtr store = testing::OpenTestStore(kind, dir);
    ASSERT_NE(store, nullptr);
    const Profiles got = ApplyInRandomOrder(*store, events, 7);
    EXPECT_EQ(FirstDifference(testing::ModelProfiles("p", events), got), "");
    Result<QueueStats> stats = store->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->identity_links_applied, 2);  // a1 and a2 joined u1
    EXPECT_EQ(stats->identity_links_refused, 1);  // u2 -> u1
    Result<UserProfile> u2 = store->GetUser("p", "u2");
    ASSERT_TRUE(u2.ok());
    EXPECT_EQ(u2->user_id, "u2");
    EXPECT_EQ(u2->ids, std::vector<std::string>{"u2"});
    ASSERT_EQ(u2->merges_refused.size(), 1u);
    EXPECT_EQ(u2->merges_refused[0].from, "u2");
    EXPECT_EQ(u2->merges_refused[0].to, "u1");
    Result<UserProfile> a2 = store->GetUser("p", "a2");
    ASSERT_TRUE(a2.ok());
    EXPECT_EQ(a2->user_id, "u1");
    EXPECT_EQ(a2->ids, (std::vector<std::string>{"a1", "a2", "u1"}));
    EXPECT_EQ(a2->merges_refused.size(), 1u);  // shown on both persons
  }
}

// A `key = "user"` job schedules the person (docs/jobs.md): the job's delta
// carries each event's distinct id and the store maps it to the id's person
// from the users rows of the same transaction, so an anonymous id's events
// and its person's are one run, whether the link is in an earlier batch or
// in the same one (the jobs part listed before the users part: the store
// applies jobs last). An id without a stored link keys on itself.
TEST(ProfileStoreTest, UserKeyedJobsScheduleEachIdsPersonOnBothStores) {
  auto ev = [](const char* user, const char* anon, int64_t t, const char* id) {
    Event e;
    e.project = "p";
    e.event = e.type = (user[0] != 0 && anon[0] != 0) ? "identify" : "track";
    e.user_id = user;
    e.anonymous_id = anon;
    e.time_ms = t;
    e.insert_id = id;
    return e;
  };
  const UsersConsumer users("users", 1);
  constexpr uint64_t kJobBit = 2;
  // One batch through users (bit 1) and a user-keyed job (bit 2).
  auto complete = [&](Store& store, const std::vector<Event>& events) {
    std::vector<NewEvent> rows;
    for (const Event& e : events) rows.push_back(NewEvent{e.project, e.insert_id, ToBody(e)});
    EnqueueBatch batch{rows};
    ASSERT_TRUE(store.Enqueue(std::span<const EnqueueBatch>(&batch, 1)).ok());
    auto lease = store.Claim(ClaimRequest{"r/0", 100, 60000});
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    ASSERT_EQ(lease->events.size(), events.size());
    CompleteRequest req{lease->token, lease->events, 1 | kJobBit, 0, {}};
    InStoreEffects& job = req.in_store.emplace_back();
    job.bit = kJobBit;
    for (const Event& e : events) {
      JobDelta d{"rescore", "p", e.distinct_id(), 1, e.time_ms, e.time_ms, 0, 0};
      d.key_is_distinct_id = true;
      job.effects.jobs.push_back(d);
    }
    InStoreEffects& u = req.in_store.emplace_back();
    u.bit = 1;
    users.BuildEffects(testing::Decoded(std::span<const ClaimedEvent>(lease->events)),
                       &u.effects);
    auto c = store.Complete(req);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_FALSE(c->stale);
  };
  auto keys = [](Store& store) {
    std::map<std::string, int64_t> out;  // key -> pending events
    auto rows = store.ListJobs(JobFilter{});
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    if (rows.ok()) {
      for (const JobRow& r : *rows) out[r.ref.key] = r.pending_events;
    }
    return out;
  };
  for (const char* kind : {"sqlite", "postgres"}) {
    SCOPED_TRACE(kind);
    testing::TempDir dir;
    StorePtr store = testing::OpenTestStore(kind, dir);
    ASSERT_NE(store, nullptr);
    // One batch: a1 browses, identifies as ann (the link), browses again; b1
    // is an anonymous id nobody has linked.
    complete(*store, {ev("", "a1", 1000, "e0"), ev("ann", "a1", 2000, "e1"),
                      ev("", "a1", 3000, "e2"), ev("", "b1", 3000, "e3")});
    EXPECT_EQ(keys(*store), (std::map<std::string, int64_t>{{"ann", 3}, {"b1", 1}}));
    // Later batches: a1 again (the link is stored) and ann herself.
    complete(*store, {ev("", "a1", 4000, "e4")});
    complete(*store, {ev("ann", "", 5000, "e5")});
    EXPECT_EQ(keys(*store), (std::map<std::string, int64_t>{{"ann", 5}, {"b1", 1}}));
  }
}

}  // namespace
}  // namespace sluice
