// OpsService against a real SQLite store, handlers called directly (the HTTP
// layer is covered by tests/system/serve_smoke_test.cc).
#include <gtest/gtest.h>

#include <atomic>

#include "common/event.h"
#include "common/time.h"
#include "ops/dlq.h"
#include "http/http_util.h"
#include "ops/ops_service.h"
#include "ops/status_report.h"
#include "queue/open/open_store.h"
#include "testing/testing.h"

namespace sluice {
namespace {

class OpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreOptions so;
    so.url = "sqlite:" + dir_.File("ops.db");
    so.sync = false;
    auto store = OpenStore(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  std::unique_ptr<OpsService> Make(AuthOptions auth = {}) {
    OpsOptions o;
    o.auth = std::move(auth);
    return std::make_unique<OpsService>(store_.get(), &metrics_, o, &draining_);
  }

  static HttpRequest Get(std::string path, std::string query = "", bool loopback = true) {
    HttpRequest r;
    r.method = "GET";
    r.path = std::move(path);
    r.query = std::move(query);
    r.target = r.path + (r.query.empty() ? "" : "?" + r.query);
    r.remote_is_loopback = loopback;
    r.remote_addr = loopback ? "127.0.0.1" : "10.1.2.3";
    return r;
  }
  static HttpRequest Post(std::string path, std::string body, std::string query = "") {
    HttpRequest r = Get(std::move(path), std::move(query));
    r.method = "POST";
    r.body = std::move(body);
    return r;
  }
  static HttpRequest WithBearer(HttpRequest r, const std::string& token) {
    r.headers.emplace_back("authorization", "Bearer " + token);
    return r;
  }

  void Enqueue(const std::string& project, const std::string& insert_id) {
    Event e;
    e.event = "signup";
    e.user_id = "u1";
    e.time_ms = 1714557600000;
    e.received_ms = e.time_ms;
    std::vector<NewEvent> events = {{project, insert_id, ToBody(e)}};
    std::vector<EnqueueBatch> batches = {{events}};
    auto r = store_->Enqueue(batches);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Claims everything and fails it with max_attempts = 1: all dead.
  void KillAll(const std::string& error) {
    auto lease = store_->Claim({"test-owner", 100, 30000});
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    std::vector<int64_t> seqs;
    for (const auto& e : lease->events) seqs.push_back(e.seq);
    FailRequest fr;
    fr.token = lease->token;
    fr.seqs = seqs;
    fr.error = error;
    fr.backoff.max_attempts = 1;
    auto failed = store_->Fail(fr);
    ASSERT_TRUE(failed.ok()) << failed.status().ToString();
    ASSERT_EQ(failed->dead, static_cast<int64_t>(seqs.size()));
  }

  testing::TempDir dir_;
  StorePtr store_;
  Metrics metrics_;
  std::atomic<bool> draining_{false};
};

TEST_F(OpsTest, HealthzIsOkAndReadyzFollowsDraining) {
  auto ops = Make();
  EXPECT_EQ(ops->Healthz(Get("/healthz")).status, 200);
  EXPECT_EQ(ops->Readyz(Get("/readyz")).status, 200);
  draining_ = true;
  HttpResponse r = ops->Readyz(Get("/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("draining"), std::string::npos);
  EXPECT_EQ(ops->Healthz(Get("/healthz")).status, 200);
}

TEST_F(OpsTest, ReadyzIs503NamingTheErrorWhileStoreWritesFail) {
  OpsOptions o;
  Status writes = Status::IoError("sqlite exec: database or disk is full (13)");
  o.store_write_status = [&writes] { return writes; };
  OpsService ops(store_.get(), &metrics_, o, &draining_);
  HttpResponse r = ops.Readyz(Get("/readyz"));
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("store writes failing"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("database or disk is full"), std::string::npos) << r.body;
  EXPECT_EQ(ops.Healthz(Get("/healthz")).status, 200);
  writes = Status::Ok();  // space came back and a write succeeded
  EXPECT_EQ(ops.Readyz(Get("/readyz")).status, 200);
}

TEST_F(OpsTest, MetricsShowQueueDepthByStateFromTheStore) {
  auto ops = Make();
  Enqueue("default", "a");
  Enqueue("default", "b");
  HttpResponse r = ops->Prometheus(Get("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type.rfind("text/plain; version=0.0.4", 0), 0u);
  EXPECT_NE(r.body.find("sluice_queue_events{state=\"pending\"} 2"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("sluice_queue_events{state=\"dead\"} 0"), std::string::npos);
  EXPECT_NE(r.body.find("sluice_store_up 1"), std::string::npos);
}

TEST_F(OpsTest, AdminWithoutTokenIsLoopbackOnly) {
  auto ops = Make();
  EXPECT_EQ(ops->AdminStatus(Get("/admin/status")).status, 200);
  EXPECT_EQ(ops->AdminStatus(Get("/admin/status", "", /*loopback=*/false)).status, 403);
}

TEST_F(OpsTest, AdminWithTokenNeedsTheExactBearerToken) {
  AuthOptions auth;
  auth.admin_token = "s3cret-admin";
  auth.write_keys["wk1"] = "p1";
  auto ops = Make(auth);
  EXPECT_EQ(ops->AdminStatus(Get("/admin/status")).status, 401);
  EXPECT_EQ(ops->AdminStatus(WithBearer(Get("/admin/status"), "s3cret-admi")).status, 401);
  EXPECT_EQ(ops->AdminStatus(WithBearer(Get("/admin/status"), "wk1")).status, 401);
  EXPECT_EQ(ops->AdminStatus(WithBearer(Get("/admin/status", "", false), "s3cret-admin")).status,
            200);
  HttpResponse metrics = ops->Prometheus(Get("/metrics"));
  EXPECT_NE(metrics.body.find("sluice_ops_rejected_total{reason=\"unauthorized\"} 3"),
            std::string::npos)
      << metrics.body;
}

TEST_F(OpsTest, AdminStatusHasQueueReplicasAndStore) {
  ReplicaInfo info;
  info.id = "r-1";
  info.host = "h";
  info.pid = 42;
  info.version = "0.1.0";
  info.started_ms = WallNowMs();
  ASSERT_TRUE(store_->RegisterReplica(info).ok());
  Enqueue("default", "x");
  auto ops = Make();
  HttpResponse r = ops->AdminStatus(Get("/admin/status"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"queue\":{\"pending\":1,\"leased\":0,\"dead\":0,"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"oldest_pending_age_ms\":"), std::string::npos);
  EXPECT_NE(r.body.find("\"id\":\"r-1\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"pid\":42"), std::string::npos);
  EXPECT_NE(r.body.find("\"leases_held\":0"), std::string::npos);
  EXPECT_NE(r.body.find("\"store\":\"sqlite\""), std::string::npos);
}

TEST_F(OpsTest, DlqListRequeueAndPurgeWithFilters) {
  Enqueue("p1", "a");
  Enqueue("p2", "b");
  KillAll("consumer users: boom");
  auto ops = Make();
  HttpResponse list = ops->AdminDlqList(Get("/admin/dlq", "project=p1"));
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_NE(list.body.find("\"count\":1"), std::string::npos) << list.body;
  EXPECT_NE(list.body.find("consumer users: boom"), std::string::npos);
  EXPECT_NE(list.body.find("\"body\":{\"event\":\"signup\""), std::string::npos) << list.body;

  HttpResponse requeue = ops->AdminDlqRequeue(Post("/admin/dlq/requeue", R"({"project":"p1"})"));
  ASSERT_EQ(requeue.status, 200) << requeue.body;
  EXPECT_EQ(requeue.body, "{\"requeued\":1}");

  // Purge without any filter must be explicit.
  EXPECT_EQ(ops->AdminDlqPurge(Post("/admin/dlq/purge", "")).status, 400);
  EXPECT_EQ(ops->AdminDlqPurge(Post("/admin/dlq/purge", "{\"seqs\":\"x\"}")).status, 400);
  EXPECT_EQ(ops->AdminDlqPurge(Post("/admin/dlq/purge", "{not json")).status, 400);
  HttpResponse purge = ops->AdminDlqPurge(Post("/admin/dlq/purge", "", "all=true"));
  ASSERT_EQ(purge.status, 200) << purge.body;
  EXPECT_EQ(purge.body, "{\"purged\":1}");
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->dead, 0);
  EXPECT_EQ(stats->pending, 1);
}

TEST_F(OpsTest, DlqSeqsFromBodyOrQuery) {
  HttpRequest body = Post("/admin/dlq/requeue", R"({"seqs":[3,1],"consumer":"users"})");
  DeadFilter f;
  bool all = false;
  ASSERT_TRUE(ParseDeadFilter(body, &f, &all).ok());
  EXPECT_EQ(f.seqs, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(f.consumer, "users");
  EXPECT_FALSE(all);

  DeadFilter q;
  ASSERT_TRUE(
      ParseDeadFilter(Post("/admin/dlq/purge", "", "seqs=4,5&seq=6&project=p"), &q, &all).ok());
  EXPECT_EQ(q.seqs, (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(q.project, "p");

  DeadFilter bad;
  EXPECT_FALSE(ParseDeadFilter(Post("/x", "", "seqs=1,,2"), &bad, &all).ok());
  EXPECT_FALSE(ParseDeadFilter(Post("/x", R"({"seqs":[-1]})"), &bad, &all).ok());
  EXPECT_FALSE(ParseDeadFilter(Post("/x", R"({"nope":1})"), &bad, &all).ok());
}

TEST_F(OpsTest, AdminJobsListsStatsRowsAndDeadRunsAndPurgeNeedsAFilter) {
  // One run of job "j" for key u1, dead after one attempt; one pending for u2.
  NewEvent e{"p", "i1", "{}"};
  EnqueueBatch batch{std::span<const NewEvent>(&e, 1)};
  ASSERT_TRUE(store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1)).ok());
  auto lease = store_->Claim(ClaimRequest{"w", 10, 30000});
  ASSERT_TRUE(lease.ok());
  CompleteRequest req{lease->token, lease->events, 8, 0, {}};
  InStoreEffects part{.bit = 8, .effects = {}};
  part.effects.jobs.push_back(JobDelta{"j", "p", "u1", 1, 5, 5, 0, 0});
  part.effects.jobs.push_back(JobDelta{"j", "p", "u2", 2, 5, 6, 60000, 60000});
  req.in_store.push_back(std::move(part));
  ASSERT_TRUE(store_->Complete(req).ok());
  auto runs = store_->ClaimJobRuns(JobClaimRequest{"r", {"j"}, 10, 30000});
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->runs.size(), 1u);
  BackoffPolicy once{.base_ms = 0, .cap_ms = 0, .max_attempts = 1, .jitter = 0};
  ASSERT_EQ(store_->FailJobRun(runs->token, runs->runs[0].ref, "job j: 500", once)->dead, 1);

  auto ops = Make();
  HttpResponse list = ops->AdminJobs(Get("/admin/jobs", "job=j"));
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_NE(list.body.find("\"name\":\"j\",\"keys\":2,\"waiting\":1"), std::string::npos)
      << list.body;
  EXPECT_NE(list.body.find("\"key\":\"u2\",\"state\":\"pending\""), std::string::npos);
  EXPECT_NE(list.body.find("\"last_error\":\"job j: 500\""), std::string::npos);
  EXPECT_EQ(ops->AdminJobs(Get("/admin/jobs", "id=x")).status, 400);
  EXPECT_EQ(ops->AdminJobs(Get("/admin/jobs", "", /*loopback=*/false)).status, 403);
  EXPECT_EQ(ops->AdminJobsPurge(Post("/admin/jobs/purge", "")).status, 400);
  HttpResponse requeue = ops->AdminJobsRequeue(Post("/admin/jobs/requeue", "", "key=u1"));
  ASSERT_EQ(requeue.status, 200);
  EXPECT_EQ(requeue.body, "{\"requeued\":1}");
  HttpResponse purge = ops->AdminJobsPurge(Post("/admin/jobs/purge", "", "all=true"));
  ASSERT_EQ(purge.status, 200);
  EXPECT_EQ(purge.body, "{\"purged\":0}");
  // /admin/status lists the job too.
  HttpResponse status = ops->AdminStatus(Get("/admin/status"));
  EXPECT_NE(status.body.find("\"jobs\":[{\"name\":\"j\""), std::string::npos) << status.body;
}

TEST_F(OpsTest, UnknownUserIs404Json) {
  auto ops = Make();
  HttpResponse r = ops->GetUser(Get("/v1/users/nobody"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_NE(r.body.find("\"user_id\":\"nobody\""), std::string::npos);
  EXPECT_EQ(ops->GetUser(Get("/v1/users/")).status, 400);
}

TEST_F(OpsTest, CountersValidateParameters) {
  auto ops = Make();
  EXPECT_EQ(ops->GetCounters(Get("/v1/counters", "")).status, 400);  // event missing
  EXPECT_EQ(ops->GetCounters(Get("/v1/counters", "event=a&bucket=week")).status, 400);
  EXPECT_EQ(ops->GetCounters(Get("/v1/counters", "event=a&from=yesterday")).status, 400);
  EXPECT_EQ(ops->GetCounters(Get("/v1/counters", "event=a&from=2000&to=1000")).status, 400);
  // 200 years of minutes is far over the bucket bound.
  HttpResponse wide =
      ops->GetCounters(Get("/v1/counters", "event=a&bucket=minute&from=0&to=6311390400000"));
  EXPECT_EQ(wide.status, 400);
  EXPECT_NE(wide.body.find("buckets"), std::string::npos);
  HttpResponse ok = ops->GetCounters(
      Get("/v1/counters", "event=a&bucket=hour&from=2024-05-01T00:00:00Z&to=1714608000000"));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_NE(ok.body.find("\"series\":[]"), std::string::npos) << ok.body;
  EXPECT_NE(ok.body.find("\"from\":1714521600000"), std::string::npos) << ok.body;
}

TEST_F(OpsTest, ReadsWithAuthNeedAKeyAndStayInItsProject) {
  AuthOptions auth;
  auth.admin_token = "adm";
  auth.write_keys["wk1"] = "p1";
  auth.write_keys["wk2"] = "p2";
  auto ops = Make(auth);
  EXPECT_EQ(ops->GetUser(Get("/v1/users/u1")).status, 401);
  EXPECT_EQ(ops->GetUser(WithBearer(Get("/v1/users/u1"), "bad")).status, 401);
  EXPECT_EQ(ops->GetUser(WithBearer(Get("/v1/users/u1"), "wk1")).status, 404);
  EXPECT_EQ(ops->GetUser(WithBearer(Get("/v1/users/u1", "project=p2"), "wk1")).status, 403);
  EXPECT_EQ(ops->GetUser(WithBearer(Get("/v1/users/u1", "project=p2"), "adm")).status, 404);
  // Basic auth with the key as user name, as SDKs send it.
  HttpRequest basic = Get("/v1/counters", "event=x");
  basic.headers.emplace_back("authorization", "Basic d2syOg==");  // "wk2:"
  EXPECT_EQ(ops->GetCounters(basic).status, 200);
}

TEST(HttpUtil, QueryValuesAreDecodedLeniently) {
  EXPECT_EQ(QueryValue("a=1&b=x%20y+z&c", "b"), "x y z");
  EXPECT_EQ(QueryValue("a=1&c", "c"), "");
  EXPECT_FALSE(QueryValue("a=1", "b"));
  EXPECT_EQ(QueryValues("s=1&s=2&t=3", "s"), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(QueryValue("q=%zz%41", "q"), "%zzA");  // malformed escapes stay literal
  EXPECT_EQ(QueryValue("k%3D=v", "k="), "v");
}

TEST(HttpUtil, AuthorizationYieldsBasicUserOrBearer) {
  EXPECT_EQ(ParseAuthorization("Bearer  tok ").bearer, "tok");
  EXPECT_EQ(ParseAuthorization("bearer tok").bearer, "tok");
  EXPECT_EQ(ParseAuthorization(" Basic d2syOg==").basic_user, "wk2");  // "wk2:"
  EXPECT_EQ(ParseAuthorization("BASIC d2sy").basic_user, "wk2");       // no password part
  EXPECT_EQ(ParseAuthorization("Basic d2syOg==").bearer, "");
  EXPECT_EQ(ParseAuthorization("Basic !!").basic_user, "");  // not base64
  EXPECT_EQ(ParseAuthorization("Digest x").basic_user, "");
  EXPECT_EQ(ParseAuthorization("Bearer").bearer, "");
  HttpRequest req;
  req.headers.emplace_back("authorization", "Basic d2syOg==");
  EXPECT_EQ(RequestCredential(req), "wk2");
}

TEST(HttpUtil, ErrorsTakeTheirStatusFromTheTable) {
  HttpResponse r = JsonError(Code::kForbidden, "no");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, R"({"error":"no"})");
  r = StatusError(Status::Unavailable("down"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, R"({"error":"UNAVAILABLE: down"})");
}

// A read with no credential never matches a write key, whatever is configured.
TEST_F(OpsTest, EmptyCredentialReadsNothing) {
  AuthOptions auth;
  auth.write_keys = {{"", "p1"}};  // refused by config; the check holds without it
  auto ops = Make(auth);
  EXPECT_EQ(ops->GetCounters(Get("/v1/counters", "event=x")).status, 401);
}

TEST(StatusReport, TextAndJsonRenderTheSameNumbers) {
  StatusReport r;
  r.store_kind = "sqlite";
  r.now_ms = 1714557600000;
  r.queue.pending = 7;
  r.queue.dead = 2;
  ReplicaInfo rep;
  rep.id = "a\"b";
  rep.heartbeat_ms = r.now_ms - 1500;
  rep.leases_held = 3;
  r.replicas.push_back(rep);
  const std::string json = RenderStatusJson(r);
  EXPECT_NE(json.find("\"pending\":7"), std::string::npos);
  EXPECT_NE(json.find("\"id\":\"a\\\"b\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"heartbeat_age_ms\":1500"), std::string::npos);
  const std::string text = RenderStatusText(r);
  EXPECT_NE(text.find("pending 7"), std::string::npos) << text;
  EXPECT_NE(text.find("dead 2"), std::string::npos);
}

}  // namespace
}  // namespace sluice
