// PostHog decoder tests, from payloads captured from posthog-node 5.70.0 plus
// the shapes posthog-js sends (array body, token in properties, form data=).
#include <gtest/gtest.h>

#include "ingest/formats/posthog.h"
#include "formats_test_util.h"

namespace sluice::testing {
namespace {

// posthog-node 5.70.0, POST /batch/ (gunzipped; ids and times as captured).
constexpr std::string_view kPostHogBatch = R"({"api_key":"phc_POSTHOG_PROJECT_KEY_test","sent_at":"2026-11-27T06:44:27.153Z","batch":[
  {"event":"Order Completed","distinct_id":"user-123","timestamp":"2026-11-27T06:44:27.147Z",
   "uuid":"01a21bb7-df58-7313-9f43-caba35822d3e",
   "properties":{"order_id":"o-1001","revenue":42.5,"$ip":"203.0.113.7","$groups":{"company":"org-9"},
                 "$lib":"posthog-node","$lib_version":"5.70.0","$is_server":true,"$geoip_disable":true}},
  {"event":"$identify","distinct_id":"user-123","timestamp":"2026-11-27T06:44:27.147Z","uuid":"01a21bb7-df58-7313-9f43-cabbc4158ecb",
   "properties":{"$set":{"email":"ada@example.com","plan":"pro"},"$set_once":{"created_at":"2024-01-02T03:04:05.000Z"},
                 "$anon_distinct_id":"anon-456-device","$lib":"posthog-node","$lib_version":"5.70.0","$is_server":true,"$geoip_disable":true}},
  {"event":"Batch Event","distinct_id":"anon-456-device","timestamp":"2024-01-01T00:00:00.000Z",
   "uuid":"01a21bb7-df58-7313-9f43-cabc0a916241","properties":{"i":0,"group":"g0","$lib":"posthog-node","$lib_version":"5.70.0","$is_server":true,"$geoip_disable":true}},
  {"event":"$create_alias","distinct_id":"user-123","timestamp":"2026-11-27T06:44:27.148Z","uuid":"01a21bb7-df58-7313-9f43-cabc0a916242",
   "properties":{"distinct_id":"user-123","alias":"anon-456-device","$lib":"posthog-node"}},
  {"event":"$groupidentify","distinct_id":"$company_org-9","timestamp":"2026-11-27T06:44:27.149Z","uuid":"01a21bb7-df58-7313-9f43-cabc0a916243",
   "properties":{"$group_type":"company","$group_key":"org-9","$group_set":{"name":"Acme"},"$lib":"posthog-node"}}],
 "historical_migration":false})";

const Format& PostHog() { return FormatNamed("posthog"); }

TestRequest Post(std::string path, std::string body) {
  TestRequest t;
  t.path = std::move(path);
  t.body = std::move(body);
  return t;
}

TEST(PostHogFormat, GzippedPosthogNodeBatchDecodesEveryEvent) {
  DecodeResult r = DecodeWith(PostHog(), Post("/batch/", Gzip(kPostHogBatch)));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "phc_POSTHOG_PROJECT_KEY_test");
  ASSERT_EQ(r.events.size(), 5u);

  const Event& track = r.events[0];
  EXPECT_EQ(track.insert_id, "01a21bb7-df58-7313-9f43-caba35822d3e");
  EXPECT_EQ(track.event, "Order Completed");
  EXPECT_EQ(track.type, "track");
  EXPECT_EQ(track.user_id, "user-123");
  EXPECT_EQ(track.time_ms, Ms("2026-11-27T06:44:27.147Z"));
  EXPECT_EQ(track.properties,
            R"({"order_id":"o-1001","revenue":42.5,"$ip":"203.0.113.7","$groups":{"company":"org-9"},)"
            R"("$lib":"posthog-node","$lib_version":"5.70.0","$is_server":true,"$geoip_disable":true})");

  const Event& identify = r.events[1];
  EXPECT_EQ(identify.type, "identify");
  EXPECT_EQ(identify.anonymous_id, "anon-456-device");
  EXPECT_EQ(identify.set, R"({"email":"ada@example.com","plan":"pro"})");
  EXPECT_EQ(identify.set_once, R"({"created_at":"2024-01-02T03:04:05.000Z"})");
  EXPECT_EQ(identify.properties.find("$set"), std::string::npos) << identify.properties;

  EXPECT_EQ(r.events[2].user_id, "anon-456-device");
  EXPECT_EQ(r.events[2].time_ms, 1704067200000);
  EXPECT_EQ(r.events[3].type, "alias");
  EXPECT_EQ(r.events[4].type, "group");
  EXPECT_EQ(r.events[4].user_id, "$company_org-9");
}

TEST(PostHogFormat, PosthogJsArrayWithTokenInPropertiesAndTopLevelSet) {
  const std::string body = R"([
    {"event":"$pageview","properties":{"distinct_id":"u1","token":"phc_js","$current_url":"https://x/"},
     "timestamp":"2024-01-01T00:00:00.000Z","uuid":"a1"},
    {"event":"$identify","$set":{"plan":"pro"},"$set_once":{"first":"2024"},
     "properties":{"distinct_id":"u1","token":"phc_js","$set":{"seats":3}},"offset":1500}])";
  TestRequest t = Post("/e/", Gzip(body));
  t.query = "ip=1&_=1704067200000&ver=1.100.0&compression=gzip-js";
  t.content_type = "text/plain";
  DecodeResult r = DecodeWith(PostHog(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "phc_js");
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].type, "page");
  EXPECT_EQ(r.events[0].user_id, "u1");
  EXPECT_EQ(r.events[0].properties, R"({"distinct_id":"u1","$current_url":"https://x/"})");
  EXPECT_EQ(r.events[1].set, R"({"plan":"pro","seats":3})");
  EXPECT_EQ(r.events[1].set_once, R"({"first":"2024"})");
  EXPECT_EQ(r.events[1].time_ms, kNowMs - 1500);  // offset
  EXPECT_FALSE(r.events[1].insert_id.empty());
}

TEST(PostHogFormat, FormDataAndGetDataAreBase64Json) {
  const std::string json =
      R"({"event":"clicked","properties":{"distinct_id":"u2","token":"phc_f","$time":1704067200.25}})";
  TestRequest t = Post("/capture/", "data=" + PercentEncode(Base64(json)) + "&compression=base64");
  t.content_type = "application/x-www-form-urlencoded";
  DecodeResult r = DecodeWith(PostHog(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "phc_f");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].time_ms, 1704067200250);  // properties.$time in seconds

  TestRequest g;
  g.method = "GET";
  g.path = "/e";
  g.query = "data=" + PercentEncode(Base64(json)) + "&ip=1";
  r = DecodeWith(PostHog(), g);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].event, "clicked");
}

TEST(PostHogFormat, SingleCaptureWithApiKeyAndEveryTimestampShape) {
  const std::pair<std::string, int64_t> cases[] = {
      {R"("timestamp":"2024-01-01T00:00:00Z")", 1704067200000},
      {R"("timestamp":"2024-01-01T00:00:00.999+00:00")", 1704067200999},
      {R"("timestamp":1704067200000)", 1704067200000},
      {R"("offset":0)", kNowMs},
      {R"("properties":{"$time":1704067200})", 1704067200000},
      {R"("properties":{"$time":1704067200123})", 1704067200123},
      {R"("x":1)", kNowMs},
  };
  for (const auto& [field, want] : cases) {
    DecodeResult r = DecodeWith(
        PostHog(), Post("/i/v0/e/", R"({"api_key":"phc_k","event":"e","distinct_id":7,)" + field +
                                        "}"));
    ASSERT_TRUE(r.status.ok()) << field << ": " << r.status.ToString();
    EXPECT_EQ(r.write_key, "phc_k");
    EXPECT_EQ(r.events[0].user_id, "7");
    EXPECT_EQ(r.events[0].time_ms, want) << field;
  }
}

TEST(PostHogFormat, BadEventsNameTheirIndexAndField) {
  struct Case {
    std::string body;
    int32_t index;
    std::string field;
  };
  const Case cases[] = {
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u"},{"event":"e"}]})", 1,
       "distinct_id"},
      {R"({"api_key":"k","batch":[{"distinct_id":"u"}]})", 0, "event"},
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u","timestamp":"now"}]})", 0,
       "timestamp"},
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u","properties":[]}]})", 0,
       "properties"},
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u","$set":"x"}]})", 0, "$set"},
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u","uuid":{}}]})", 0, "uuid"},
      {R"({"api_key":"k","batch":[{"event":"e","distinct_id":"u","offset":-5}]})", 0, "offset"},
      {R"({"api_key":"k","batch":[3]})", 0, ""},
      {R"({"api_key":"k","batch":"x"})", -1, "batch"},
      {R"([{"event":"e","distinct_id":"u","properties":{"token":"a"}},)"
       R"({"event":"e","distinct_id":"u","properties":{"token":"b"}}])", 1, "token"},
      {R"({"api_key":"a","batch":[{"event":"e","distinct_id":"u","properties":{"token":"b"}}]})",
       -1, "token"},
      {"data=!!!", -1, "data"},
      {"plain text", -1, "data"},
      {"{", -1, ""},
  };
  for (const Case& c : cases) {
    DecodeResult r = DecodeWith(PostHog(), Post("/batch/", c.body));
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << c.body;
    EXPECT_EQ(r.index, c.index) << c.body;
    EXPECT_EQ(r.field, c.field) << c.body;
  }
  TestRequest lz = Post("/e/", "data=abc");
  lz.query = "compression=lz64";
  DecodeResult r = DecodeWith(PostHog(), lz);
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  EXPECT_EQ(r.field, "compression");
}

TEST(PostHogFormat, RepliesUseStatusesPosthogNodeHandles) {
  EXPECT_EQ(PostHog().Reply(Outcome(Status::Ok(), 5)).body, R"({"status":1})");
  IngestReply r = PostHog().Reply(Outcome(Status::Unauthorized("unknown write key")));
  EXPECT_EQ(r.status, 401);  // dropped, never retried
  EXPECT_NE(r.body.find(R"("code":"invalid_api_key")"), std::string::npos) << r.body;
  IngestOutcome bad = Outcome(Status::InvalidArgument("distinct_id must be a non-empty string"));
  bad.field = "distinct_id";
  r = PostHog().Reply(bad);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find(R"("attr":"distinct_id")"), std::string::npos) << r.body;
  EXPECT_EQ(PostHog().Reply(Outcome(Status::TooLarge("big"))).status, 413);  // halves the batch
  r = PostHog().Reply(Outcome(Status::Busy("full")));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.retry_after_s, 5);
  r = PostHog().Reply(Outcome(Status::Unavailable("down")));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.retry_after_s, 5);
}

TEST(PostHogFormat, OwnsTheCapturePathsWithAndWithoutSlash) {
  for (const char* path : {"/batch/", "/capture", "/capture/", "/e", "/e/", "/i/v0/e", "/i/v0/e/"}) {
    const Format* f = RouteFor("POST", path);
    ASSERT_NE(f, nullptr) << path;
    EXPECT_EQ(f->name(), "posthog") << path;
  }
  EXPECT_EQ(RouteFor("GET", "/e/")->name(), "posthog");
  EXPECT_FALSE(PostHog().Matches("GET", "/batch/"));
  EXPECT_FALSE(PostHog().Matches("POST", "/batch"));  // Amplitude's route
}

}  // namespace
}  // namespace sluice::testing
