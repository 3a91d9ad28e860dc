// WebhookConsumer against a local HTTP receiver that fails, rate-limits and
// recovers; Deliver is called again and again as the watcher would.
#include "consumers/webhook/webhook_consumer.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <map>
#include <set>

#include "common/clock.h"
#include "consumers/registry/registry.h"
#include "testing/decoded.h"
#include "testing/fake_clock.h"
#include "testing/sink_servers.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::Decoded;
using testing::HttpReceiver;
using testing::MakeEvents;
using testing::ReceivedRequest;
using testing::Reply;

constexpr int64_t kBase = 1714557600000;  // 2024-05-01T10:00:00Z

Delivery Deliv(const std::vector<DecodedEvent>& ptrs) {
  Delivery d;
  d.events = ptrs;
  d.deadline_mono_ms = Clock::Real().MonoMs() + 5000;
  return d;
}

// Calls Deliver until it succeeds (or 15 s pass); returns the statuses seen.
std::vector<Status> DeliverUntilOk(Consumer* c, const std::vector<DecodedEvent>& ptrs) {
  std::vector<Status> seen;
  testing::WaitUntil(
      [&] {
        Status st = c->Deliver(Deliv(ptrs));
        const bool ok = st.ok();
        seen.push_back(std::move(st));
        return ok;
      },
      15s, 20ms);
  return seen;
}

// Fails the first `fail` calls with 500, then answers 429 (Retry-After: 1)
// once, then 200.
struct FlakyReceiver {
  explicit FlakyReceiver(int fail)
      : fail_first(fail), server([this](const ReceivedRequest&) {
          const int n = calls.fetch_add(1);
          if (n < fail_first) return Reply{500, {}, "boom"};
          if (n == fail_first) {
            at_429 = Clock::Real().MonoMs();
            return Reply{429, {{"Retry-After", "1"}}, "slow down"};
          }
          if (after_429 == 0) after_429 = Clock::Real().MonoMs();
          return Reply{};
        }) {}
  const int fail_first;
  std::atomic<int> calls{0};
  std::atomic<int64_t> at_429{0};
  std::atomic<int64_t> after_429{0};
  HttpReceiver server;
};

TEST(Webhook, PerEventDeliversAfterFailuresAnd429WithStableKeys) {
  FlakyReceiver rx(3);
  WebhookOptions o;
  o.url = rx.server.url();
  WebhookConsumer c("hook", 1 << 9, o, nullptr);
  auto events = MakeEvents(1, 5, "shop", kBase);
  const auto seen = DeliverUntilOk(&c, Decoded(events));
  ASSERT_TRUE(!seen.empty() && seen.back().ok()) << (seen.empty() ? "" : seen.back().ToString());
  // 3 x 500, one 429, then each event once: acknowledged events are not re-sent.
  const auto reqs = rx.server.requests();
  ASSERT_EQ(reqs.size(), 9u);
  bool saw_retry_after = false;
  for (const Status& st : seen) {
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
    }
    if (st.message().find("retry after 1000 ms") != std::string::npos) saw_retry_after = true;
  }
  EXPECT_TRUE(saw_retry_after);
  // Retry-After: 1 was honoured: nothing reached the receiver for ~1 s.
  EXPECT_GE(rx.after_429.load() - rx.at_429.load(), 950);
  // Keys: the same for every attempt at an event, one distinct key per event.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(reqs[i].headers.at("idempotency-key"), WebhookConsumer::EventKey(events[0]));
  }
  std::set<std::string> keys;
  for (size_t i = 4; i < reqs.size(); ++i) {
    EXPECT_EQ(reqs[i].headers.at("idempotency-key"), WebhookConsumer::EventKey(events[i - 4]));
    keys.insert(reqs[i].headers.at("idempotency-key"));
    EXPECT_EQ(reqs[i].headers.at("content-type"), "application/json");
    // Discord-compatible default body.
    simdjson::dom::parser p;
    std::string_view content;
    ASSERT_EQ(p.parse(reqs[i].body)["content"].get(content), simdjson::SUCCESS) << reqs[i].body;
    EXPECT_EQ(content, "ev" + std::to_string(events[i - 4].seq % 3) + " from user-" +
                           std::to_string(events[i - 4].seq % 5) + " in shop");
  }
  EXPECT_EQ(keys.size(), 5u);
  // Connection reuse: one connection for all requests.
  EXPECT_EQ(rx.server.connections(), 1);
}

TEST(Webhook, PerBatchSendsOnePostWithTheSameKeyOnEveryRetry) {
  FlakyReceiver rx(2);
  WebhookOptions o;
  o.url = rx.server.url();
  o.per_batch = true;
  o.max_lines = 3;
  WebhookConsumer c("hook", 1 << 9, o, nullptr);
  auto events = MakeEvents(10, 5, "shop", kBase);
  const auto seen = DeliverUntilOk(&c, Decoded(events));
  ASSERT_TRUE(!seen.empty() && seen.back().ok());
  const auto reqs = rx.server.requests();
  ASSERT_EQ(reqs.size(), 4u);  // 500, 500, 429, 200
  const std::string key = WebhookConsumer::BatchKey(Decoded(events));
  for (const auto& r : reqs) EXPECT_EQ(r.headers.at("idempotency-key"), key);
  // The key does not depend on the order of the events.
  auto ptrs = Decoded(events);
  std::reverse(ptrs.begin(), ptrs.end());
  EXPECT_EQ(WebhookConsumer::BatchKey(ptrs), key);
  simdjson::dom::parser p;
  std::string_view content;
  ASSERT_EQ(p.parse(reqs.back().body)["content"].get(content), simdjson::SUCCESS);
  EXPECT_EQ(content,
            "5 events\nev1 from user-0 in shop\nev2 from user-1 in shop\n"
            "ev0 from user-2 in shop\n... and 2 more");
}

TEST(Webhook, RetryAfterKeepsFurtherDeliveriesAwayFromTheReceiver) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{429, {{"Retry-After", "30"}}, ""}; });
  WebhookOptions o;
  o.url = rx.url();
  WebhookConsumer c("hook", 1 << 9, o, nullptr);
  EXPECT_EQ(c.RetryAfterMs(), 0);
  auto events = MakeEvents(1, 2, "p", kBase);
  Status st = c.Deliver(Deliv(Decoded(events)));
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("retry after 30000 ms"), std::string::npos) << st.message();
  EXPECT_GT(c.RetryAfterMs(), 29000);
  EXPECT_LE(c.RetryAfterMs(), 30000);
  st = c.Deliver(Deliv(Decoded(events)));
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("Retry-After"), std::string::npos) << st.message();
  EXPECT_EQ(rx.count(), 1u);
}

// A webhook consumer on a FakeClock, posting one event to `rx`.
struct FakeClockHook {
  explicit FakeClockHook(const HttpReceiver& rx)
      : events(MakeEvents(1, 1, "p", kBase)), ptrs(Decoded(events)), consumer([&] {
          WebhookOptions o;
          o.url = rx.url();
          return WebhookConsumer("hook", 1 << 9, o, nullptr, &clock);
        }()) {}

  Status Deliver() {
    Delivery d;
    d.events = ptrs;
    d.deadline_mono_ms = clock.MonoMs() + 5000;
    return consumer.Deliver(d);
  }

  testing::FakeClock clock;
  std::vector<ClaimedEvent> events;
  std::vector<DecodedEvent> ptrs;
  WebhookConsumer consumer;
};

// The Retry-After window is on the injected clock: it opens only when that
// clock has moved past it, whatever the real time does.
TEST(Webhook, RetryAfterWindowOpensOnlyWhenTheClockPassesIt) {
  std::atomic<int> calls{0};
  HttpReceiver rx([&](const ReceivedRequest&) {
    return calls.fetch_add(1) == 0 ? Reply{429, {{"Retry-After", "2"}}, ""} : Reply{};
  });
  FakeClockHook hook(rx);
  EXPECT_EQ(hook.Deliver().code(), Code::kUnavailable);
  EXPECT_EQ(rx.count(), 1u);
  EXPECT_EQ(hook.consumer.RetryAfterMs(), 2000);
  hook.clock.Advance(1999);
  EXPECT_EQ(hook.consumer.RetryAfterMs(), 1);
  EXPECT_EQ(hook.Deliver().code(), Code::kUnavailable);
  EXPECT_EQ(rx.count(), 1u);  // still inside the window: the receiver was left alone
  hook.clock.Advance(1);
  EXPECT_EQ(hook.consumer.RetryAfterMs(), 0);
  EXPECT_TRUE(hook.Deliver().ok());
  EXPECT_EQ(rx.count(), 2u);
}

// An HTTP-date Retry-After is read against the clock's wall time.
TEST(Webhook, RetryAfterDateIsMeasuredFromTheClocksWallTime) {
  // FakeClock's default wall time is 2024-05-01T10:00:00Z.
  HttpReceiver rx([](const ReceivedRequest&) {
    return Reply{503, {{"Retry-After", "Wed, 01 May 2024 10:00:42 GMT"}}, ""};
  });
  FakeClockHook hook(rx);
  EXPECT_EQ(hook.Deliver().code(), Code::kUnavailable);
  EXPECT_EQ(hook.consumer.RetryAfterMs(), 42000);
}

TEST(Webhook, TemplateValuesAreJsonEscapedAndJsonIsRaw) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{}; });
  WebhookOptions o;
  o.url = rx.url();
  o.template_text = R"({"text":"{{event}}: {{properties}} at {{time}}","raw":{{json}}})";
  WebhookConsumer c("hook", 1 << 9, o, nullptr);
  ClaimedEvent row;
  row.seq = 42;
  row.project = "p";
  row.insert_id = "abc";
  Event e;
  e.event = "say \"hi\"\n";
  e.user_id = "u";
  e.time_ms = kBase;
  e.properties = R"({"k":"v\"w"})";
  row.body = ToBody(e);
  const ClaimedEvent* rows[] = {&row};
  std::vector<DecodedEvent> ptrs = Decoded(rows);
  ASSERT_TRUE(c.Deliver(Deliv(ptrs)).ok());
  ASSERT_EQ(rx.count(), 1u);
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  ASSERT_EQ(p.parse(rx.requests()[0].body).get(doc), simdjson::SUCCESS) << rx.requests()[0].body;
  std::string_view text, raw_event, raw_id;
  int64_t seq = 0;
  ASSERT_EQ(doc["text"].get(text), simdjson::SUCCESS);
  EXPECT_EQ(text, "say \"hi\"\n: {\"k\":\"v\\\"w\"} at 2024-05-01T10:00:00.000Z");
  ASSERT_EQ(doc["raw"]["event"].get(raw_event), simdjson::SUCCESS);
  EXPECT_EQ(raw_event, e.event);
  ASSERT_EQ(doc["raw"]["insert_id"].get(raw_id), simdjson::SUCCESS);
  EXPECT_EQ(raw_id, "abc");
  ASSERT_EQ(doc["raw"]["seq"].get(seq), simdjson::SUCCESS);
  EXPECT_EQ(seq, 42);
}

TEST(Webhook, PermanentClientErrorIsIoErrorAndTransportErrorIsUnavailable) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{404, {}, "no such hook"}; });
  WebhookOptions o;
  o.url = rx.url();
  WebhookConsumer c("hook", 1 << 9, o, nullptr);
  auto events = MakeEvents(1, 1, "p", kBase);
  Status st = c.Deliver(Deliv(Decoded(events)));
  EXPECT_EQ(st.code(), Code::kIoError);
  EXPECT_NE(st.message().find("404"), std::string::npos);

  o.url = "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/hook";
  WebhookConsumer down("down", 1 << 9, o, nullptr);
  EXPECT_EQ(down.Deliver(Deliv(Decoded(events))).code(), Code::kUnavailable);
}

TEST(Webhook, ConfigIsValidatedAndExtraHeadersAreSent) {
  HttpReceiver rx([](const ReceivedRequest&) { return Reply{}; });
  Metrics m;
  ConsumerConfig cfg;
  cfg.type = "webhook";
  cfg.name = "discord";
  cfg.bit = 9;
  cfg.options = {{"url", rx.url()}, {"template", R"({"content":"{{nope}}"})"}};
  auto bad = MakeConsumers({cfg}, &m);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nope"), std::string::npos);
  cfg.options = {{"url", rx.url()}, {"mode", "sometimes"}};
  EXPECT_FALSE(MakeConsumers({cfg}, &m).ok());
  cfg.options = {{"url", rx.url()},
                 {"headers.Authorization", "Bearer t0k"},
                 {"idempotency_header", "X-Key"},
                 {"timeout", "2s"}};
  cfg.events = {"ev1"};  // filtered by the registry's FilteredConsumer
  auto r = MakeConsumers({cfg}, &m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto events = MakeEvents(1, 6, "p", kBase);  // ev1 twice (seq 1, 4)
  ASSERT_TRUE((*r)[0]->Deliver(Deliv(Decoded(events))).ok());
  const auto reqs = rx.requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& req : reqs) {
    EXPECT_EQ(req.headers.at("authorization"), "Bearer t0k");
    EXPECT_EQ(req.headers.count("x-key"), 1u);
    EXPECT_NE(req.body.find("ev1"), std::string::npos);
  }
}

}  // namespace
}  // namespace sluice
