#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "common/time.h"
#include "testing/testing.h"

namespace sluice {
namespace {

// An environment with exactly these variables.
EnvLookup Env(std::map<std::string, std::string> vars = {}) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(ParseDurationMs, AcceptsUnitsAndBareMilliseconds) {
  EXPECT_EQ(ParseDurationMs("250ms"), 250);
  EXPECT_EQ(ParseDurationMs("30s"), 30000);
  EXPECT_EQ(ParseDurationMs("5m"), 300000);
  EXPECT_EQ(ParseDurationMs("24h"), 86400000);
  EXPECT_EQ(ParseDurationMs("2d"), 2 * 86400000LL);
  EXPECT_EQ(ParseDurationMs("1500"), 1500);
  EXPECT_FALSE(ParseDurationMs(""));
  EXPECT_FALSE(ParseDurationMs("s"));
  EXPECT_FALSE(ParseDurationMs("10 s"));
  EXPECT_FALSE(ParseDurationMs("-5s"));
  EXPECT_FALSE(ParseDurationMs("10y"));
  EXPECT_FALSE(ParseDurationMs("99999999999999999999d"));
}

TEST(ParseConfig, EmptyTextGivesDocumentedDefaults) {
  auto c = ParseConfig("", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.listen, "127.0.0.1:8080");
  EXPECT_EQ(c->store.url, "sqlite:./sluice-data/sluice.db");
  EXPECT_EQ(c->watcher.loops, 2);
  EXPECT_EQ(c->watcher.batch, 500);
  EXPECT_EQ(c->watcher.lease_ttl_ms, 30000);
  EXPECT_EQ(c->store.dedup_window_ms, 24LL * 3600 * 1000);
  EXPECT_EQ(c->store.dedup_buckets, 4);
  ASSERT_EQ(c->consumers.size(), 2u);
  EXPECT_EQ(c->consumers[0].type, "users");
  EXPECT_EQ(c->consumers[1].type, "counters");
  EXPECT_FALSE(c->auth.enabled());
}

TEST(ParseConfig, ReadsEverySectionAndDurationForms) {
  const char* text = R"(
replica_id = "r1"
[server]
listen = "127.0.0.1:0"
threads = 4
read_timeout = "5s"
[store]
url = "sqlite:/tmp/x.db"
sync = false
pool_size = 3
dedup_window = "1h"
dedup_buckets = 16
[ingest]
max_body_bytes = 2048
max_events = 10
high_water = 100
slow_down = 50
[watcher]
loops = 3
batch = 20
lease_ttl = "2s"
heartbeat_ms = 500
backoff_base = "100ms"
backoff_cap = "1m"
max_attempts = 4
jitter = 0.25
dedup_prune_interval = 1500
[log]
level = "debug"
format = "text"
[auth]
admin_token = "adm"
[auth.write_keys]
k1 = "proj1"
k2 = "proj2"
)";
  auto c = ParseConfig(text, Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->replica_id, "r1");
  EXPECT_EQ(c->server.listen, "127.0.0.1:0");
  EXPECT_EQ(c->server.threads, 4);
  EXPECT_EQ(c->server.read_timeout_ms, 5000);
  EXPECT_EQ(c->store.url, "sqlite:/tmp/x.db");
  EXPECT_FALSE(c->store.sync);
  EXPECT_EQ(c->store.pool_size, 3);
  EXPECT_EQ(c->store.dedup_window_ms, 3600000);
  EXPECT_EQ(c->store.dedup_buckets, 16);
  EXPECT_EQ(c->ingest.max_body_bytes, 2048);
  EXPECT_EQ(c->ingest.max_events, 10);
  EXPECT_EQ(c->ingest.high_water, 100);
  EXPECT_EQ(c->watcher.loops, 3);
  EXPECT_EQ(c->watcher.lease_ttl_ms, 2000);
  EXPECT_EQ(c->watcher.heartbeat_ms, 500);
  EXPECT_EQ(c->watcher.backoff.base_ms, 100);
  EXPECT_EQ(c->watcher.backoff.cap_ms, 60000);
  EXPECT_EQ(c->watcher.backoff.max_attempts, 4);
  EXPECT_DOUBLE_EQ(c->watcher.backoff.jitter, 0.25);
  EXPECT_EQ(c->watcher.dedup_prune_interval_ms, 1500);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->log_format, "text");
  EXPECT_EQ(c->auth.admin_token, "adm");
  ASSERT_TRUE(c->auth.enabled());
  EXPECT_EQ(c->auth.write_keys.at("k1"), "proj1");
  EXPECT_EQ(c->auth.write_keys.at("k2"), "proj2");
}

TEST(ParseConfig, ConsumerTablesKeepTypeSpecificKeysAsFlattenedStrings) {
  const char* text = R"(
[[consumer]]
type = "users"
[[consumer]]
type = "webhook"
name = "alerts"
bit = 5
projects = ["p1", "p2"]
events = "signup"
url = "http://127.0.0.1:9/hook"
timeout = "3s"
retries = 3
enabled = true
[consumer.headers]
x-token = "abc"
[consumer.tls.client]
verify = false
)";
  auto c = ParseConfig(text, Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->consumers.size(), 2u);
  EXPECT_EQ(c->consumers[0].name, "users");
  EXPECT_EQ(c->consumers[0].bit, -1);
  const ConsumerConfig& w = c->consumers[1];
  EXPECT_EQ(w.type, "webhook");
  EXPECT_EQ(w.name, "alerts");
  EXPECT_EQ(w.bit, 5);
  EXPECT_EQ(w.projects, (std::vector<std::string>{"p1", "p2"}));
  EXPECT_EQ(w.events, (std::vector<std::string>{"signup"}));
  EXPECT_EQ(w.options.at("url"), "http://127.0.0.1:9/hook");
  EXPECT_EQ(w.options.at("timeout"), "3s");
  EXPECT_EQ(w.options.at("retries"), "3");
  EXPECT_EQ(w.options.at("enabled"), "true");
  EXPECT_EQ(w.options.at("headers.x-token"), "abc");
  EXPECT_EQ(w.options.at("tls.client.verify"), "false");
  EXPECT_EQ(w.options.count("type"), 0u);
}

TEST(ParseConfig, EnvironmentOverridesFile) {
  auto c = ParseConfig("[server]\nlisten = \"127.0.0.1:1\"\n",
                       Env({{"SLUICE_LISTEN", "127.0.0.1:2"},
                            {"SLUICE_STORE", "sqlite:/tmp/env.db"},
                            {"SLUICE_ADMIN_TOKEN", "tok"},
                            {"SLUICE_REPLICA_ID", "rep"},
                            {"SLUICE_LOG_LEVEL", "warn"}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server.listen, "127.0.0.1:2");
  EXPECT_EQ(c->store.url, "sqlite:/tmp/env.db");
  EXPECT_EQ(c->auth.admin_token, "tok");
  EXPECT_EQ(c->replica_id, "rep");
  EXPECT_EQ(c->log_level, "warn");
}

// The error message must name the offending key.
void ExpectErrorNames(const std::string& text, const std::string& needle) {
  auto c = ParseConfig(text, Env());
  ASSERT_FALSE(c.ok()) << text;
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
}

TEST(ParseConfig, InvalidValuesAreRejectedNamingTheKey) {
  ExpectErrorNames("[watcher]\nloops = -1\n", "watcher.loops");
  ExpectErrorNames("[watcher]\nbatch = \"many\"\n", "watcher.batch");
  ExpectErrorNames("[watcher]\nlease_ttl = \"30 parsecs\"\n", "watcher.lease_ttl");
  ExpectErrorNames("[watcher]\nlease_ttl = \"10ms\"\n", "watcher.lease_ttl");
  ExpectErrorNames("[watcher]\njitter = 2.0\n", "watcher.jitter");
  ExpectErrorNames("[server]\nthreads = 0\n", "server.threads");
  ExpectErrorNames("[server]\nlisten = \"nonsense\"\n", "server.listen");
  ExpectErrorNames("[server]\nlisten = \"127.0.0.1:70000\"\n", "server.listen");
  ExpectErrorNames("[server]\nlistne = \"x\"\n", "server.listne");
  ExpectErrorNames("[store]\nurl = \"mysql://x\"\n", "store.url");
  ExpectErrorNames("[ingest]\nhigh_water = 10\nslow_down = 20\n", "ingest.slow_down");
  ExpectErrorNames("[log]\nlevel = \"loud\"\n", "log.level");
  ExpectErrorNames("[[consumer]]\nname = \"x\"\n", "consumer[0].type");
  ExpectErrorNames("[[consumer]]\ntype = \"users\"\nbit = 63\n", "consumer[0].bit");
  ExpectErrorNames("[[consumer]]\ntype = \"users\"\n[[consumer]]\ntype = \"users\"\n",
                   "consumer[1].name");
  ExpectErrorNames("[auth.write_keys]\nk = 3\n", "auth.write_keys");
  ExpectErrorNames("bogus = 1\n", "bogus");
}

TEST(ParseConfig, SyntaxErrorIsReportedWithLineNotThrown) {
  ExpectErrorNames("[server\nlisten = 1", "line 1");
  ExpectErrorNames("\n\n[server]\nlisten = \"a\" \"b\"\n", "line 4");
}

TEST(ParseConfig, WriteKeyNeverAppearsInErrors) {
  auto c = ParseConfig("[auth.write_keys]\nsupersecretkey = 7\n", Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message().find("supersecretkey"), std::string::npos);
}

TEST(ParseConfig, PublicListenWithoutAuthIsRefusedUnlessAllowed) {
  auto refused = ParseConfig("[server]\nlisten = \"0.0.0.0:8080\"\n", Env());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("allow_public_without_auth"), std::string::npos);

  auto allowed =
      ParseConfig("[server]\nlisten = \"0.0.0.0:8080\"\nallow_public_without_auth = true\n", Env());
  EXPECT_TRUE(allowed.ok()) << allowed.status().ToString();

  auto with_auth =
      ParseConfig("[server]\nlisten = \"0.0.0.0:8080\"\n[auth.write_keys]\nk = \"p\"\n", Env());
  EXPECT_TRUE(with_auth.ok()) << with_auth.status().ToString();

  for (const char* loop : {"127.0.0.1:1", "localhost:1", "[::1]:1", "127.1.2.3:0"}) {
    auto c = ParseConfig(std::string("[server]\nlisten = \"") + loop + "\"\n", Env());
    EXPECT_TRUE(c.ok()) << loop << ": " << c.status().ToString();
  }
  // The env override is checked too.
  auto env = ParseConfig("", Env({{"SLUICE_LISTEN", "10.0.0.1:80"}}));
  EXPECT_FALSE(env.ok());
}

TEST(SplitHostPort, HandlesV4V6AndNames) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(SplitHostPort("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(SplitHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  EXPECT_FALSE(SplitHostPort("::1:80", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort(":80", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("host:", &host, &port).ok());
}

TEST(LoadConfig, ReadsFileAndReportsMissingFile) {
  testing::TempDir dir;
  const std::string path = dir.File("sluice.toml");
  std::ofstream(path) << "[watcher]\nloops = 7\n";
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->watcher.loops, 7);
  auto missing = LoadConfig(dir.File("nope.toml"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.toml"), std::string::npos);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(ParseConfig, ConsoleTableSetsTheConsoleOptions) {
  auto c = ParseConfig(R"(
[console]
refresh = "5s"
delay_warning = "2m"
backlog_scan_events = 20000
tail_rate = 10
tail_streams = 2
session_ttl = "1h"
)",
                       Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->console.enabled);
  EXPECT_EQ(c->console.refresh_ms, 5000);
  EXPECT_EQ(c->console.delay_warning_ms, 120000);
  EXPECT_EQ(c->console.backlog_scan_events, 20000);
  EXPECT_EQ(c->console.tail.max_events_per_s, 10);
  EXPECT_EQ(c->console.tail.max_streams, 2);
  EXPECT_EQ(c->console.session_ttl_ms, 3600000);
  EXPECT_EQ(ParseConfig("", Env())->console.backlog_scan_events, 20000);
}

TEST(ParseConfig, ConsoleBoundsAreChecked) {
  auto small = ParseConfig("[console]\nbacklog_scan_events = 5\n", Env());
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("console.backlog_scan_events"), std::string::npos);
  EXPECT_FALSE(ParseConfig("[console]\nrefresh = \"10ms\"\n", Env()).ok());
  EXPECT_FALSE(ParseConfig("[console]\nnope = 1\n", Env()).ok());
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(ParseConfig, ReadsJobTablesAndTheRunnerOptions) {
  const char* text = R"(
[jobs]
loops = 3
batch = 8
lease_ttl = "20s"
[[job]]
name = "rescore"
bit = 5
key = "property:account_id"
events = ["purchase", "signup"]
delay = "2s"
max_delay = "1m"
url = "http://127.0.0.1:9/rescore"
timeout = "3s"
max_attempts = 4
backoff_base = "200ms"
)";
  Result<Config> c = ParseConfig(text, [](const char*) { return nullptr; });
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->job_runner.loops, 3);
  EXPECT_EQ(c->job_runner.batch, 8);
  EXPECT_EQ(c->job_runner.lease_ttl_ms, 20000);
  ASSERT_EQ(c->jobs.size(), 1u);
  const JobOptions& j = c->jobs[0];
  EXPECT_EQ(j.name, "rescore");
  EXPECT_EQ(j.bit, 5);
  EXPECT_EQ(j.key_kind, JobKeyKind::kProperty);
  EXPECT_EQ(j.key_property, "account_id");
  EXPECT_EQ(j.events, (std::vector<std::string>{"purchase", "signup"}));
  EXPECT_EQ(j.delay_ms, 2000);
  EXPECT_EQ(j.max_delay_ms, 60000);
  EXPECT_EQ(j.timeout_ms, 3000);
  EXPECT_EQ(j.backoff.max_attempts, 4);
  EXPECT_EQ(j.backoff.base_ms, 200);
}

TEST(ParseConfig, BadJobTablesAreRefusedNamingTheKey) {
  auto refused = [](const std::string& text, const std::string& key) {
    Result<Config> c = ParseConfig(text, [](const char*) { return nullptr; });
    EXPECT_FALSE(c.ok()) << text;
    if (!c.ok()) {
      EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status().message();
    }
  };
  const std::string ok = "url = \"http://h/x\"\n";
  refused("[[job]]\nname = \"a\"\n" + ok, "job[0].bit");
  refused("[[job]]\nbit = 3\n" + ok, "job[0].name");
  refused("[[job]]\nname = \"a\"\nbit = 3\nkey = \"person\"\n" + ok, "job[0].key");
  refused("[[job]]\nname = \"a\"\nbit = 3\ndelay = \"10s\"\nmax_delay = \"1s\"\n" + ok,
          "job[0].max_delay");
  refused("[[job]]\nname = \"a\"\nbit = 3\nbogus = 1\n" + ok, "job[0].bogus");
  refused("[[job]]\nname = \"a\"\nbit = 3\n", "job[0].url");
  refused("[[consumer]]\ntype = \"webhook\"\nname = \"a\"\nbit = 3\n[[job]]\nname = \"b\"\nbit = 3\n" +
              ok,
          "job[0].bit");
  refused("[[job]]\nname = \"a\"\nbit = 3\ntimeout = \"40s\"\n" + ok, "job[0].timeout");
}

}  // namespace
TEST(ParseConfig, DedupBucketsOutsideOneTo64AreRefused) {
  EXPECT_FALSE(ParseConfig("[store]\ndedup_buckets = 0\n", Env()).ok());
  EXPECT_FALSE(ParseConfig("[store]\ndedup_buckets = 65\n", Env()).ok());
  auto c = ParseConfig("[store]\ndedup_buckets = 64\n", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store.dedup_buckets, 64);
}

}  // namespace sluice
