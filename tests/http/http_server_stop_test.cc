// HttpServer::Stop and answers being written: a graceful stop (SIGTERM) must
// not cut off an acknowledgement the handler already gave, even when the
// client reads it slowly — and it must stay bounded by its grace when the
// client never reads at all.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "http/http_server.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::WaitUntil;

constexpr size_t kBigBody = 8 << 20;  // far more than the socket buffers hold

// A blocking client socket with a small receive buffer (set before connect),
// so a large answer stays in the server's write path until the client reads.
class SlowClient {
 public:
  explicit SlowClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int rcvbuf = 16 * 1024;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    timeval tv{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~SlowClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  SlowClient(const SlowClient&) = delete;
  SlowClient& operator=(const SlowClient&) = delete;

  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // Everything until the server closes (or the 20 s receive timeout), read in
  // small pieces with a pause between them: a slow reader.
  std::string ReadToEnd() {
    std::string all;
    char buf[32 * 1024];
    for (int i = 0;; ++i) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      all.append(buf, static_cast<size_t>(n));
      if (i % 16 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return all;
  }

  // True when the server closed the connection (EOF or reset) within `ms`.
  bool ClosedWithin(int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char tmp[4096];
      if (::recv(fd_, tmp, sizeof tmp, 0) <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A route that holds its responder until the test answers.
struct HeldAnswer {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Responder> respond;
};

class HttpServerStopTest : public ::testing::Test {
 protected:
  void StartServer() {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(options, 5 * 1024 * 1024, &metrics_);
    server_->Route("GET", "/held", [this](const HttpRequest&, Responder respond) {
      std::lock_guard<std::mutex> lock(held_.mu);
      held_.respond = std::move(respond);
      held_.cv.notify_all();
    });
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }

  bool WaitHeld() {
    std::unique_lock<std::mutex> lock(held_.mu);
    return held_.cv.wait_for(lock, std::chrono::seconds(10),
                             [&] { return held_.respond.has_value(); });
  }

  void AnswerBig() {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body.assign(kBigBody, 'x');
    std::lock_guard<std::mutex> lock(held_.mu);
    (*held_.respond)(std::move(r));
  }

  void TearDown() override {
    if (stopper_.joinable()) stopper_.join();
    server_.reset();
  }

  Metrics metrics_;
  std::unique_ptr<HttpServer> server_;
  HeldAnswer held_;
  std::thread stopper_;
  int port_ = 0;
};

TEST_F(HttpServerStopTest, StopWaitsUntilAnAcknowledgementIsWrittenToASlowReader) {
  StartServer();
  SlowClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(WaitHeld());
  // An idle keep-alive connection: Stop closes it at once, which tells the
  // test that the stop is under way before the answer is given.
  SlowClient idle(port_);
  ASSERT_TRUE(idle.connected());

  std::atomic<bool> stopped{false};
  stopper_ = std::thread([&] {
    server_->Stop(/*grace_ms=*/15000);
    stopped.store(true);
  });
  ASSERT_TRUE(idle.ClosedWithin(5000));
  AnswerBig();
  const std::string got = client.ReadToEnd();

  const size_t head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << "no answer at all (" << got.size() << " bytes)";
  EXPECT_EQ(got.compare(0, 12, "HTTP/1.1 200"), 0) << got.substr(0, 200);
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got.substr(0, head_end);
  EXPECT_EQ(got.size() - head_end - 4, kBigBody) << "the answer was cut off by the stop";
  ASSERT_TRUE(WaitUntil([&] { return stopped.load(); }, std::chrono::seconds(10)));
}

TEST_F(HttpServerStopTest, StopGivesUpOnAReaderThatNeverReadsAfterTheGrace) {
  StartServer();
  SlowClient client(port_);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(WaitHeld());
  AnswerBig();  // the client never reads it: the write cannot complete
  const auto t0 = std::chrono::steady_clock::now();
  server_->Stop(/*grace_ms=*/500);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(400));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_TRUE(client.ClosedWithin(5000));
}

}  // namespace
}  // namespace sluice
