// Mixpanel decoder tests, from requests captured from mixpanel 0.24.0 (Node).
#include <gtest/gtest.h>

#include "ingest/formats/mixpanel.h"
#include "formats_test_util.h"

namespace sluice::testing {
namespace {

// mixpanel 0.24.0 track(): GET /track?ip=0&verbose=0&data=<percent-encoded base64 of this>.
constexpr std::string_view kTrack =
    R"({"event":"Order Completed","properties":{"distinct_id":"user-123","order_id":"o-1001","revenue":42.5,)"
    R"("currency":"EUR","items":[{"sku":"sku-1","qty":2}],"token":"MIXPANEL_PROJECT_TOKEN_test","mp_lib":"node","$lib_version":"0.24.0"}})";

// track_batch(): POST /track?ip=0&verbose=0, form body data=<raw base64 of this>.
constexpr std::string_view kBatch =
    R"([{"event":"Batch Event","properties":{"distinct_id":"anon-456-device","time":1704067200000,"$insert_id":"ins-0",)"
    R"("i":0,"token":"MIXPANEL_PROJECT_TOKEN_test"}},)"
    R"({"event":"Batch Event","properties":{"distinct_id":"anon-456-device","time":1704067201,"$insert_id":"ins-1",)"
    R"("i":1,"note":"%s","token":"MIXPANEL_PROJECT_TOKEN_test"}}])";

// people.set(): GET /engage?ip=0&verbose=0&data=...
constexpr std::string_view kEngage =
    R"({"$token":"MIXPANEL_PROJECT_TOKEN_test","$distinct_id":"user-123",)"
    R"("$set":{"email":"ada@example.com","plan":"pro"},"$ip":"203.0.113.7","$time":1795761863000})";

const Format& Mixpanel() { return FormatNamed("mixpanel"); }

TestRequest Get(std::string path, std::string_view json, std::string flags = "ip=0&verbose=0") {
  TestRequest t;
  t.method = "GET";
  t.path = std::move(path);
  t.content_type = "";
  t.query = flags + "&data=" + PercentEncode(Base64(json));
  return t;
}

// A batch body whose base64 holds raw '+' and '/' (what the SDK sends).
std::string BatchWithPlusAndSlash(std::string* b64) {
  for (int n = 0; n < 64; ++n) {
    std::string json(kBatch);
    json.replace(json.find("%s"), 2, std::string(n, 'x') + ">>>?\?\?>>>?\?\?");
    *b64 = Base64(json);
    if (b64->find('+') != std::string::npos && b64->find('/') != std::string::npos) return json;
  }
  ADD_FAILURE() << "no padding gave both + and /";
  return "";
}

TEST(MixpanelFormat, TrackGetDecodesTheEventAndTakesTheTokenAsKey) {
  DecodeResult r = DecodeWith(Mixpanel(), Get("/track", kTrack));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "MIXPANEL_PROJECT_TOKEN_test");
  ASSERT_EQ(r.events.size(), 1u);
  const Event& e = r.events[0];
  EXPECT_EQ(e.event, "Order Completed");
  EXPECT_EQ(e.user_id, "user-123");
  EXPECT_EQ(e.time_ms, kNowMs);  // the SDK sends no time unless the caller sets one
  EXPECT_EQ(e.properties,
            R"({"distinct_id":"user-123","order_id":"o-1001","revenue":42.5,"currency":"EUR",)"
            R"("items":[{"sku":"sku-1","qty":2}],"mp_lib":"node","$lib_version":"0.24.0"})");
  // No $insert_id: a random one, different every time (Mixpanel SDKs never retry).
  DecodeResult again = DecodeWith(Mixpanel(), Get("/track", kTrack));
  EXPECT_FALSE(e.insert_id.empty());
  EXPECT_NE(e.insert_id, again.events[0].insert_id);
}

TEST(MixpanelFormat, FormBodyKeepsRawPlusInBase64) {
  std::string b64;
  const std::string json = BatchWithPlusAndSlash(&b64);
  TestRequest t;
  t.path = "/track";
  t.query = "ip=0&verbose=0";
  t.content_type = "application/x-www-form-urlencoded";
  t.body = "data=" + b64;
  DecodeResult r = DecodeWith(Mixpanel(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].insert_id, "ins-0");
  EXPECT_EQ(r.events[0].user_id, "anon-456-device");
  EXPECT_EQ(r.events[0].time_ms, 1704067200000);  // epoch ms
  EXPECT_EQ(r.events[1].insert_id, "ins-1");
  EXPECT_EQ(r.events[1].time_ms, 1704067201000);  // epoch seconds
  EXPECT_NE(r.events[1].properties.find(">>>?\?\?>>>?\?\?"), std::string::npos);

  // A proxy that form-decoded '+' into ' ' does not corrupt it either.
  std::string spaced = b64;
  for (char& c : spaced) {
    if (c == '+') c = ' ';
  }
  t.body = "data=" + spaced;
  r = DecodeWith(Mixpanel(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events.size(), 2u);
}

TEST(MixpanelFormat, EveryTimeShapeParses) {
  const std::pair<std::string, int64_t> cases[] = {
      {"1704067200", 1704067200000},
      {"1704067200.123", 1704067200123},
      {"1704067200123", 1704067200123},
      {R"("1704067200")", 1704067200000},
      {R"("2024-01-01T00:00:00Z")", 1704067200000},
  };
  for (const auto& [time, want] : cases) {
    const std::string json =
        R"({"event":"e","properties":{"distinct_id":"u","token":"t","time":)" + time + "}}";
    DecodeResult r = DecodeWith(Mixpanel(), Get("/track", json));
    ASSERT_TRUE(r.status.ok()) << time << ": " << r.status.ToString();
    EXPECT_EQ(r.events[0].time_ms, want) << time;
  }
}

TEST(MixpanelFormat, EngageSetsUserProperties) {
  DecodeResult r = DecodeWith(Mixpanel(), Get("/engage", kEngage));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "MIXPANEL_PROJECT_TOKEN_test");
  ASSERT_EQ(r.events.size(), 1u);
  const Event& e = r.events[0];
  EXPECT_EQ(e.event, "$identify");
  EXPECT_EQ(e.type, "identify");
  EXPECT_EQ(e.user_id, "user-123");
  EXPECT_EQ(e.set, R"({"email":"ada@example.com","plan":"pro"})");
  EXPECT_EQ(e.time_ms, 1795761863000);
  EXPECT_EQ(e.properties, R"({"$ip":"203.0.113.7"})");

  r = DecodeWith(Mixpanel(),
                 Get("/engage/", R"([{"$token":"t","$distinct_id":"u","$set_once":{"first":1}},)"
                                 R"({"$token":"t","$distinct_id":"u","$add":{"logins":1}}])"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].set_once, R"({"first":1})");
  EXPECT_EQ(r.events[1].set, "");
  EXPECT_EQ(r.events[1].add, R"({"logins":1})");
  EXPECT_EQ(r.events[1].properties, "");
}

TEST(MixpanelFormat, GroupsBecomeAGroupProfile) {
  DecodeResult r = DecodeWith(
      Mixpanel(), Get("/groups", R"({"$token":"t","$group_key":"company","$group_id":"org-9",)"
                                 R"("$set":{"name":"Acme"}})"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].event, "$groupidentify");
  EXPECT_EQ(r.events[0].user_id, "$company_org-9");
  EXPECT_EQ(r.events[0].set, R"({"name":"Acme"})");
}

TEST(MixpanelFormat, ImportTakesJsonBodiesAndApiKey) {
  TestRequest t;
  t.path = "/import";
  t.query = "strict=1&api_key=SECRET%2B1";
  t.body = R"([{"event":"Imported","properties":{"distinct_id":"u","time":1704067200,"$insert_id":"x1"}}])";
  DecodeResult r = DecodeWith(Mixpanel(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "SECRET+1");
  EXPECT_EQ(r.events[0].insert_id, "x1");
  EXPECT_EQ(r.events[0].time_ms, 1704067200000);

  // The token in the events wins over api_key; gzip bodies are accepted.
  t.body = Gzip(R"([{"event":"Imported","properties":{"distinct_id":"u","token":"tok"}}])");
  r = DecodeWith(Mixpanel(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "tok");
}

TEST(MixpanelFormat, SimplifiedIdMergeIds) {
  DecodeResult r = DecodeWith(
      Mixpanel(), Get("/track", R"({"event":"e","properties":{"distinct_id":"$device:d1","token":"t"}})"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].user_id, "");
  EXPECT_EQ(r.events[0].anonymous_id, "d1");
  r = DecodeWith(Mixpanel(), Get("/track", R"({"event":"e","properties":{"distinct_id":"u1",)"
                                           R"("$device_id":"d1","token":"t"}})"));
  EXPECT_EQ(r.events[0].user_id, "u1");
  EXPECT_EQ(r.events[0].anonymous_id, "d1");
}

TEST(MixpanelFormat, BadInputNamesTheField) {
  struct Case {
    TestRequest req;
    int32_t index;
    std::string field;
  };
  TestRequest no_data;
  no_data.method = "GET";
  no_data.path = "/track";
  no_data.query = "ip=0";
  TestRequest bad_b64 = no_data;
  bad_b64.query = "data=%%%";
  const Case cases[] = {
      {no_data, -1, "data"},
      {bad_b64, -1, "data"},
      {Get("/track", R"({"properties":{"distinct_id":"u"}})"), 0, "event"},
      {Get("/track", R"({"event":"e","properties":{"token":"t"}})"), 0, "properties.distinct_id"},
      {Get("/track", R"({"event":"e"})"), 0, "properties.distinct_id"},
      {Get("/track", R"({"event":"e","properties":{"distinct_id":"u","time":"later"}})"), 0,
       "properties.time"},
      {Get("/track", R"([{"event":"e","properties":{"distinct_id":"u","token":"a"}},)"
                     R"({"event":"e","properties":{"distinct_id":"u","token":"b"}}])"),
       1, "token"},
      {Get("/engage", R"({"$token":"t","$set":{"a":1}})"), 0, "$distinct_id"},
      {Get("/engage", R"({"$token":"t","$distinct_id":"u","$set":[1]})"), 0, "$set"},
      {Get("/groups", R"({"$token":"t","$group_id":"g"})"), 0, "$group_key"},
      {Get("/track", "42"), -1, "data"},
  };
  for (const Case& c : cases) {
    DecodeResult r = DecodeWith(Mixpanel(), c.req);
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << c.req.query;
    EXPECT_EQ(r.index, c.index) << c.req.query;
    EXPECT_EQ(r.field, c.field) << c.req.query;
  }
}

TEST(MixpanelFormat, RepliesAreTheBodiesTheSdkReads) {
  DecodeResult r = DecodeWith(Mixpanel(), Get("/track", kTrack));
  IngestReply ok = Mixpanel().Reply(Outcome(Status::Ok(), 1, r.reply_context));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "1");
  IngestReply bad = Mixpanel().Reply(Outcome(Status::Unauthorized("unknown write key"), 1,
                                             r.reply_context));
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(bad.body, "0");

  r = DecodeWith(Mixpanel(), Get("/track", kTrack, "ip=1&verbose=1"));
  EXPECT_EQ(Mixpanel().Reply(Outcome(Status::Ok(), 1, r.reply_context)).body,
            R"({"status":1,"error":null})");
  IngestReply busy = Mixpanel().Reply(Outcome(Status::Busy("queue full"), 1, r.reply_context));
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(busy.retry_after_s, 5);
  EXPECT_EQ(busy.body, R"({"status":0,"error":"queue full"})");
  EXPECT_EQ(Mixpanel().Reply(Outcome(Status::Unavailable("down"), 1, "")).status, 503);
}

TEST(MixpanelFormat, OwnsTrackEngageGroupsImport) {
  for (const char* m : {"GET", "POST"}) {
    for (const char* path : {"/track", "/track/", "/engage", "/engage/", "/groups", "/import"}) {
      const Format* f = RouteFor(m, path);
      ASSERT_NE(f, nullptr) << m << " " << path;
      EXPECT_EQ(f->name(), "mixpanel") << path;
    }
  }
}

}  // namespace
}  // namespace sluice::testing
