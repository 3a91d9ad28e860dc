// Segment / RudderStack decoder tests, from payloads captured from
// @segment/analytics-node 3.1.0 and @rudderstack/rudder-sdk-node 3.0.13.
#include <gtest/gtest.h>

#include "ingest/formats/segment.h"
#include "formats_test_util.h"

namespace sluice::testing {
namespace {

// analytics-node 3.1.0, POST /v1/batch (ids and times as captured).
constexpr std::string_view kSegmentBatch = R"({"batch":[
  {"timestamp":"2026-11-27T06:44:22.685Z","integrations":{},"event":"Order Completed","type":"track",
   "properties":{"order_id":"o-1001","revenue":42.5,"currency":"EUR","coupon":null,"items":[{"sku":"sku-1","qty":2}]},
   "context":{"ip":"203.0.113.7","app":{"name":"demo","version":"1.2.3"},"library":{"name":"@segment/analytics-node","version":"3.1.0"}},
   "userId":"user-123","anonymousId":"anon-456-device",
   "messageId":"node-next-1795761862685-392c136b-0a94-4249-b129-a0c0cbd8764d",
   "_metadata":{"nodeVersion":"v20.20.2","jsRuntime":"node"}},
  {"timestamp":"2026-11-27T06:44:22.686Z","integrations":{},"type":"identify","userId":"user-123",
   "traits":{"email":"ada@example.com","plan":"pro","logins":7},
   "context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}},
   "messageId":"node-next-1795761862686-136b0a94-f249-4129-a0c0-cbd8764d9933","_metadata":{"nodeVersion":"v20.20.2","jsRuntime":"node"}},
  {"timestamp":"2026-11-27T06:44:22.687Z","integrations":{},"type":"page","name":"Pricing","category":"Docs",
   "properties":{"url":"https://example.com/pricing","category":"Docs"},"anonymousId":"anon-456-device",
   "context":{"library":{"name":"@segment/analytics-node","version":"3.1.0"}},"messageId":"node-next-3"},
  {"timestamp":"2026-11-27T06:44:22.688Z","integrations":{},"type":"screen","name":"Home","properties":{"tab":"feed"},
   "userId":"user-123","messageId":"node-next-4"},
  {"timestamp":"2026-11-27T06:44:22.689Z","integrations":{},"type":"group","groupId":"org-9",
   "traits":{"name":"Acme","employees":42},"userId":"user-123","messageId":"node-next-5"},
  {"timestamp":"2026-11-27T06:44:22.690Z","integrations":{},"type":"alias","previousId":"anon-456-device",
   "userId":"user-123","messageId":"node-next-6"}],
 "writeKey":"SEGMENT_WRITE_KEY_test","sentAt":"2026-11-27T06:44:22.747Z"})";

// rudder-sdk-node 3.0.13: no writeKey in the body (Basic auth only),
// originalTimestamp instead of timestamp, traits copied into context.traits.
constexpr std::string_view kRudderBatch = R"({"batch":[
  {"userId":"user-123","anonymousId":"anon-456-device","event":"Order Completed",
   "properties":{"order_id":"o-1001","revenue":42.5,"currency":"EUR","items":[{"sku":"sku-1","qty":2}]},
   "context":{"ip":"203.0.113.7","app":{"name":"demo","version":"1.2.3"},"library":{"name":"analytics-node","version":"3.0.13"}},
   "type":"track","channel":"server","_metadata":{"nodeVersion":"20.20.2"},
   "originalTimestamp":"2026-11-27T06:44:37.543Z","messageId":"8d7b8a42-3061-4e2f-b7ee-3c7f0627f34b","sentAt":"2026-11-27T06:44:37.543Z"},
  {"userId":"user-123","traits":{"email":"ada@example.com","plan":"pro"},
   "context":{"traits":{"email":"ada@example.com","plan":"pro"},"library":{"name":"analytics-node","version":"3.0.13"}},
   "type":"identify","channel":"server","_metadata":{"nodeVersion":"20.20.2"},
   "originalTimestamp":"2026-11-27T06:44:37.544Z","messageId":"5f0c1c55-8f7a-4c0e-9d7e-2f1f5d0a6b11","sentAt":"2026-11-27T06:44:37.544Z"},
  {"anonymousId":"anon-456-device","event":"Batch Event","properties":{"i":0},"type":"track","channel":"server",
   "originalTimestamp":"2026-11-27T06:44:37.545Z","timestamp":"2024-01-01T00:00:00.000Z",
   "messageId":"0b6a3c1e-2d4f-4a5b-8c9d-0e1f2a3b4c5d","sentAt":"2026-11-27T06:44:37.545Z"}],
 "timestamp":"2026-11-27T06:44:37.545Z","sentAt":"2026-11-27T06:44:37.545Z"})";

const Format& Segment() { return FormatNamed("segment"); }

TestRequest Batch(std::string_view body) {
  TestRequest t;
  t.path = "/v1/batch";
  t.body = std::string(body);
  return t;
}

TEST(SegmentFormat, AnalyticsNodeBatchDecodesEveryMessageType) {
  DecodeResult r = DecodeWith(Segment(), Batch(kSegmentBatch));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "SEGMENT_WRITE_KEY_test");
  ASSERT_EQ(r.events.size(), 6u);

  const Event& track = r.events[0];
  EXPECT_EQ(track.insert_id, "node-next-1795761862685-392c136b-0a94-4249-b129-a0c0cbd8764d");
  EXPECT_EQ(track.event, "Order Completed");
  EXPECT_EQ(track.type, "track");
  EXPECT_EQ(track.user_id, "user-123");
  EXPECT_EQ(track.anonymous_id, "anon-456-device");
  EXPECT_EQ(track.time_ms, Ms("2026-11-27T06:44:22.685Z"));
  EXPECT_EQ(track.received_ms, kNowMs);
  EXPECT_EQ(track.properties,
            R"({"order_id":"o-1001","revenue":42.5,"currency":"EUR","coupon":null,)"
            R"("items":[{"sku":"sku-1","qty":2}]})");
  EXPECT_EQ(track.set, "");

  const Event& identify = r.events[1];
  EXPECT_EQ(identify.event, "$identify");
  EXPECT_EQ(identify.type, "identify");
  EXPECT_EQ(identify.set, R"({"email":"ada@example.com","plan":"pro","logins":7})");
  EXPECT_EQ(identify.properties, "");

  const Event& page = r.events[2];
  EXPECT_EQ(page.event, "$page");
  EXPECT_EQ(page.type, "page");
  EXPECT_EQ(page.user_id, "");
  EXPECT_EQ(page.anonymous_id, "anon-456-device");
  EXPECT_EQ(page.properties,
            R"({"name":"Pricing","category":"Docs","url":"https://example.com/pricing"})");

  EXPECT_EQ(r.events[3].event, "$screen");
  EXPECT_EQ(r.events[3].properties, R"({"name":"Home","tab":"feed"})");
  EXPECT_EQ(r.events[4].event, "$group");
  EXPECT_EQ(r.events[4].properties,
            R"({"group_id":"org-9","traits":{"name":"Acme","employees":42}})");
  EXPECT_EQ(r.events[5].event, "$alias");
  EXPECT_EQ(r.events[5].type, "alias");
  EXPECT_EQ(r.events[5].properties, R"({"previous_id":"anon-456-device"})");
}

TEST(SegmentFormat, GzippedRudderStackBatchWithFormContentTypeDecodes) {
  TestRequest t = Batch(Gzip(kRudderBatch));
  t.content_type = "application/x-www-form-urlencoded";
  t.basic_user = "RUDDER_WRITE_KEY_test";
  DecodeResult r = DecodeWith(Segment(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  // No key in the body: the service falls back to the Basic auth user.
  EXPECT_EQ(r.write_key, "");
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.events[0].insert_id, "8d7b8a42-3061-4e2f-b7ee-3c7f0627f34b");
  EXPECT_EQ(r.events[0].time_ms, Ms("2026-11-27T06:44:37.543Z"));  // originalTimestamp
  EXPECT_EQ(r.events[1].set, R"({"email":"ada@example.com","plan":"pro"})");
  EXPECT_EQ(r.events[2].user_id, "");
  EXPECT_EQ(r.events[2].anonymous_id, "anon-456-device");
  EXPECT_EQ(r.events[2].time_ms, Ms("2024-01-01T00:00:00Z"));  // timestamp wins
}

TEST(SegmentFormat, SingleMessageRoutesTakeTheTypeFromThePath) {
  TestRequest t;
  t.path = "/v1/identify";
  t.body = R"({"writeKey":"k","userId":42,"context":{"traits":{"plan":"free"}}})";
  DecodeResult r = DecodeWith(Segment(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].type, "identify");
  EXPECT_EQ(r.events[0].user_id, "42");  // numeric ids become strings
  EXPECT_EQ(r.events[0].set, R"({"plan":"free"})");  // context.traits fallback
  EXPECT_EQ(r.events[0].time_ms, kNowMs);          // no timestamp: receive time
  EXPECT_FALSE(r.events[0].insert_id.empty());     // no messageId: generated

  t.path = "/v1/track/";
  t.body = R"({"userId":"u","event":"Signed Up","properties":{"plan":"pro"}})";
  r = DecodeWith(Segment(), t);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].event, "Signed Up");
  EXPECT_EQ(r.write_key, "");
}

TEST(SegmentFormat, EveryTimestampShapeParses) {
  const std::pair<std::string, int64_t> cases[] = {
      {R"("2024-01-01T00:00:00Z")", 1704067200000},
      {R"("2024-01-01T00:00:00.123Z")", 1704067200123},
      {R"("2024-01-01T00:00:00.123456Z")", 1704067200123},
      {R"("2024-01-01T02:00:00+02:00")", 1704067200000},
      {R"("2024-01-01T02:00:00.5+0200")", 1704067200500},
      {R"("2023-12-31T19:00:00-05:00")", 1704067200000},
      {R"("2024-01-01 00:00:00")", 1704067200000},
      {R"(1704067200000)", 1704067200000},
      {R"("1704067200000")", 1704067200000},
      {R"(null)", kNowMs},
  };
  for (const auto& [ts, want] : cases) {
    TestRequest t = Batch(R"({"batch":[{"type":"track","event":"e","userId":"u","timestamp":)" +
                          ts + "}]}");
    DecodeResult r = DecodeWith(Segment(), t);
    ASSERT_TRUE(r.status.ok()) << ts << ": " << r.status.ToString();
    EXPECT_EQ(r.events[0].time_ms, want) << ts;
  }
}

TEST(SegmentFormat, BadMessagesNameTheirIndexAndField) {
  struct Case {
    std::string body;
    int32_t index;
    std::string field;
  };
  const Case cases[] = {
      {R"({"batch":[{"type":"track","event":"e","userId":"u"},{"type":"track","event":"e"}]})", 1,
       "userId"},
      {R"({"batch":[{"type":"track","userId":"u"}]})", 0, "event"},
      {R"({"batch":[{"type":"bogus","userId":"u"}]})", 0, "type"},
      {R"({"batch":[{"type":"track","event":"e","userId":"u","timestamp":"yesterday"}]})", 0,
       "timestamp"},
      {R"({"batch":[{"type":"track","event":"e","userId":"u","properties":[1,2]}]})", 0,
       "properties"},
      {R"({"batch":[{"type":"identify","userId":"u","traits":"x"}]})", 0, "traits"},
      {R"({"batch":[{"type":"group","userId":"u"}]})", 0, "groupId"},
      {R"({"batch":[{"type":"alias","userId":"u"}]})", 0, "previousId"},
      {R"({"batch":[{"type":"track","event":"e","userId":{"a":1}}]})", 0, "userId"},
      {R"({"batch":[{"type":"track","event":"e","userId":"u","messageId":true}]})", 0,
       "messageId"},
      {R"({"batch":[{"type":"track","event":"e","userId":"u"},7]})", 1, ""},
      {R"({"batch":{}})", -1, "batch"},
      {R"({"writeKey":5,"batch":[]})", -1, "writeKey"},
      {R"([1,2])", -1, ""},
      {R"({"batch":[)", -1, ""},
      {"\x1f\x8b\x08\x00garbage", -1, ""},
  };
  for (const Case& c : cases) {
    DecodeResult r = DecodeWith(Segment(), Batch(c.body));
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << c.body;
    EXPECT_EQ(r.index, c.index) << c.body;
    EXPECT_EQ(r.field, c.field) << c.body;
    EXPECT_TRUE(r.events.empty()) << c.body;
  }
}

TEST(SegmentFormat, LimitsAreEnforced) {
  DecodeLimits limits;
  limits.max_events = 2;
  std::string three = R"({"batch":[)";
  for (int i = 0; i < 3; ++i) {
    three += std::string(i ? "," : "") + R"({"type":"track","event":"e","userId":"u"})";
  }
  three += "]}";
  EXPECT_EQ(DecodeWith(Segment(), Batch(three), limits).status.code(), Code::kTooLarge);

  limits = DecodeLimits();
  limits.max_string_bytes = 8;
  EXPECT_EQ(DecodeWith(Segment(),
                       Batch(R"({"batch":[{"type":"track","event":"a-long-event-name","userId":"u"}]})"),
                       limits)
                .status.code(),
            Code::kInvalidArgument);

  limits = DecodeLimits();
  limits.max_json_depth = 4;
  EXPECT_EQ(DecodeWith(Segment(),
                       Batch(R"({"batch":[{"type":"track","event":"e","userId":"u","properties":{"a":{"b":1}}}]})"),
                       limits)
                .status.code(),
            Code::kInvalidArgument);

  limits = DecodeLimits();
  limits.max_event_bytes = 200;
  const std::string big =
      R"({"batch":[{"type":"track","event":"e","userId":"u","properties":{"p":")" +
      std::string(300, 'x') + R"("}}]})";
  DecodeResult r = DecodeWith(Segment(), Batch(big), limits);
  EXPECT_EQ(r.status.code(), Code::kTooLarge);
  EXPECT_EQ(r.index, 0);

  limits = DecodeLimits();
  limits.max_decompressed_bytes = 100;
  EXPECT_EQ(DecodeWith(Segment(), Batch(Gzip(kSegmentBatch)), limits).status.code(),
            Code::kTooLarge);
}

TEST(SegmentFormat, RepliesUseStatusesTheSdksHandle) {
  IngestReply ok = Segment().Reply(Outcome(Status::Ok(), 6));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, R"({"success":true,"accepted":6,"duplicates":0})");

  // Dropped (not retried) by analytics-node and rudder-sdk-node.
  EXPECT_EQ(Segment().Reply(Outcome(Status::Unauthorized("unknown write key"))).status, 401);
  IngestOutcome bad = Outcome(Status::InvalidArgument("batch[1]: userId or anonymousId is required"));
  bad.index = 1;
  bad.field = "userId";
  IngestReply r = Segment().Reply(bad);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find(R"("index":1)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("field":"userId")"), std::string::npos) << r.body;
  EXPECT_EQ(Segment().Reply(Outcome(Status::TooLarge("too big"))).status, 413);

  // Retried: 429 + Retry-After for a full queue, 503 + Retry-After when the store is down.
  r = Segment().Reply(Outcome(Status::Busy("full")));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.retry_after_s, 5);
  r = Segment().Reply(Outcome(Status::Unavailable("down")));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.retry_after_s, 5);
}

TEST(SegmentFormat, OwnsTheSegmentRoutesOnly) {
  for (const char* path : {"/v1/batch", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen",
                           "/v1/group", "/v1/alias", "/v1/batch/"}) {
    const Format* f = RouteFor("POST", path);
    ASSERT_NE(f, nullptr) << path;
    EXPECT_EQ(f->name(), "segment") << path;
  }
  EXPECT_FALSE(Segment().Matches("GET", "/v1/batch"));
  EXPECT_FALSE(Segment().Matches("POST", "/v1/events"));
  EXPECT_FALSE(Segment().Matches("POST", "/v1/batchx"));
}

}  // namespace
}  // namespace sluice::testing
