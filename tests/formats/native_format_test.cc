#include <gtest/gtest.h>

#include "common/time.h"
#include "ingest/formats/native.h"

namespace sluice {
namespace {

constexpr int64_t kNow = 1714557600000;  // 2024-05-01T10:00:00Z

DecodeResult Decode(std::string_view body, const DecodeLimits& limits = {}) {
  auto format = NewNativeFormat();
  IngestRequest req;
  req.method = "POST";
  req.path = "/v1/events";
  req.body = body;
  req.now_ms = kNow;
  return format->Decode(req, limits);
}

// Wraps one event object into a request body.
std::string One(std::string_view event_json) {
  return "{\"events\":[" + std::string(event_json) + "]}";
}

void ExpectError(const DecodeResult& r, Code code, int32_t index, std::string_view field) {
  EXPECT_EQ(r.status.code(), code) << r.status.ToString();
  EXPECT_EQ(r.index, index) << r.status.ToString();
  EXPECT_EQ(r.field, field) << r.status.ToString();
  EXPECT_TRUE(r.events.empty());
}

TEST(NativeFormat, OwnsPostV1EventsOnly) {
  auto f = NewNativeFormat();
  EXPECT_TRUE(f->Matches("POST", "/v1/events"));
  EXPECT_FALSE(f->Matches("GET", "/v1/events"));
  EXPECT_FALSE(f->Matches("POST", "/v1/batch"));
  EXPECT_EQ(f->name(), "native");
}

TEST(NativeFormat, DecodesEveryField) {
  auto r = Decode(R"({"write_key":"wk1","events":[{"insert_id":"id-1","event":"signup",
    "user_id":"u1","anonymous_id":"a1","time":"2024-05-01T10:00:00.123Z","type":"identify",
    "properties":{"plan": "pro", "n": [1, 2, {"x": null}]},
    "user_properties":{"$set":{"email":"a@b.c"},"$set_once":{"first":"2024"}},
    "ignored_future_field":42}]})");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.write_key, "wk1");
  ASSERT_EQ(r.events.size(), 1u);
  const Event& e = r.events[0];
  EXPECT_EQ(e.insert_id, "id-1");
  EXPECT_EQ(e.event, "signup");
  EXPECT_EQ(e.user_id, "u1");
  EXPECT_EQ(e.anonymous_id, "a1");
  EXPECT_EQ(e.time_ms, kNow + 123);
  EXPECT_EQ(e.type, "identify");
  EXPECT_EQ(e.properties, R"({"plan":"pro","n":[1,2,{"x":null}]})");
  EXPECT_EQ(e.set, R"({"email":"a@b.c"})");
  EXPECT_EQ(e.set_once, R"({"first":"2024"})");
  EXPECT_EQ(e.received_ms, kNow);
  EXPECT_TRUE(e.project.empty());
}

TEST(NativeFormat, EveryTimeShapeParses) {
  struct Case {
    const char* json;
    int64_t want;
  } cases[] = {
      {R"("2024-05-01T10:00:00Z")", kNow},
      {R"("2024-05-01T12:00:00+02:00")", kNow},
      {R"("2024-05-01T10:00:00.5Z")", kNow + 500},
      {R"(1714557600000)", kNow},
      {R"(1714557600000.9)", kNow},
      {R"("1714557600000")", kNow},
      {R"(null)", kNow},  // absent -> receive time
  };
  for (const auto& c : cases) {
    auto r = Decode(One(std::string(R"({"event":"e","user_id":"u","time":)") + c.json + "}"));
    ASSERT_TRUE(r.status.ok()) << c.json << ": " << r.status.ToString();
    EXPECT_EQ(r.events[0].time_ms, c.want) << c.json;
  }
  auto missing = Decode(One(R"({"event":"e","anonymous_id":"a"})"));
  ASSERT_TRUE(missing.status.ok());
  EXPECT_EQ(missing.events[0].time_ms, kNow);
}

TEST(NativeFormat, BadTimesAre400WithField) {
  for (const char* t :
       {R"("yesterday")", R"(true)", R"(-5)", R"({})", R"("2024-13-45")", R"(1e300)"}) {
    auto r = Decode(One(std::string(R"({"event":"e","user_id":"u","time":)") + t + "}"));
    ExpectError(r, Code::kInvalidArgument, 0, "time");
  }
}

TEST(NativeFormat, MissingInsertIdGetsARandomUuid) {
  auto r = Decode(R"({"events":[{"event":"e","user_id":"u"},{"event":"e","user_id":"u"}]})");
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].insert_id.size(), 36u);
  EXPECT_EQ(r.events[0].insert_id[14], '4');
  EXPECT_NE(r.events[0].insert_id, r.events[1].insert_id);
}

TEST(NativeFormat, MalformedJsonIs400ForTheRequest) {
  for (const char* body : {"", "{", "{\"events\":[", "not json", "[1,2]", "{\"events\":{}}",
                           "{\"events\":[{\"event\":\"e\",}]}", "{\"x\":1}"}) {
    auto r = Decode(body);
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << body;
    EXPECT_EQ(r.index, -1) << body;
  }
  ExpectError(Decode("{\"x\":1}"), Code::kInvalidArgument, -1, "events");
}

TEST(NativeFormat, WrongTypesNameTheIndexAndField) {
  ExpectError(Decode(R"({"events":[{"event":"ok","user_id":"u"},{"event":5,"user_id":"u"}]})"),
              Code::kInvalidArgument, 1, "event");
  ExpectError(Decode(One(R"({"event":"e","user_id":7})")), Code::kInvalidArgument, 0, "user_id");
  ExpectError(Decode(One(R"({"event":"e","anonymous_id":[]})")), Code::kInvalidArgument, 0,
              "anonymous_id");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","insert_id":12})")), Code::kInvalidArgument,
              0, "insert_id");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","properties":[1]})")),
              Code::kInvalidArgument, 0, "properties");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","properties":"x"})")),
              Code::kInvalidArgument, 0, "properties");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","user_properties":1})")),
              Code::kInvalidArgument, 0, "user_properties");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","user_properties":{"$set":2}})")),
              Code::kInvalidArgument, 0, "user_properties.$set");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","user_properties":{"$append":{}}})")),
              Code::kInvalidArgument, 0, "user_properties.$append");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","user_properties":{"$unset":"plan"}})")),
              Code::kInvalidArgument, 0, "user_properties.$unset");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","user_properties":{"$add":{"n":"x"}}})")),
              Code::kInvalidArgument, 0, "user_properties.$add");
  ExpectError(Decode(One(R"({"event":"e","type":"alias","user_id":"u"})")),
              Code::kInvalidArgument, 0, "previous_id");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","type":"weird"})")), Code::kInvalidArgument,
              0, "type");
  ExpectError(Decode(R"({"events":[1]})"), Code::kInvalidArgument, 0, "");
  ExpectError(Decode(R"({"write_key":5,"events":[]})"), Code::kInvalidArgument, -1, "write_key");
}

TEST(NativeFormat, MissingEventNameOrUserIs400) {
  ExpectError(Decode(One(R"({"user_id":"u"})")), Code::kInvalidArgument, 0, "event");
  ExpectError(Decode(One(R"({"event":"","user_id":"u"})")), Code::kInvalidArgument, 0, "event");
  ExpectError(Decode(One(R"({"event":"e"})")), Code::kInvalidArgument, 0, "user_id");
  ExpectError(Decode(One(R"({"event":"e","user_id":"","anonymous_id":null})")),
              Code::kInvalidArgument, 0, "user_id");
}

std::string Events(int n) {
  std::string body = "{\"events\":[";
  for (int i = 0; i < n; ++i) {
    if (i) body += ",";
    body += R"({"event":"e","user_id":"u","insert_id":"i)" + std::to_string(i) + "\"}";
  }
  return body + "]}";
}

TEST(NativeFormat, ThousandEventsPassAndOneMoreIs413) {
  auto ok = Decode(Events(1000));
  ASSERT_TRUE(ok.status.ok()) << ok.status.ToString();
  EXPECT_EQ(ok.events.size(), 1000u);
  ExpectError(Decode(Events(1001)), Code::kTooLarge, -1, "events");
}

TEST(NativeFormat, DepthBombIs400) {
  std::string deep = R"({"event":"e","user_id":"u","properties":)";
  for (int i = 0; i < 100000; ++i) deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 100000; ++i) deep += "}";
  deep += "}";
  auto r = Decode(One(deep));
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  EXPECT_NE(r.status.message().find("deeper"), std::string::npos) << r.status.ToString();

  DecodeLimits limits;
  limits.max_json_depth = 6;
  EXPECT_TRUE(
      Decode(One(R"({"event":"e","user_id":"u","properties":{"a":{"b":1}}})"), limits).status.ok());
  EXPECT_EQ(Decode(One(R"({"event":"e","user_id":"u","properties":{"a":{"b":{"c":1}}}})"), limits)
                .status.code(),
            Code::kInvalidArgument);
}

TEST(NativeFormat, InvalidUtf8Is400) {
  std::string body = One(R"({"event":"e)" + std::string("\xc3\x28") + R"(","user_id":"u"})");
  auto r = Decode(body);
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  EXPECT_NE(r.status.message().find("UTF-8"), std::string::npos) << r.status.ToString();
}

TEST(NativeFormat, OverlongStringsAre400) {
  DecodeLimits limits;
  limits.max_string_bytes = 10;
  ExpectError(Decode(One(R"({"event":"12345678901","user_id":"u"})"), limits),
              Code::kInvalidArgument, 0, "event");
  ExpectError(
      Decode(One(R"({"event":"e","user_id":"u","properties":{"k":"12345678901"}})"), limits),
      Code::kInvalidArgument, 0, "properties");
  ExpectError(
      Decode(One(R"({"event":"e","user_id":"u","properties":{"k":["12345678901"]}})"), limits),
      Code::kInvalidArgument, 0, "properties");
  ExpectError(Decode(One(R"({"event":"e","user_id":"u","properties":{"12345678901":1}})"), limits),
              Code::kInvalidArgument, 0, "properties");
}

TEST(NativeFormat, EmptyEventsArrayDecodesToNothing) {
  auto r = Decode(R"({"events":[]})");
  EXPECT_TRUE(r.status.ok());
  EXPECT_TRUE(r.events.empty());
}

TEST(NativeFormat, ReplyShapesSuccessAndErrors) {
  IngestOutcome ok;
  ok.accepted = 3;
  ok.duplicates = 1;
  auto r = NativeReply(ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"accepted":3,"duplicates":1})");

  IngestOutcome bad;
  bad.status = Status::InvalidArgument("event: \"x\"");
  bad.index = 2;
  bad.field = "event";
  r = NativeReply(bad);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, R"({"error":"event: \"x\"","index":2,"field":"event"})");
  EXPECT_EQ(r.retry_after_s, 0);

  IngestOutcome busy;
  busy.status = Status::Busy("full");
  busy.retry_after_s = 7;
  r = NativeReply(busy);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.retry_after_s, 7);
  EXPECT_EQ(r.body, R"({"error":"full"})");
}

TEST(NativeFormat, NativeReplyTakesTheDialectsStatusFromTheTable) {
  IngestOutcome busy;
  busy.status = Status::Busy("full");
  EXPECT_EQ(NativeReply(busy, HttpDialect::kSegment).status, 429);
  EXPECT_EQ(NativeReply(busy, HttpDialect::kSegment).retry_after_s, 1);
  IngestOutcome denied;
  denied.status = Status::Unauthorized("no key");
  EXPECT_EQ(NativeReply(denied).status, 401);
  EXPECT_EQ(NativeReply(denied).retry_after_s, 0);
}

// Every field the encoder writes, in every shape, decodes back to itself.
TEST(NativeEncoder, RoundTripsThroughTheDecoder) {
  std::vector<Event> in(4);
  in[0].insert_id = "id-0";
  in[0].event = "signup";
  in[0].user_id = "u\"1\\\n\xc3\xa9";  // escapes and UTF-8
  in[0].time_ms = 1700000000123;
  in[0].properties = R"({"plan":"pro","n":[1,2,{"x":null}]})";
  in[1].insert_id = "id-1";
  in[1].event = "$identify";
  in[1].anonymous_id = "anon-1";
  in[1].type = "identify";
  in[1].time_ms = 1;
  in[1].set = R"({"email":"a@b.c"})";
  in[1].set_once = R"({"first":"2024"})";
  in[2].insert_id = "id-2";
  in[2].event = "alias";
  in[2].user_id = "u2";
  in[2].anonymous_id = "anon-2";
  in[2].previous_id = "anon-2";
  in[2].type = "alias";
  in[2].time_ms = 253402300799999;  // the latest time the decoder accepts
  in[2].set_once = R"({"only":"once"})";
  in[3].insert_id = "id-3";
  in[3].event = "page_view";
  in[3].user_id = "u3";
  in[3].type = "page";
  in[3].time_ms = 1714557600000;
  in[3].set = R"({"k":1})";
  in[3].unset = R"(["gone"])";
  in[3].add = R"({"n":2.5})";

  const std::string body = EncodeNativeBody(in, "wk-1");
  DecodeResult r = Decode(body);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString() << "\n" << body;
  EXPECT_EQ(r.write_key, "wk-1");
  ASSERT_EQ(r.events.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    const Event& a = in[i];
    const Event& b = r.events[i];
    EXPECT_EQ(b.insert_id, a.insert_id);
    EXPECT_EQ(b.event, a.event);
    EXPECT_EQ(b.user_id, a.user_id);
    EXPECT_EQ(b.anonymous_id, a.anonymous_id);
    EXPECT_EQ(b.type, a.type);
    EXPECT_EQ(b.time_ms, a.time_ms);
    EXPECT_EQ(b.properties, a.properties);
    EXPECT_EQ(b.set, a.set);
    EXPECT_EQ(b.set_once, a.set_once);
    EXPECT_EQ(b.unset, a.unset);
    EXPECT_EQ(b.add, a.add);
    EXPECT_EQ(b.previous_id, a.previous_id);
    // What the queue stores is the same, too.
    Event stored_a = a, stored_b = b;
    stored_a.received_ms = stored_b.received_ms = kNow;
    EXPECT_EQ(ToBody(stored_b), ToBody(stored_a));
  }
}

TEST(NativeEncoder, LeavesOutDefaultsSoTheServerFillsThem) {
  Event e;
  e.event = "e";
  e.user_id = "u";
  std::string out;
  EncodeNativeEvent(e, &out);
  EXPECT_EQ(out, R"({"event":"e","user_id":"u"})");
  DecodeResult r = Decode(EncodeNativeBody(std::span<const Event>(&e, 1)));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[0].time_ms, kNow);         // receive time
  EXPECT_EQ(r.events[0].type, "track");         // the default type
  EXPECT_FALSE(r.events[0].insert_id.empty());  // generated
}

TEST(NativeEncoder, BuilderReportsOffsetsAndMixesRawEvents) {
  NativeBodyBuilder b;
  Event e;
  e.event = "a";
  e.user_id = "u";
  EXPECT_EQ(b.Add(e), std::string_view(R"({"events":[)").size());
  const size_t raw_at = b.AddRaw(R"({"event":"raw","user_id":"v","time":"2024-05-01T11:00:00Z"})");
  EXPECT_EQ(b.events(), 2);
  const std::string body = b.Finish();
  EXPECT_EQ(body.substr(raw_at, 12), R"({"event":"ra)");
  EXPECT_EQ(body, R"({"events":[{"event":"a","user_id":"u"},)"
                  R"({"event":"raw","user_id":"v","time":"2024-05-01T11:00:00Z"}]})");
  EXPECT_EQ(b.Finish(), R"({"events":[]})");  // the builder started over
  DecodeResult r = Decode(body);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.events[1].time_ms, kNow + 3600 * 1000);
}

}  // namespace
}  // namespace sluice
