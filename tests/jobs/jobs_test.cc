// The jobs library's pure parts: what a job is keyed by, the deltas its
// consumer builds (coalesced per key), the options' validation, the
// Idempotency-Key and the POST body.
#include <gtest/gtest.h>

#include <simdjson.h>

#include <deque>
#include <vector>

#include "common/event.h"
#include "common/metrics.h"
#include "jobs/job_consumer.h"
#include "jobs/job_runner.h"
#include "testing/decoded.h"

namespace sluice {
namespace {

JobOptions Job(const std::string& key = "user") {
  JobOptions j;
  j.name = "rescore";
  j.bit = 4;
  j.key = key;
  j.url = "http://127.0.0.1:1/x";
  j.delay_ms = 1000;
  j.max_delay_ms = 3000;
  EXPECT_TRUE(ValidateJobOptions("job[0]", &j).ok());
  return j;
}

ClaimedEvent Row(int64_t seq, const std::string& project, const Event& e) {
  ClaimedEvent c;
  c.seq = seq;
  c.project = project;
  c.insert_id = "i" + std::to_string(seq);
  c.body = ToBody(e);
  return c;
}

Event Ev(const std::string& user, const std::string& anon, int64_t t,
         const std::string& props = "") {
  Event e;
  e.event = "purchase";
  e.user_id = user;
  e.anonymous_id = anon;
  e.time_ms = t;
  e.properties = props;
  return e;
}

TEST(JobKeyFor, UserIsTheDistinctIdAndAnEventWithoutOneHasNoKey) {
  EXPECT_EQ(JobKeyFor(JobKeyKind::kUser, "", Ev("u1", "a1", 0)), "u1");
  EXPECT_EQ(JobKeyFor(JobKeyKind::kUser, "", Ev("", "a1", 0)), "a1");
  Event e = Ev("", "", 0);
  EXPECT_EQ(JobKeyFor(JobKeyKind::kUser, "", e), std::nullopt);
  e.project = "p";
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProject, "", e), "p");
}

TEST(JobKeyFor, PropertyKeyTakesStringsAndNumbersButNotObjectsOrMissing) {
  const std::string props = R"({"account_id":"acme","n":42,"o":{"a":1},"z":null})";
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProperty, "account_id", Ev("u", "", 0, props)), "acme");
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProperty, "n", Ev("u", "", 0, props)), "42");
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProperty, "o", Ev("u", "", 0, props)), std::nullopt);
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProperty, "z", Ev("u", "", 0, props)), std::nullopt);
  EXPECT_EQ(JobKeyFor(JobKeyKind::kProperty, "missing", Ev("u", "", 0, props)), std::nullopt);
}

TEST(JobConsumer, BatchBecomesOneDeltaPerProjectAndKeyWithCountsAndTimeRange) {
  Metrics metrics;
  JobConsumer c(Job(), &metrics);
  EXPECT_TRUE(c.in_store());
  EXPECT_EQ(c.bit(), uint64_t{1} << 4);
  std::vector<ClaimedEvent> rows = {Row(1, "p", Ev("u1", "", 300)), Row(2, "p", Ev("u1", "", 100)),
                                    Row(3, "p", Ev("u2", "", 200)), Row(4, "q", Ev("u1", "", 50)),
                                    Row(5, "p", Ev("", "", 10)), Row(6, "p", Ev("u1", "", 200))};
  Effects out;
  c.BuildEffects(testing::Decoded(rows), &out);
  ASSERT_EQ(out.jobs.size(), 3u);
  EXPECT_TRUE(out.users.empty());
  const JobDelta& d = out.jobs[0];
  EXPECT_EQ(d.job, "rescore");
  EXPECT_EQ(d.project, "p");
  EXPECT_EQ(d.key, "u1");
  EXPECT_EQ(d.events, 3);
  EXPECT_EQ(d.first_event_ms, 100);
  EXPECT_EQ(d.last_event_ms, 300);
  EXPECT_EQ(d.delay_ms, 1000);
  EXPECT_EQ(d.max_delay_ms, 3000);
  EXPECT_TRUE(d.key_is_distinct_id) << "a user job's store maps the id to its person";
  EXPECT_EQ(out.jobs[1].key, "u2");
  EXPECT_EQ(out.jobs[2].project, "q");
  const std::string metrics_text = metrics.RenderPrometheus();
  EXPECT_NE(metrics_text.find("sluice_job_scheduled_events_total{job=\"rescore\"} 5"),
            std::string::npos)
      << metrics_text;
  EXPECT_NE(metrics_text.find("sluice_job_keyless_events_total{job=\"rescore\"} 1"),
            std::string::npos);
}

TEST(MakeJobConsumers, RefusesABitOrNameAConsumerAlreadyHasAndFiltersByEvent) {
  std::vector<ConsumerPtr> existing;
  JobOptions j = Job();
  existing.push_back(std::make_unique<JobConsumer>(j, nullptr));  // bit 4, name rescore
  JobOptions same_bit = Job();
  same_bit.name = "other";
  EXPECT_EQ(MakeJobConsumers({same_bit}, existing, nullptr).status().code(),
            Code::kInvalidArgument);
  JobOptions same_name = Job();
  same_name.bit = 7;
  EXPECT_EQ(MakeJobConsumers({same_name}, existing, nullptr).status().code(),
            Code::kInvalidArgument);
  JobOptions filtered = Job();
  filtered.name = "f";
  filtered.bit = 8;
  filtered.events = {"signup"};
  auto made = MakeJobConsumers({filtered}, existing, nullptr);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::vector<ClaimedEvent> rows = {Row(1, "p", Ev("u1", "", 1))};  // a "purchase"
  Effects out;
  (*made)[0]->BuildEffects(testing::Decoded(rows), &out);
  EXPECT_TRUE(out.jobs.empty());
}

TEST(ValidateJobOptions, ChecksNameKeyDelaysUrlAndBit) {
  auto check = [](auto edit) {
    JobOptions j = Job();
    edit(j);
    return ValidateJobOptions("job[0]", &j);
  };
  EXPECT_TRUE(check([](JobOptions&) {}).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.name = "Bad Name"; }).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.bit = -1; }).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.key = "person"; }).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.key = "property:"; }).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.max_delay_ms = 10; }).ok());
  EXPECT_FALSE(check([](JobOptions& j) { j.url = "ftp://x"; }).ok());
  JobOptions p = Job("property:account_id");
  EXPECT_EQ(p.key_kind, JobKeyKind::kProperty);
  EXPECT_EQ(p.key_property, "account_id");
  const Status st = check([](JobOptions& j) { j.key = "person"; });
  EXPECT_NE(st.message().find("job[0].key"), std::string::npos) << st.message();
}

TEST(JobIdempotencyKey, IsStablePerRunAndDiffersAcrossRunsAndKeys) {
  const JobRef a{"rescore", "p", "u1"};
  EXPECT_EQ(JobIdempotencyKey(a, 1), JobIdempotencyKey(a, 1));
  // Fixed across builds and hosts: SHA-256 of "rescore\0p\0u1\0" "1".
  EXPECT_EQ(JobIdempotencyKey(a, 1).size(), 36u);
  EXPECT_EQ(JobIdempotencyKey(a, 1).rfind("job-", 0), 0u);
  EXPECT_NE(JobIdempotencyKey(a, 1), JobIdempotencyKey(a, 2));
  EXPECT_NE(JobIdempotencyKey(a, 1), JobIdempotencyKey(JobRef{"rescore", "p", "u2"}, 1));
  // The separators keep ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(JobIdempotencyKey(JobRef{"j", "ab", "c"}, 1), JobIdempotencyKey(JobRef{"j", "a", "bc"}, 1));
}

TEST(JobRequestBody, CarriesTheRunAndTheProfileAsJson) {
  ClaimedRun run;
  run.ref = JobRef{"rescore", "p", "u\"1"};
  run.run = 3;
  run.events = 7;
  run.first_event_ms = 10;
  run.last_event_ms = 20;
  UserProfile profile;
  profile.project = "p";
  profile.user_id = "u\"1";
  profile.events = 9;
  profile.event_counts = {{"purchase", 9}};
  profile.properties = R"({"plan":"pro"})";
  const std::string body = JobRequestBody(run, ProfileJson(profile));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(body).get(doc), simdjson::SUCCESS) << body;
  EXPECT_EQ(std::string_view(doc["job"]), "rescore");
  EXPECT_EQ(std::string_view(doc["key"]), "u\"1");
  EXPECT_EQ(int64_t(doc["run"]), 3);
  EXPECT_EQ(int64_t(doc["events_since_last_run"]), 7);
  EXPECT_EQ(int64_t(doc["first_event"]), 10);
  EXPECT_EQ(int64_t(doc["last_event"]), 20);
  EXPECT_EQ(int64_t(doc["profile"]["events"]), 9);
  EXPECT_EQ(int64_t(doc["profile"]["event_counts"]["purchase"]), 9);
  EXPECT_EQ(std::string_view(doc["profile"]["properties"]["plan"]), "pro");
  EXPECT_NE(JobRequestBody(run, "").find("\"profile\":null"), std::string::npos);
}

}  // namespace
}  // namespace sluice
