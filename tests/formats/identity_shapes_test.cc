// Each SDK's identify / alias shape, decoded by its format and folded into
// profiles (profile/profile.h), merges the anonymous id into the person; and
// the profile operations ($unset, $add) of each format reach the profile.
#include <gtest/gtest.h>

#include <string>

#include "formats_test_util.h"
#include "profile/profile.h"

namespace sluice::testing {
namespace {

// The person each decoded event's ids belong to, after every event of `r`.
std::map<std::string, Person> PersonsOf(const DecodeResult& r) {
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  ProfileBatch batch;
  for (const Event& e : r.events) AddEvent("p", e.insert_id, e, &batch);
  std::vector<IdRow> rows;
  for (const auto& [key, state] : batch) rows.push_back({key.second, state});
  std::map<std::string, Person> out;
  for (const IdRow& row : rows) out[row.id] = AssemblePerson(PersonOf(row.id, row.state), rows);
  return out;
}

TestRequest Req(const std::string& method, const std::string& path, const std::string& query,
                const std::string& body) {
  TestRequest t;
  t.method = method;
  t.path = path;
  t.query = query;
  t.body = body;
  return t;
}

DecodeResult Post(const std::string& path, const std::string& body) {
  TestRequest t;
  t.path = path;
  t.body = body;
  const Format* f = RouteFor("POST", path);
  EXPECT_NE(f, nullptr) << path;
  return DecodeWith(*f, t);
}

TEST(IdentityShapes, NativeIdentifyAndAliasMerge) {
  auto persons = PersonsOf(DecodeWith(
      FormatNamed("native"),
      Req("POST", "/v1/events", "", R"({"events":[
        {"event":"view","anonymous_id":"anon1","time":1000},
        {"event":"identify","type":"identify","user_id":"ann","anonymous_id":"anon1","time":2000},
        {"event":"alias","type":"alias","user_id":"ann","previous_id":"old-id","time":3000}]})")));
  EXPECT_EQ(persons["anon1"].root, "ann");
  EXPECT_EQ(persons["ann"].ids, (std::vector<std::string>{"ann", "anon1", "old-id"}));
  EXPECT_EQ(persons["ann"].merged.events, 3);
}

TEST(IdentityShapes, SegmentIdentifyWithBothIdsAndAliasMerge) {
  auto identify = PersonsOf(Post(
      "/v1/identify", R"({"userId":"ann","anonymousId":"anon1","traits":{"plan":"pro"},)"
                      R"("messageId":"m1","timestamp":"2026-11-27T06:00:00Z"})"));
  EXPECT_EQ(identify["anon1"].root, "ann");
  EXPECT_EQ(RenderProperties(identify["ann"].merged.properties), R"({"plan":"pro"})");
  auto alias = PersonsOf(Post("/v1/alias", R"({"userId":"new-id","previousId":"old-id",)"
                                           R"("messageId":"m2"})"));
  EXPECT_EQ(alias["old-id"].root, "new-id");
}

TEST(IdentityShapes, PostHogIdentifyAndCreateAliasMerge) {
  auto identify = PersonsOf(Post(
      "/batch/", R"({"api_key":"k","batch":[{"event":"$identify","distinct_id":"ann",)"
                 R"("properties":{"$anon_distinct_id":"anon1"},"$set":{"email":"a@x"}}]})"));
  EXPECT_EQ(identify["anon1"].root, "ann");
  auto alias = PersonsOf(Post(
      "/batch/", R"({"api_key":"k","batch":[{"event":"$create_alias","distinct_id":"ann",)"
                 R"("properties":{"alias":"other-id"}}]})"));
  EXPECT_EQ(alias["other-id"].root, "ann");
}

TEST(IdentityShapes, MixpanelIdentifyAndCreateAliasMerge) {
  const std::string identify =
      R"([{"event":"$identify","properties":{"distinct_id":"ann","$anon_id":"anon1",)"
      R"("$identified_id":"ann","token":"t"}}])";
  TestRequest t = Req("GET", "/track", "data=" + Base64(identify), "");
  auto persons = PersonsOf(DecodeWith(FormatNamed("mixpanel"), t));
  EXPECT_EQ(persons["anon1"].root, "ann");

  const std::string alias =
      R"([{"event":"$create_alias","properties":{"distinct_id":"anon2","alias":"bob","token":"t"}}])";
  TestRequest a = Req("GET", "/track", "data=" + Base64(alias), "");
  auto aliased = PersonsOf(DecodeWith(FormatNamed("mixpanel"), a));
  EXPECT_EQ(aliased["anon2"].root, "bob");
}

TEST(IdentityShapes, AmplitudeEventsWithDeviceAndUserIdMerge) {
  auto persons = PersonsOf(Post(
      "/2/httpapi", R"({"api_key":"k","events":[)"
                    R"({"event_type":"view","device_id":"d1","insert_id":"i1","time":1000},)"
                    R"({"event_type":"login","device_id":"d1","user_id":"ann","insert_id":"i2",)"
                    R"("time":2000,"user_properties":{"$add":{"logins":1},"$unset":{"trial":"-"}}}]})"));
  EXPECT_EQ(persons["d1"].root, "ann");
  EXPECT_EQ(persons["ann"].merged.events, 2);
  EXPECT_EQ(RenderProperties(persons["ann"].merged.properties), R"({"logins":1})");
}

TEST(ProfileOps, MixpanelEngageAddAndUnsetReachTheProfile) {
  const std::string ops =
      R"([{"$token":"t","$distinct_id":"u","$set":{"trial":true},"$time":1000},)"
      R"({"$token":"t","$distinct_id":"u","$add":{"logins":2},"$time":2000},)"
      R"({"$token":"t","$distinct_id":"u","$unset":["trial"],"$time":3000}])";
  TestRequest t = Req("GET", "/engage", "data=" + Base64(ops), "");
  auto persons = PersonsOf(DecodeWith(FormatNamed("mixpanel"), t));
  EXPECT_EQ(RenderProperties(persons["u"].merged.properties), R"({"logins":2})");
}

TEST(ProfileOps, PostHogUnsetReachesTheProfile) {
  auto r = Post("/batch/", R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u",)"
                           R"("properties":{"$unset":["plan"]}}]})");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].unset, R"(["plan"])");
  EXPECT_EQ(r.events[0].properties.find("$unset"), std::string::npos);
}

}  // namespace
}  // namespace sluice::testing
