// Profiles as mergeable state: semantics by example, then the property that
// matters — the same set of events gives the same profiles, byte for byte,
// whatever the order and batching.
#include "profile/profile.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>

namespace sluice {
namespace {

TEST(Decimal, ParsesAndPrintsExactly) {
  auto p = [](const char* s) { return Decimal::Parse(s)->ToJson(); };
  EXPECT_EQ(p("12"), "12");
  EXPECT_EQ(p("-0.5"), "-0.5");
  EXPECT_EQ(p("1e3"), "1000");
  EXPECT_EQ(p("2.5E-1"), "0.25");
  EXPECT_EQ(p("0.000000001"), "0.000000001");
  EXPECT_EQ(p("-0"), "0");
  EXPECT_EQ(p("0.0000000005"), "0");            // half-even: to 0
  EXPECT_EQ(p("0.0000000015"), "0.000000002");  // half-even: to 2
  EXPECT_EQ(p("0.00000000151"), "0.000000002");
  EXPECT_FALSE(Decimal::Parse("abc"));
  EXPECT_FALSE(Decimal::Parse("1e40"));
  EXPECT_FALSE(Decimal::Parse("1."));
  EXPECT_FALSE(Decimal::Parse(""));
}

TEST(Decimal, SumsDoNotDependOnOrder) {
  // 0.1 + 0.2 + 0.3 in doubles depends on the order; here it is exact.
  Decimal a = *Decimal::Parse("0.1"), b = *Decimal::Parse("0.2"), c = *Decimal::Parse("0.3");
  Decimal x = a;
  x += b;
  x += c;
  Decimal y = c;
  y += b;
  y += a;
  EXPECT_EQ(x, y);
  EXPECT_EQ(x.ToJson(), "0.6");
}

Event Ev(const std::string& name, int64_t t, const std::string& user, const std::string& anon = "") {
  Event e;
  e.event = name;
  e.time_ms = t;
  e.user_id = user;
  e.anonymous_id = anon;
  return e;
}

// The rendered properties of `id` after the events, each with its insert_id.
std::string Props(const std::vector<std::pair<std::string, Event>>& events,
                  const std::string& id = "u") {
  ProfileBatch batch;
  for (const auto& [insert_id, e] : events) AddEvent("p", insert_id, e, &batch);
  return RenderProperties(batch[{"p", id}].properties);
}

TEST(Properties, SetIsLastWriterWinsByEventTimeNotArrival) {
  // The issue's example: a 12:00 $set arrives before a 10:00 one.
  Event late = Ev("x", 12 * 3600'000, "u");
  late.set = R"({"plan":"new"})";
  Event early = Ev("x", 10 * 3600'000, "u");
  early.set = R"({"plan":"old"})";
  EXPECT_EQ(Props({{"a", late}, {"b", early}}), R"({"plan":"new"})");
  EXPECT_EQ(Props({{"b", early}, {"a", late}}), R"({"plan":"new"})");
}

TEST(Properties, EqualTimesAreOrderedByInsertId) {
  Event one = Ev("x", 1000, "u");
  one.set = R"({"k":1})";
  Event two = Ev("x", 1000, "u");
  two.set = R"({"k":2})";
  EXPECT_EQ(Props({{"id-a", one}, {"id-b", two}}), R"({"k":2})");
  EXPECT_EQ(Props({{"id-b", two}, {"id-a", one}}), R"({"k":2})");
  EXPECT_EQ(Props({{"id-b", one}, {"id-a", two}}), R"({"k":1})");
}

TEST(Properties, SetOnceKeepsTheEarliestAndYieldsToSet) {
  Event a = Ev("x", 2000, "u");
  a.set_once = R"({"src":"ad"})";
  Event b = Ev("x", 1000, "u");
  b.set_once = R"({"src":"seo"})";
  EXPECT_EQ(Props({{"a", a}, {"b", b}}), R"({"src":"seo"})");
  Event c = Ev("x", 500, "u");
  c.set = R"({"src":"direct"})";
  EXPECT_EQ(Props({{"a", a}, {"b", b}, {"c", c}}), R"({"src":"direct"})");
}

TEST(Properties, UnsetIsATimestampedRemoval) {
  Event set = Ev("x", 1000, "u");
  set.set = R"({"k":1,"j":2})";
  Event unset = Ev("x", 2000, "u");
  unset.unset = R"(["k"])";
  Event older_unset = Ev("x", 500, "u");
  older_unset.unset = R"(["j"])";
  EXPECT_EQ(Props({{"u1", unset}, {"s", set}, {"u2", older_unset}}), R"({"j":2})");
  // A $set_once after the removal sets it again; one before it does not.
  Event once_after = Ev("x", 3000, "u");
  once_after.set_once = R"({"k":"again"})";
  EXPECT_EQ(Props({{"s", set}, {"u1", unset}, {"o", once_after}}), R"({"j":2,"k":"again"})");
  Event once_before = Ev("x", 100, "u");
  once_before.set_once = R"({"k":"first"})";
  EXPECT_EQ(Props({{"s", set}, {"u1", unset}, {"o", once_before}}), R"({"j":2})");
}

TEST(Properties, AddSumsAndStartsFromTheBase) {
  Event base = Ev("x", 1000, "u");
  base.set = R"({"n":10})";
  Event inc1 = Ev("x", 2000, "u");
  inc1.add = R"({"n":2,"m":0.25})";
  Event inc2 = Ev("x", 3000, "u");
  inc2.add = R"({"n":-1,"m":0.5})";
  EXPECT_EQ(Props({{"c", inc2}, {"a", base}, {"b", inc1}}), R"({"m":0.75,"n":11})");
  // A $set after every increment resets the value.
  Event reset = Ev("x", 4000, "u");
  reset.set = R"({"n":0})";
  EXPECT_EQ(Props({{"c", inc2}, {"a", base}, {"b", inc1}, {"d", reset}}), R"({"m":0.75,"n":0})");
  // A non-number base yields to the increments.
  Event text = Ev("x", 500, "u");
  text.set = R"({"m":"many"})";
  EXPECT_EQ(Props({{"t", text}, {"b", inc1}}), R"({"m":0.25,"n":2})");
}

TEST(StoredForm, RoundTripsAndReadsTheOldPlainObjects) {
  Event a = Ev("x", 1000, "u");
  a.set = R"({"plan":"pro","nested":{"a":[1,2]}})";
  a.set_once = R"({"src":"ad"})";
  a.add = R"({"n":1.5})";
  Event b = Ev("x", 2000, "u");
  b.unset = R"(["plan"])";
  ProfileBatch batch;
  AddEvent("p", "a", a, &batch);
  AddEvent("p", "b", b, &batch);
  const PropertyMap& props = batch[{"p", "u"}].properties;
  const std::string stored = SerializeProperties(props);
  PropertyMap back;
  ASSERT_TRUE(ParseProperties(stored, OpKey{}, &back).ok());
  EXPECT_EQ(back, props) << stored;
  EXPECT_EQ(SerializeProperties(back), stored);

  PropertyMap legacy;
  ASSERT_TRUE(ParseProperties(R"({"plan":"old","o":{"x":1}})", OpKey{777, ""}, &legacy).ok());
  EXPECT_EQ(RenderProperties(legacy), R"({"o":{"x":1},"plan":"old"})");
  EXPECT_EQ(legacy["plan"].last_write->key.time_ms, 777);
}

// ---- identity ----

// The person of every id after `events`, assembled the way a store does.
std::map<std::string, Person> Persons(const ProfileBatch& batch) {
  std::vector<IdRow> rows;
  for (const auto& [key, s] : batch) rows.push_back({key.second, s});
  std::map<std::string, Person> out;
  for (const IdRow& r : rows) {
    const std::string root = PersonOf(r.id, r.state);
    out[r.id] = AssemblePerson(root, rows);
  }
  return out;
}

TEST(Identity, AnonymousHistoryJoinsThePersonBeforeAndAfterTheLink) {
  ProfileBatch batch;
  AddEvent("p", "1", Ev("view", 1000, "", "anon1"), &batch);
  AddEvent("p", "2", Ev("identify", 2000, "ann", "anon1"), &batch);
  AddEvent("p", "3", Ev("view", 3000, "", "anon1"), &batch);  // after the link, still anonymous
  AddEvent("p", "4", Ev("buy", 4000, "ann"), &batch);
  auto persons = Persons(batch);
  const Person& ann = persons["anon1"];
  EXPECT_EQ(ann.root, "ann");
  EXPECT_EQ(ann.ids, (std::vector<std::string>{"ann", "anon1"}));
  EXPECT_EQ(ann.merged.events, 4);
  EXPECT_EQ(ann.merged.event_counts.at("view"), 2);
  EXPECT_EQ(ann.merged.first_seen_ms, 1000);
  EXPECT_TRUE(ann.refused.empty());
  EXPECT_EQ(persons["ann"].merged.events, 4);
}

TEST(Identity, AnAnonymousIdJoinsItsEarliestLinkOnly) {
  ProfileBatch batch;
  AddEvent("p", "b", Ev("login", 2000, "bob", "device"), &batch);
  AddEvent("p", "a", Ev("login", 1000, "ann", "device"), &batch);
  auto persons = Persons(batch);
  EXPECT_EQ(persons["device"].root, "ann");
  EXPECT_EQ(persons["bob"].ids, (std::vector<std::string>{"bob"}));
}

TEST(Identity, TwoRootsAreNeverMergedAndTheRequestIsVisibleOnBoth) {
  ProfileBatch batch;
  AddEvent("p", "1", Ev("identify", 1000, "ann", "a1"), &batch);  // ann: a link target
  AddEvent("p", "2", Ev("identify", 1000, "bob", "b1"), &batch);  // bob: a link target
  Event alias = Ev("alias", 2000, "bob");
  alias.type = "alias";
  alias.previous_id = "ann";
  AddEvent("p", "3", alias, &batch);
  auto persons = Persons(batch);
  ASSERT_EQ(persons["ann"].refused.size(), 1u);
  EXPECT_EQ(persons["ann"].refused[0].from, "ann");
  EXPECT_EQ(persons["ann"].refused[0].to, "bob");
  EXPECT_EQ(persons["bob"].refused, persons["ann"].refused);
  EXPECT_EQ(persons["ann"].ids, (std::vector<std::string>{"a1", "ann"}));
  EXPECT_EQ(persons["bob"].ids, (std::vector<std::string>{"b1", "bob"}));
}

TEST(Identity, AnIdentifiedIdThatWasNeverATargetCanBeAliased) {
  // Segment server-side: identify(userId: old) without an anonymousId, then
  // alias(previousId: old, userId: new): old was never a link target.
  ProfileBatch batch;
  AddEvent("p", "1", Ev("identify", 1000, "old"), &batch);
  Event alias = Ev("alias", 2000, "new");
  alias.type = "alias";
  alias.previous_id = "old";
  AddEvent("p", "2", alias, &batch);
  auto persons = Persons(batch);
  EXPECT_EQ(persons["old"].root, "new");
  EXPECT_EQ(persons["new"].ids, (std::vector<std::string>{"new", "old"}));
  EXPECT_EQ(persons["new"].merged.events, 2);
}

TEST(Identity, ChainsAndCyclesResolveDeterministically) {
  ProfileBatch chain;
  AddEvent("p", "1", Ev("identify", 1000, "b", "a"), &chain);
  AddEvent("p", "2", Ev("identify", 2000, "c", "b"), &chain);
  auto persons = Persons(chain);
  EXPECT_EQ(persons["a"].root, "b");  // b is a target: a root; b -> c is refused
  EXPECT_EQ(persons["b"].ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(persons["c"].ids, (std::vector<std::string>{"c"}));
  EXPECT_EQ(persons["b"].refused.size(), 1u);

  ProfileBatch cycle;
  AddEvent("p", "1", Ev("identify", 1000, "y", "x"), &cycle);
  AddEvent("p", "2", Ev("identify", 1000, "x", "y"), &cycle);
  auto c = Persons(cycle);
  EXPECT_EQ(c["x"].root, "x");
  EXPECT_EQ(c["y"].root, "y");
  EXPECT_EQ(c["x"].refused.size(), 2u);
}

// ---- the property ----

// Random events over a few users and anonymous ids: links, aliases and
// conflicting $set/$set_once/$unset/$add with equal and unequal times.
std::vector<std::pair<std::string, Event>> RandomEvents(std::mt19937_64& rng, int n) {
  const std::vector<std::string> users = {"ann", "bob", "cy"};
  const std::vector<std::string> anons = {"a1", "a2", "a3", "a4"};
  const std::vector<std::string> keys = {"plan", "n", "src", "tier"};
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  std::vector<std::pair<std::string, Event>> out;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.event = (rng() % 2) ? "view" : "buy";
    e.time_ms = 1000 * static_cast<int64_t>(rng() % 6);  // few distinct times: many ties
    const int kind = static_cast<int>(rng() % 5);
    if (kind == 0) {
      e.anonymous_id = pick(anons);
    } else if (kind == 1) {
      e.user_id = pick(users);
      e.anonymous_id = pick(anons);
    } else if (kind == 2 && rng() % 3 == 0) {
      e.type = "alias";
      e.user_id = pick(users);
      e.previous_id = (rng() % 2) ? pick(users) : pick(anons);
    } else {
      e.user_id = pick(users);
    }
    const std::string k = pick(keys);
    switch (rng() % 5) {
      case 0: e.set = "{\"" + k + "\":" + std::to_string(rng() % 4) + "}"; break;
      case 1: e.set_once = "{\"" + k + "\":\"v" + std::to_string(rng() % 4) + "\"}"; break;
      case 2: e.unset = "[\"" + k + "\"]"; break;
      case 3: e.add = "{\"" + k + "\":" + std::to_string(rng() % 5) + ".5}"; break;
      default: break;
    }
    out.emplace_back("e" + std::to_string(i), std::move(e));
  }
  return out;
}

// What a store does: fold each batch into the stored states, through the
// stored form (serialize / parse) as a store would read and write them.
ProfileBatch ApplyInBatches(const std::vector<std::pair<std::string, Event>>& events,
                            std::mt19937_64& rng) {
  ProfileBatch stored;
  size_t i = 0;
  while (i < events.size()) {
    const size_t n = 1 + rng() % 7;
    ProfileBatch batch;
    for (size_t k = i; k < std::min(events.size(), i + n); ++k) {
      AddEvent("p", events[k].first, events[k].second, &batch);
    }
    i += n;
    for (auto& [key, delta] : batch) {
      IdState& s = stored[key];
      PropertyMap props;
      EXPECT_TRUE(ParseProperties(SerializeProperties(s.properties), OpKey{}, &props).ok());
      s.properties = std::move(props);
      s.Merge(delta);
    }
  }
  return stored;
}

std::string Render(const ProfileBatch& stored) {
  std::string out;
  for (const auto& [id, person] : Persons(stored)) {
    out += id + " -> " + person.root + " [";
    for (const std::string& m : person.ids) out += m + " ";
    out += "] events=" + std::to_string(person.merged.events) + " first=" +
           std::to_string(person.merged.first_seen_ms) + " last=" +
           std::to_string(person.merged.last_seen_ms) + " props=" +
           RenderProperties(person.merged.properties) + " stored=" +
           SerializeProperties(person.merged.properties) + " refused=";
    for (const RefusedMerge& r : person.refused) out += r.from + ">" + r.to + " ";
    out += "\n";
  }
  return out;
}

TEST(ProfileProperty, SameEventsInAnyOrderAndBatchingGiveByteIdenticalProfiles) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 rng(seed);
    auto events = RandomEvents(rng, 60);
    const std::string expected = Render(ApplyInBatches(events, rng));
    for (int round = 0; round < 25; ++round) {
      std::shuffle(events.begin(), events.end(), rng);
      ASSERT_EQ(Render(ApplyInBatches(events, rng)), expected) << "seed " << seed;
    }
  }
}

}  // namespace
}  // namespace sluice
