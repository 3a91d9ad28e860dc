// ClickHouseConsumer against Debian's clickhouse-server (18.16), started by
// scripts/clickhouse-start.sh in a temp dir on a free port.
#include "consumers/clickhouse/clickhouse_consumer.h"

#include <gtest/gtest.h>

#include "common/clock.h"
#include "consumers/registry/registry.h"
#include "testing/decoded.h"
#include "testing/sink_servers.h"

namespace sluice {
namespace {

using testing::Decoded;
using testing::MakeEvents;

constexpr int64_t kBase = 1714557600000;  // 2024-05-01T10:00:00Z

Delivery Deliv(const std::vector<DecodedEvent>& ptrs) {
  Delivery d;
  d.events = ptrs;
  d.deadline_mono_ms = Clock::Real().MonoMs() + 20000;
  return d;
}

class ClickHouse : public ::testing::Test {
 protected:
  // One server for the whole suite: it takes ~2 s to stop.
  static void SetUpTestSuite() {
    server_ =
        new testing::ScriptServer("clickhouse", "CH_PORT=" + std::to_string(testing::FreePort()));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->ok()) << server_->error(); }

  ClickHouseOptions Options(const std::string& table) const {
    ClickHouseOptions o;
    o.url = server_->var("CH_URL");
    o.table = table;
    return o;
  }
  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  static testing::ScriptServer* server_;
};

testing::ScriptServer* ClickHouse::server_ = nullptr;

TEST_F(ClickHouse, FinalCountEqualsDistinctEventsAfterRedelivery) {
  ClickHouseConsumer c("ch", 1 << 6, Options("events_a"), nullptr);
  auto events = MakeEvents(1, 50, "shop", kBase);
  auto ptrs = Decoded(events);
  Status st = c.Deliver(Deliv(ptrs));
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(c.supports_dedup_token());  // 18.16 has no insert_deduplication_token
  EXPECT_EQ(Trim(*c.Query("SELECT count() FROM events_a FINAL")), "50");

  // Forced redelivery of the whole batch, then of an overlapping one.
  ASSERT_TRUE(c.Deliver(Deliv(ptrs)).ok());
  auto more = MakeEvents(41, 20, "shop", kBase);  // 41..50 again, 51..60 new
  ASSERT_TRUE(c.Deliver(Deliv(Decoded(more))).ok());
  // The same insert_id in another project is another event.
  auto other = MakeEvents(1, 5, "blog", kBase);
  ASSERT_TRUE(c.Deliver(Deliv(Decoded(other))).ok());
  EXPECT_EQ(Trim(*c.Query("SELECT count() FROM events_a FINAL")), "65");
  EXPECT_EQ(Trim(*c.Query("SELECT uniqExact(project, insert_id) FROM events_a")), "65");
  EXPECT_GE(std::stoi(Trim(*c.Query("SELECT count() FROM events_a"))), 65);
}

TEST_F(ClickHouse, ColumnsRoundTrip) {
  ClickHouseConsumer c("ch", 1 << 6, Options("events_b"), nullptr);
  auto events = MakeEvents(7, 1, "shop", kBase);
  ASSERT_TRUE(c.Deliver(Deliv(Decoded(events))).ok());
  auto row = c.Query(
      "SELECT insert_id, project, seq, event, user_id, toString(time), time_ms, properties "
      "FROM events_b FORMAT TabSeparated");
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  // TabSeparated escapes backslashes: the JSON text \" arrives as \\".
  EXPECT_EQ(Trim(*row),
            "id-7\tshop\t7\tev1\tuser-2\t2024-05-01 09:59:59\t1714557599007\t"
            "{\"n\":7,\"s\":\"quote \\\\\" and \\\\\\\\ back\"}");
}

TEST_F(ClickHouse, RegistryBuildsItAndUnreachableServerIsUnavailable) {
  Metrics m;
  ConsumerConfig cfg;
  cfg.type = "clickhouse";
  cfg.name = "ch";
  cfg.bit = 3;
  cfg.options = {{"url", server_->var("CH_URL")}, {"table", "bad-name"}};
  EXPECT_EQ(MakeConsumers({cfg}, &m).status().code(), Code::kInvalidArgument);
  cfg.options["table"] = "events_c";
  cfg.projects = {"shop"};
  auto r = MakeConsumers({cfg}, &m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto shop = MakeEvents(1, 3, "shop", kBase);
  auto blog = MakeEvents(4, 3, "blog", kBase);
  auto ptrs = Decoded(shop);
  for (const auto& p : Decoded(blog)) ptrs.push_back(p);
  ASSERT_TRUE((*r)[0]->Deliver(Deliv(ptrs)).ok());
  ClickHouseConsumer q("q", 1, Options("events_c"), nullptr);
  EXPECT_EQ(Trim(*q.Query("SELECT groupArray(project) FROM events_c")), "['shop','shop','shop']");

  ClickHouseOptions down = Options("events_d");
  down.url = "http://127.0.0.1:" + std::to_string(testing::FreePort()) + "/";
  ClickHouseConsumer d("down", 1, down, nullptr);
  EXPECT_EQ(d.Deliver(Deliv(Decoded(shop))).code(), Code::kUnavailable);
}

}  // namespace
}  // namespace sluice
