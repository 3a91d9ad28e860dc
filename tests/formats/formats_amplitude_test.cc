// Amplitude decoder tests, from payloads captured from @amplitude/analytics-node 1.5.73.
#include <gtest/gtest.h>

#include "ingest/formats/amplitude.h"
#include "formats_test_util.h"

namespace sluice::testing {
namespace {

// analytics-node 1.5.73, POST /2/httpapi (ids and times as captured; the
// groupIdentify and revenue events added from the same run).
constexpr std::string_view kAmplitudeBody = R"({"api_key":"AMPLITUDE_API_KEY_test","options":{},"client_upload_time":"2026-11-27T06:44:23.036Z","events":[
  {"time":1795761863031,"insert_id":"eb0f3df5-9fa2-4ea3-b505-6826a9325a86","event_type":"Order Completed",
   "user_id":"user-123","device_id":"anon-456-device","ip":"203.0.113.7","app_version":"1.2.3","platform":"server",
   "event_properties":{"order_id":"o-1001","revenue":42.5,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]},
   "event_id":0,"library":"amplitude-node-ts/1.5.73"},
  {"time":1795761863032,"insert_id":"995901f5-eb81-4a6b-bb0f-f2173d252b0b","user_id":"user-123","device_id":"anon-456-device",
   "event_type":"$identify","user_properties":{"$set":{"email":"ada@example.com","plan":"pro"},"$add":{"logins":1},
   "$setOnce":{"created_at":"2024-01-02T03:04:05.000Z"}},"event_id":1,"library":"amplitude-node-ts/1.5.73"},
  {"time":1704067200000,"insert_id":"b3ef7238-3cb8-4979-ad7f-798af3c474d2","event_type":"Batch Event","device_id":"anon-456-device",
   "event_properties":{"i":0,"group":"g0"},"event_id":2,"library":"amplitude-node-ts/1.5.73"},
  {"time":1795761863033,"insert_id":"c1a2b3c4-0000-4000-8000-000000000001","event_type":"$groupidentify","user_id":"user-123",
   "groups":{"org":"org-9"},"group_properties":{"$set":{"name":"Acme"}},"event_id":3,"library":"amplitude-node-ts/1.5.73"},
  {"time":1795761863034,"insert_id":"c1a2b3c4-0000-4000-8000-000000000002","event_type":"revenue_amount","user_id":"user-123",
   "event_properties":{"$productId":"sku-1","$price":9.99,"$quantity":2,"$revenueType":"purchase"},
   "session_id":1795761860000,"event_id":4,"library":"amplitude-node-ts/1.5.73"}]})";

const Format& Amplitude() { return FormatNamed("amplitude"); }

TestRequest HttpApi(std::string_view body) {
  TestRequest t;
  t.path = "/2/httpapi";
  t.body = std::string(body);
  return t;
}

TEST(AmplitudeFormat, AnalyticsNodeBodyDecodesEveryEvent) {
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(kAmplitudeBody));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "AMPLITUDE_API_KEY_test");
  ASSERT_EQ(r.events.size(), 5u);

  const Event& track = r.events[0];
  EXPECT_EQ(track.insert_id, "eb0f3df5-9fa2-4ea3-b505-6826a9325a86");
  EXPECT_EQ(track.event, "Order Completed");
  EXPECT_EQ(track.type, "track");
  EXPECT_EQ(track.user_id, "user-123");
  EXPECT_EQ(track.anonymous_id, "anon-456-device");
  EXPECT_EQ(track.time_ms, 1795761863031);
  EXPECT_EQ(track.properties,
            R"({"order_id":"o-1001","revenue":42.5,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]})");

  const Event& identify = r.events[1];
  EXPECT_EQ(identify.event, "$identify");
  EXPECT_EQ(identify.type, "identify");
  EXPECT_EQ(identify.set, R"({"email":"ada@example.com","plan":"pro"})");
  EXPECT_EQ(identify.set_once, R"({"created_at":"2024-01-02T03:04:05.000Z"})");

  EXPECT_EQ(r.events[2].user_id, "");
  EXPECT_EQ(r.events[2].anonymous_id, "anon-456-device");
  EXPECT_EQ(r.events[2].time_ms, 1704067200000);

  EXPECT_EQ(r.events[3].type, "group");
  EXPECT_EQ(r.events[3].properties,
            R"({"$groups":{"org":"org-9"},"$group_properties":{"$set":{"name":"Acme"}}})");
  EXPECT_EQ(r.events[4].properties,
            R"({"$productId":"sku-1","$price":9.99,"$quantity":2,"$revenueType":"purchase"})");
}

TEST(AmplitudeFormat, PlainUserPropertiesAreSet) {
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(R"({"api_key":"k","events":[
      {"event_type":"e","user_id":"u","user_properties":{"plan":"pro","seats":3}}]})"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].set, R"({"plan":"pro","seats":3})");
  EXPECT_EQ(r.events[0].set_once, "");
  EXPECT_FALSE(r.events[0].insert_id.empty());  // generated
  EXPECT_EQ(r.events[0].time_ms, kNowMs);       // no time: receive time
}

TEST(AmplitudeFormat, EveryTimeShapeParses) {
  const std::pair<std::string, int64_t> cases[] = {
      {"1704067200000", 1704067200000},
      {R"("1704067200000")", 1704067200000},
      {"1704067200000.0", 1704067200000},
      {R"("2024-01-01T00:00:00.000Z")", 1704067200000},
      {R"("2024-01-01T01:00:00+01:00")", 1704067200000},
      {"null", kNowMs},
  };
  for (const auto& [time, want] : cases) {
    DecodeResult r = DecodeWith(
        Amplitude(),
        HttpApi(R"({"api_key":"k","events":[{"event_type":"e","device_id":"d","time":)" + time +
                "}]}"));
    ASSERT_TRUE(r.status.ok()) << time << ": " << r.status.ToString();
    EXPECT_EQ(r.events[0].time_ms, want) << time;
  }
}

TEST(AmplitudeFormat, InvalidEventsAreAllListedInAmplitudesShape) {
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(R"({"api_key":"k","events":[
      {"event_type":"ok","user_id":"u"},
      {"user_id":"u"},
      {"event_type":"ok","user_id":"u","time":"soon"},
      {"event_type":"ok"},
      {"event_type":"ok","user_id":"u","time":[1]},
      {"event_type":"ok","user_id":"u","event_properties":"x"}]})"));
  ASSERT_EQ(r.status.code(), Code::kInvalidArgument);
  EXPECT_EQ(r.index, 1);
  EXPECT_EQ(r.field, "event_type");

  IngestOutcome o = Outcome(r.status, 0, r.reply_context);
  o.index = r.index;
  o.field = r.field;
  IngestReply reply = Amplitude().Reply(o);
  EXPECT_EQ(reply.status, 400);
  EXPECT_NE(reply.body.find(R"("code":400)"), std::string::npos) << reply.body;
  EXPECT_NE(reply.body.find(R"("events_with_missing_fields":{"event_type":[1],"user_id":[3]})"),
            std::string::npos)
      << reply.body;
  EXPECT_NE(reply.body.find(
                R"("events_with_invalid_fields":{"event_properties":[5],"time":[2,4]})"),
            std::string::npos)
      << reply.body;
  EXPECT_EQ(reply.body.find("missing_field\""), std::string::npos) << reply.body;
}

TEST(AmplitudeFormat, RequestLevelErrorsCarryMissingFieldSoTheSdkDrops) {
  for (const char* body : {R"({"api_key":"k"})", R"({"api_key":"k","events":{}})", "not json",
                           R"([1])"}) {
    DecodeResult r = DecodeWith(Amplitude(), HttpApi(body));
    ASSERT_EQ(r.status.code(), Code::kInvalidArgument) << body;
    IngestOutcome o = Outcome(r.status, 0, r.reply_context);
    o.field = r.field;
    IngestReply reply = Amplitude().Reply(o);
    EXPECT_EQ(reply.status, 400);
    EXPECT_NE(reply.body.find(R"("missing_field":)"), std::string::npos) << reply.body;
  }
}

TEST(AmplitudeFormat, SuccessBodyHasTheFieldsTheSdkReads) {
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(kAmplitudeBody));
  IngestOutcome o = Outcome(Status::Ok(), 5, r.reply_context);
  o.body_bytes = 9812;
  IngestReply reply = Amplitude().Reply(o);
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.body,
            R"({"code":200,"events_ingested":5,"payload_size_bytes":9812,"server_upload_time":)" +
                std::to_string(kNowMs) + "}");
}

TEST(AmplitudeFormat, WrongOrMissingKeyIsAnInvalidApiKeyError) {
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(kAmplitudeBody));
  IngestReply wrong = Amplitude().Reply(Outcome(Status::Unauthorized("unknown write key"), 5,
                                                r.reply_context));
  EXPECT_EQ(wrong.status, 400);
  EXPECT_NE(wrong.body.find(R"("error":"Invalid API key: )"), std::string::npos) << wrong.body;

  r = DecodeWith(Amplitude(), HttpApi(R"({"events":[{"event_type":"e","user_id":"u"}]})"));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.write_key, "");
  IngestReply missing = Amplitude().Reply(Outcome(Status::Unauthorized("a write key is required"),
                                                  1, r.reply_context));
  EXPECT_NE(missing.body.find(R"("missing_field":"api_key")"), std::string::npos)
      << missing.body;
  EXPECT_NE(missing.body.find(R"("error":"Invalid API key)"), std::string::npos) << missing.body;
}

TEST(AmplitudeFormat, FullQueueThrottlesEveryEventAndOutageIs503) {
  IngestReply busy = Amplitude().Reply(Outcome(Status::Busy("full"), 3, "K"));
  EXPECT_EQ(busy.status, 429);
  EXPECT_NE(busy.body.find(R"("code":429)"), std::string::npos) << busy.body;
  EXPECT_NE(busy.body.find(R"("throttled_events":[0,1,2])"), std::string::npos) << busy.body;
  EXPECT_EQ(busy.retry_after_s, 5);

  IngestReply down = Amplitude().Reply(Outcome(Status::Unavailable("down"), 3, "K"));
  EXPECT_EQ(down.status, 503);
  EXPECT_NE(down.body.find(R"("code":503)"), std::string::npos) << down.body;

  IngestReply big = Amplitude().Reply(Outcome(Status::TooLarge("too big"), 0, "K"));
  EXPECT_EQ(big.status, 413);
  EXPECT_NE(big.body.find(R"("code":413)"), std::string::npos) << big.body;
}

TEST(AmplitudeFormat, TooManyEventsIs413SoTheSdkHalvesItsBatch) {
  DecodeLimits limits;
  limits.max_events = 2;
  DecodeResult r = DecodeWith(Amplitude(), HttpApi(kAmplitudeBody), limits);
  EXPECT_EQ(r.status.code(), Code::kTooLarge);
}

TEST(AmplitudeFormat, PostHogBodyOnBatchWithoutSlashIsHandedToPostHog) {
  TestRequest t;
  t.path = "/batch";
  t.body = Gzip(R"({"api_key":"phc_x","batch":[{"event":"e","distinct_id":"u","uuid":"id-1"}]})");
  const Format* f = RouteFor("POST", "/batch");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->name(), "amplitude");
  DecodeResult r = DecodeWith(*f, t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "phc_x");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].insert_id, "id-1");
  EXPECT_EQ(f->Reply(Outcome(Status::Ok(), 1, r.reply_context)).body, R"({"status":1})");

  // An Amplitude body on /batch stays Amplitude's.
  t.body = std::string(kAmplitudeBody);
  r = DecodeWith(*f, t);
  ASSERT_TRUE(r.status.ok());
  EXPECT_NE(f->Reply(Outcome(Status::Ok(), 5, r.reply_context)).body.find("\"code\":200"),
            std::string::npos);
}

TEST(AmplitudeFormat, OwnsHttpApiAndBatch) {
  EXPECT_EQ(RouteFor("POST", "/2/httpapi")->name(), "amplitude");
  EXPECT_EQ(RouteFor("POST", "/2/httpapi/")->name(), "amplitude");
  EXPECT_EQ(RouteFor("POST", "/batch")->name(), "amplitude");
  EXPECT_FALSE(Amplitude().Matches("GET", "/2/httpapi"));
}

}  // namespace
}  // namespace sluice::testing
