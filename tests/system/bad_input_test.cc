// Hostile and malformed requests against the real binary: each gets its
// honest status and a JSON error, and the store is left unchanged.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "ingest/formats/native.h"
#include "system/system_util.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.File("sluice.toml"))
        << ReplicaConfig("sqlite:" + dir_.File("sluice.db"), "[server]\nread_timeout = \"1s\"\n");
    SluiceProcessOptions o;
    o.dir = dir_.path();
    o.args = {"--config", dir_.File("sluice.toml")};
    proc_ = std::make_unique<SluiceProcess>(o);
    ASSERT_TRUE(proc_->Start()) << proc_->error();
  }
  void TearDown() override {
    // Nothing any request above sent was stored or counted.
    HttpResult status = HttpGet(proc_->Url("/admin/status"));
    EXPECT_NE(status.body.find("\"pending\":0,\"leased\":0,\"dead\":0"), std::string::npos)
        << status.body;
    HttpResult m = HttpGet(proc_->Url("/metrics"));
    EXPECT_EQ(MetricSum(m.body, "sluice_ingest_events_total", "result=\"accepted\""), 0);
    EXPECT_EQ(proc_->Terminate(), 0);
  }
  HttpResult Post(const std::string& body) {
    return HttpPost(proc_->Url("/v1/events"), body, {{"Content-Type", "application/json"}});
  }

  TempDir dir_;
  std::unique_ptr<SluiceProcess> proc_;
};

TEST_F(BadInput, MalformedJsonReturns400) {
  HttpResult r = Post("{\"events\":[{\"event\":\"a\",");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
}

TEST_F(BadInput, WrongTypeReturns400WithIndexAndField) {
  HttpResult r = Post(
      "{\"events\":[{\"event\":\"ok\",\"user_id\":\"u\"},"
      "{\"event\":\"bad\",\"user_id\":\"u\",\"properties\":[1,2]}]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"index\":1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"field\":\"properties\""), std::string::npos) << r.body;
}

TEST_F(BadInput, MissingEventNameReturns400AndStoresNothingOfTheBatch) {
  HttpResult r = Post(
      "{\"events\":[{\"event\":\"fine\",\"user_id\":\"u\"},{\"user_id\":\"u\"}]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"index\":1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"field\":\"event\""), std::string::npos) << r.body;
}

TEST_F(BadInput, TenMebibyteBodyReturns413) {
  std::string body = "{\"events\":[{\"event\":\"x\",\"user_id\":\"u\",\"properties\":{\"p\":\"";
  body.append(10 * 1024 * 1024, 'a');
  body.append("\"}}]}");
  HttpResult r = Post(body);
  EXPECT_EQ(r.status, 413) << r.error;
}

TEST_F(BadInput, ThousandAndOneEventsReturn413) {
  NativeBodyBuilder body;
  for (int i = 0; i < 1001; ++i) {
    Event e;
    e.event = "e";
    e.user_id = "u";
    e.insert_id = "id" + std::to_string(i);
    body.Add(e);
  }
  HttpResult r = Post(body.Finish());
  EXPECT_EQ(r.status, 413);
}

TEST_F(BadInput, SlowClientIsCutOffByTheReadTimeout) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(proc_->port()));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string head =
      "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"events\":";
  ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
  // The rest never comes. The server must close within its 1 s read timeout
  // (plus slack), without storing anything.
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  const auto start = std::chrono::steady_clock::now();
  ssize_t n;
  do {
    n = recv(fd, buf, sizeof buf, 0);
  } while (n > 0);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(n, 0) << "expected the server to close the connection";
  EXPECT_LT(waited, seconds(5));
  close(fd);
  // The server still serves others.
  EXPECT_EQ(HttpGet(proc_->Url("/healthz")).status, 200);
}

}  // namespace
}  // namespace sluice::testing
