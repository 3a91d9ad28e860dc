// Hostile input against the real binary, beyond bad_input_test.cc: gzip
// bombs, deep nesting, invalid UTF-8, huge strings, header floods, many slow
// connections, half-closed connections, bad credentials with write keys
// configured, admin endpoints without the token, secrets kept out of the log,
// and the refusal to listen beyond loopback without auth. After each, the
// server still serves and stored nothing it refused.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "ingest/formats/gzip.h"
#include "system/system_util.h"
#include "testing/process.h"
#include "testing/raw_http.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kAdmin[] = "hostile-admin-token-7f3a9c";
constexpr char kKeyA[] = "hostile-write-key-a-51d2";
constexpr char kKeyB[] = "hostile-write-key-b-9e40";

std::string Gzip(const std::string& in) {
  Result<std::string> out = Compress(in, Compression::kGzip, 9);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? std::move(out).value() : std::string();
}

// Sends `data`, shuts the write side, and returns everything the server sent
// until it closed ("" when it closed without answering). Fails the test when
// the server keeps the connection open longer than 10 s.
std::string SendHalfClosed(int port, const std::string& data) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    EXPECT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()));
    ::shutdown(fd, SHUT_WR);
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0) break;
      if (n < 0) {
        ADD_FAILURE() << "server kept a half-closed connection open: " << std::strerror(errno);
        break;
      }
      got.append(buf, static_cast<size_t>(n));
    }
  } else {
    ADD_FAILURE() << "connect failed";
  }
  ::close(fd);
  return got;
}

std::vector<std::pair<std::string, std::string>> Auth(const std::string& key) {
  return {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + key}};
}

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.File("sluice.toml")) << ReplicaConfig(
        "sqlite:" + dir_.File("sluice.db"),
        std::string("[server]\nread_timeout = \"2s\"\n[auth]\nadmin_token = \"") + kAdmin +
            "\"\n[auth.write_keys]\n\"" + kKeyA + "\" = \"alpha\"\n\"" + kKeyB + "\" = \"beta\"\n");
    SluiceProcessOptions o;
    o.dir = dir_.path();
    o.args = {"--config", dir_.File("sluice.toml")};
    proc_ = std::make_unique<SluiceProcess>(o);
    ASSERT_TRUE(proc_->Start()) << proc_->error();
  }
  void TearDown() override {
    // Still serving, and accepted exactly what the test expected.
    HttpResult ok = Post(R"({"events":[{"event":"after","user_id":"u"}]})", kKeyA);
    EXPECT_EQ(ok.status, 200) << ok.body;
    HttpResult m =
        HttpGet(proc_->Url("/metrics"), {{"Authorization", std::string("Bearer ") + kAdmin}});
    EXPECT_EQ(MetricSum(m.body, "sluice_ingest_events_total", "result=\"accepted\""),
              expected_accepted_ + 1);
    // Secrets never reach the log, whatever was sent.
    const std::string log = proc_->ReadLog();
    EXPECT_EQ(log.find(kAdmin), std::string::npos);
    EXPECT_EQ(log.find(kKeyA), std::string::npos);
    EXPECT_EQ(log.find(kKeyB), std::string::npos);
    EXPECT_EQ(log.find("wrong-key-"), std::string::npos);
    EXPECT_EQ(proc_->Terminate(), 0);
  }
  HttpResult Post(const std::string& body, const std::string& key,
                  std::vector<std::pair<std::string, std::string>> extra = {}) {
    auto h = Auth(key);
    h.insert(h.end(), extra.begin(), extra.end());
    return HttpPost(proc_->Url("/v1/events"), body, h);
  }
  std::string RawRequest(const std::string& body, const std::string& key) {
    return "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           "Authorization: Bearer " +
           key + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  TempDir dir_;
  std::unique_ptr<SluiceProcess> proc_;
  int64_t expected_accepted_ = 0;
};

TEST_F(HostileInput, GzipBombIsRefusedWith413WithoutInflatingItAll) {
  // 1 GiB of one JSON string compresses to ~1 MiB: under the body limit,
  // far over the decompressed limit.
  std::string json = R"({"events":[{"event":"bomb","user_id":"u","properties":{"p":")";
  json.append(size_t{1} << 30, 'A');
  json.append("\"}}]}");
  const std::string bomb = Gzip(json);
  json.clear();
  json.shrink_to_fit();
  ASSERT_LT(bomb.size(), 5u << 20);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult r = Post(bomb, kKeyA, {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(10));
}

TEST_F(HostileInput, GzipGarbageAndTruncatedGzipAreRefusedWith400) {
  HttpResult r = Post("definitely not gzip", kKeyA, {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(r.status, 400) << r.body;
  std::string gz = Gzip(R"({"events":[{"event":"a","user_id":"u"}]})");
  gz.resize(gz.size() / 2);
  r = Post(gz, kKeyA, {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(HostileInput, DeeplyNestedJsonIsRefusedWith400) {
  for (int depth : {33, 1000, 200000}) {
    std::string nested;
    for (int i = 0; i < depth; ++i) nested += "{\"a\":";
    nested += "1";
    for (int i = 0; i < depth; ++i) nested += "}";
    HttpResult r =
        Post(R"({"events":[{"event":"deep","user_id":"u","properties":)" + nested + "}]}", kKeyA);
    EXPECT_TRUE(r.status == 400 || r.status == 413) << depth << ": " << r.status << " " << r.body;
    std::string arrays(static_cast<size_t>(depth), '[');
    arrays += std::string(static_cast<size_t>(depth), ']');
    r = Post(arrays, kKeyA);
    EXPECT_TRUE(r.status == 400 || r.status == 413) << depth << ": " << r.status;
  }
}

TEST_F(HostileInput, InvalidUtf8IsRefusedWith400) {
  for (const std::string& bad : {std::string("\xff\xfe"), std::string("\xc0\xaf"),
                                 std::string("\xed\xa0\x80"), std::string("ab\x80")}) {
    HttpResult r = Post("{\"events\":[{\"event\":\"" + bad + "\",\"user_id\":\"u\"}]}", kKeyA);
    EXPECT_EQ(r.status, 400) << r.body;
    r = Post(
        "{\"events\":[{\"event\":\"e\",\"user_id\":\"u\",\"properties\":{\"" + bad + "\":1}}]}",
        kKeyA);
    EXPECT_EQ(r.status, 400) << r.body;
  }
  // A lone surrogate escape is not valid text either.
  HttpResult r = Post(R"({"events":[{"event":"\ud800","user_id":"u"}]})", kKeyA);
  EXPECT_EQ(r.status, 400) << r.body;
}

TEST_F(HostileInput, HugeStringsAreRefusedAndNothingOfTheBatchIsStored) {
  const std::string big(100000, 'x');  // over max_string_bytes (64 KiB)
  for (const std::string& body :
       {R"({"events":[{"event":"ok","user_id":"u"},{"event":")" + big + R"(","user_id":"u"}]})",
        R"({"events":[{"event":"ok","user_id":")" + big + R"("}]})",
        R"({"events":[{"event":"ok","user_id":"u","properties":{"p":")" + big + R"("}}]})",
        R"({"events":[{"event":"ok","user_id":"u","insert_id":")" + big + R"("}]})"}) {
    HttpResult r = Post(body, kKeyA);
    EXPECT_TRUE(r.status == 400 || r.status == 413) << r.status << " " << r.body.substr(0, 200);
  }
}

TEST_F(HostileInput, TenThousandHeadersAreRefusedAndTheServerStaysUp) {
  RawConn c(proc_->port());
  ASSERT_TRUE(c.connected());
  std::string req = "POST /v1/events HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 10000; ++i) req += "X-Flood-" + std::to_string(i) + ": v\r\n";
  req += "Content-Length: 2\r\n\r\n{}";
  c.Send(req);  // the server may close before reading it all
  RawResponse r = c.Read();
  EXPECT_TRUE(r.status == 431 || r.status == 400 || r.status == 413 || r.status == 0) << r.status;
  EXPECT_EQ(HttpGet(proc_->Url("/healthz")).status, 200);
  // One header line longer than the whole header limit.
  RawConn c2(proc_->port());
  c2.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(100000, 'h') + "\r\n\r\n");
  RawResponse r2 = c2.Read();
  EXPECT_NE(r2.status, 200);
}

TEST_F(HostileInput, ManySlowConnectionsDoNotStarveOthersAndAreCutOff) {
  std::vector<std::unique_ptr<RawConn>> slow;
  for (int i = 0; i < 200; ++i) {
    slow.push_back(std::make_unique<RawConn>(proc_->port()));
    slow.back()->Send("POST /v1/events HTTP/1.1\r\nHost: x\r\n");
  }
  // Others are served meanwhile.
  for (int i = 0; i < 5; ++i) {
    HttpResult r = Post(R"({"events":[{"event":"fast","user_id":"u"}]})", kKeyA);
    EXPECT_EQ(r.status, 200);
    ++expected_accepted_;
    for (auto& s : slow) s->Send("X");  // a trickle, never a full header
  }
  // The read timeout (2 s) cuts every slow request off.
  int closed = 0;
  for (auto& s : slow) closed += s->ClosedWithin(8000) ? 1 : 0;
  EXPECT_EQ(closed, 200);
}

TEST_F(HostileInput, HalfClosedConnectionsAreAnsweredOrDropped) {
  // Whole request, then the client shuts its write side: still answered.
  {
    const std::string reply = SendHalfClosed(
        proc_->port(), RawRequest(R"({"events":[{"event":"half","user_id":"u"}]})", kKeyA));
    const bool ok = reply.rfind("HTTP/1.1 200", 0) == 0;
    EXPECT_TRUE(ok || reply.empty()) << reply;
    if (ok) ++expected_accepted_;
  }
  // Half a body, then SHUT_WR: nothing stored, no 200.
  {
    const std::string req = RawRequest(R"({"events":[{"event":"cut","user_id":"u"}]})", kKeyA);
    const std::string reply = SendHalfClosed(proc_->port(), req.substr(0, req.size() - 10));
    EXPECT_NE(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
  }
  // Headers only, then SHUT_WR.
  {
    const std::string reply = SendHalfClosed(
        proc_->port(), "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n");
    EXPECT_NE(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
  }
}

TEST_F(HostileInput, BadWriteKeysAreRefusedWith401AndProjectsStaySeparate) {
  const std::string body = R"({"events":[{"event":"e","user_id":"owner"}]})";
  EXPECT_EQ(HttpPost(proc_->Url("/v1/events"), body, {{"Content-Type", "application/json"}}).status,
            401);
  EXPECT_EQ(Post(body, "wrong-key-1").status, 401);
  EXPECT_EQ(Post(body, std::string(kKeyA) + "x").status, 401);
  EXPECT_EQ(Post(body, std::string(kKeyA).substr(0, 10)).status, 401);
  EXPECT_EQ(Post(body, kAdmin).status, 401);  // the admin token is no write key
  // Basic auth with a wrong user; a wrong key in the body.
  EXPECT_EQ(HttpPost(proc_->Url("/v1/events"), body,
                     {{"Content-Type", "application/json"},
                      {"Authorization", "Basic d3Jvbmcta2V5LTI6"}})  // wrong-key-2:
                .status,
            401);
  EXPECT_EQ(HttpPost(proc_->Url("/v1/events"),
                     R"({"write_key":"wrong-key-3","events":[{"event":"e","user_id":"u"}]})",
                     {{"Content-Type", "application/json"}})
                .status,
            401);
  // A good key writes to its own project only; the other project's key cannot read it.
  ASSERT_EQ(Post(body, kKeyA).status, 200);
  ++expected_accepted_;
  ASSERT_TRUE(WaitUntil(
      [&] {
        return HttpGet(proc_->Url("/v1/users/owner?project=alpha"),
                       {{"Authorization", std::string("Bearer ") + kKeyA}})
                   .status == 200;
      },
      seconds(20), milliseconds(50)));
  EXPECT_NE(HttpGet(proc_->Url("/v1/users/owner?project=alpha"),
                    {{"Authorization", std::string("Bearer ") + kKeyB}})
                .status,
            200);
  EXPECT_EQ(HttpGet(proc_->Url("/v1/users/owner?project=alpha")).status, 401);
  EXPECT_EQ(HttpGet(proc_->Url("/v1/users/owner?project=alpha"),
                    {{"Authorization", "Bearer wrong-key-4"}})
                .status,
            401);
}

TEST_F(HostileInput, AdminEndpointsRefuseWithoutTheAdminToken) {
  const std::vector<std::pair<std::string, std::string>> none;
  const std::vector<std::pair<std::string, std::string>> write_key = {
      {"Authorization", std::string("Bearer ") + kKeyA}};
  const std::vector<std::pair<std::string, std::string>> wrong = {
      {"Authorization", "Bearer wrong-key-5"}};
  for (const auto& h : {none, write_key, wrong}) {
    EXPECT_EQ(HttpGet(proc_->Url("/admin/status"), h).status, 401);
    EXPECT_EQ(HttpGet(proc_->Url("/admin/dlq"), h).status, 401);
    EXPECT_EQ(HttpPost(proc_->Url("/admin/dlq/requeue"), "{\"all\":true}", h).status, 401);
    EXPECT_EQ(HttpPost(proc_->Url("/admin/dlq/purge"), "{\"all\":true}", h).status, 401);
  }
  const std::vector<std::pair<std::string, std::string>> admin = {
      {"Authorization", std::string("Bearer ") + kAdmin}};
  EXPECT_EQ(HttpGet(proc_->Url("/admin/status"), admin).status, 200);
  EXPECT_EQ(HttpGet(proc_->Url("/admin/dlq"), admin).status, 200);
}

TEST(HostileListen, ServeRefusesNonLoopbackWithoutAuthUnlessAllowed) {
  TempDir dir;
  const int port = FreePort();
  CommandResult r = RunSluice({"serve", "--listen", "0.0.0.0:" + std::to_string(port), "--store",
                               "sqlite:" + dir.File("s.db")},
                              {}, seconds(30));
  EXPECT_NE(r.exit_code, 0);
  const std::string all = r.out + r.err;
  EXPECT_NE(all.find("non-loopback"), std::string::npos) << all;
  EXPECT_NE(all.find("allow_public_without_auth"), std::string::npos) << all;

  // Also through the config file, and with SLUICE_LISTEN.
  std::ofstream(dir.File("public.toml"))
      << "[server]\nlisten = \"0.0.0.0:" << port
      << "\"\n[store]\nurl = \"sqlite:" << dir.File("s.db") << "\"\n";
  r = RunSluice({"serve", "--config", dir.File("public.toml")}, {}, seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("allow_public_without_auth"), std::string::npos);

  // Told explicitly, it starts.
  std::ofstream(dir.File("allowed.toml"))
      << "[server]\nallow_public_without_auth = true\n[store]\nurl = \"sqlite:" << dir.File("s2.db")
      << "\"\n";
  SluiceProcessOptions o;
  o.dir = dir.path();
  o.args = {"--config", dir.File("allowed.toml"), "--listen",
            "0.0.0.0:" + std::to_string(FreePort())};
  o.port = 0;
  SluiceProcess p(o);
  ASSERT_TRUE(p.Start()) << p.error();
  EXPECT_EQ(p.Terminate(), 0);
}

}  // namespace
}  // namespace sluice::testing
