// Streamed responses (HttpResponse::stream): the head goes out at once with
// chunked coding, chunks follow as the producer writes them, one in flight at
// a time, and a client that leaves or a server that stops ends the stream.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "http/http_server.h"
#include "testing/raw_http.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::RawConn;
using testing::RawRequest;
using testing::WaitUntil;
using std::chrono::milliseconds;

class HttpStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(options, 1 << 20, &metrics_);
    server_->Route("GET", "/stream", [this](const HttpRequest&, Responder respond) {
      HttpResponse r;
      r.content_type = "text/event-stream";
      r.body = "first\n";
      r.stream = [this](ResponseStreamPtr sink) {
        std::lock_guard<std::mutex> lock(mu_);
        sink_ = std::move(sink);
      };
      respond(std::move(r));
    });
    server_->Route("GET", "/hello", [](const HttpRequest&, Responder respond) {
      HttpResponse r;
      r.body = "{}";
      respond(std::move(r));
    });
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }
  void TearDown() override {
    if (server_) server_->Stop(1000);
  }

  ResponseStreamPtr WaitForSink() {
    EXPECT_TRUE(WaitUntil(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          return sink_ != nullptr;
        },
        milliseconds(5000)));
    std::lock_guard<std::mutex> lock(mu_);
    return sink_;
  }

  // Writes `chunk`, retrying while the previous one is still on its way.
  static ResponseStream::WriteResult WriteWhenIdle(ResponseStream& s, const std::string& chunk) {
    ResponseStream::WriteResult r = ResponseStream::WriteResult::kBusy;
    WaitUntil(
        [&] {
          r = s.Write(chunk);
          return r != ResponseStream::WriteResult::kBusy;
        },
        milliseconds(5000));
    return r;
  }

  Metrics metrics_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
  std::mutex mu_;
  ResponseStreamPtr sink_;
};

TEST_F(HttpStreamTest, StreamedResponseSendsHeadFirstChunkAndLaterChunks) {
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/stream", "")));
  const std::string head = c.ReadUntil("first\n");
  EXPECT_NE(head.find("HTTP/1.1 200"), std::string::npos) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: close"), std::string::npos) << head;
  EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
  ResponseStreamPtr sink = WaitForSink();
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(WriteWhenIdle(*sink, "second\n"), ResponseStream::WriteResult::kQueued);
  EXPECT_NE(c.ReadUntil("second\n"), "");
  EXPECT_EQ(WriteWhenIdle(*sink, "third\n"), ResponseStream::WriteResult::kQueued);
  EXPECT_NE(c.ReadUntil("third\n"), "");
  sink->End();
  // The terminating zero-length chunk, then the close.
  EXPECT_NE(c.ReadUntil("0\r\n\r\n"), "");
  EXPECT_TRUE(c.ClosedWithin(5000));
  EXPECT_EQ(sink->Write("late"), ResponseStream::WriteResult::kClosed);
}

TEST_F(HttpStreamTest, ClientThatLeavesClosesTheStream) {
  auto c = std::make_unique<RawConn>(port_);
  ASSERT_TRUE(c->Send(RawRequest("GET", "/stream", "")));
  ASSERT_NE(c->ReadUntil("first\n"), "");
  ResponseStreamPtr sink = WaitForSink();
  ASSERT_NE(sink, nullptr);
  c.reset();  // the browser tab closes
  EXPECT_TRUE(WaitUntil([&] { return sink->closed(); }, milliseconds(5000)));
  EXPECT_EQ(sink->Write("x"), ResponseStream::WriteResult::kClosed);
}

TEST_F(HttpStreamTest, StopEndsOpenStreamsWithoutWaitingForThem) {
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/stream", "")));
  ASSERT_NE(c.ReadUntil("first\n"), "");
  ResponseStreamPtr sink = WaitForSink();
  ASSERT_NE(sink, nullptr);
  const auto start = std::chrono::steady_clock::now();
  server_->Stop(10000);  // a stream is not an in-flight request: no 10 s wait
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(c.ClosedWithin(5000));
  EXPECT_TRUE(sink->closed());
  EXPECT_EQ(sink->Write("after stop"), ResponseStream::WriteResult::kClosed);
  server_.reset();
  EXPECT_EQ(sink->Write("after destruction"), ResponseStream::WriteResult::kClosed);
}

TEST_F(HttpStreamTest, OneChunkInFlightAtATime) {
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/stream", "")));
  ASSERT_NE(c.ReadUntil("first\n"), "");
  ResponseStreamPtr sink = WaitForSink();
  ASSERT_NE(sink, nullptr);
  // A reader that never reads: writes back up, and the sink says busy
  // instead of queueing without bound.
  const std::string big(1 << 20, 'x');
  int queued = 0;
  bool busy = false;
  for (int i = 0; i < 200 && !busy; ++i) {
    const auto r = sink->Write(big);
    if (r == ResponseStream::WriteResult::kQueued) ++queued;
    if (r == ResponseStream::WriteResult::kBusy) busy = true;
  }
  EXPECT_TRUE(busy) << queued << " MiB queued without backpressure";
  EXPECT_LT(queued, 200);
}

TEST_F(HttpStreamTest, OtherRequestsAreServedWhileAStreamIsOpen) {
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/stream", "")));
  ASSERT_NE(c.ReadUntil("first\n"), "");
  EXPECT_EQ(testing::RawCall(port_, "GET", "/hello").status, 200);
}

}  // namespace
}  // namespace sluice
