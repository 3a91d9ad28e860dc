#include "http/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "http/http_util.h"
#include "testing/raw_http.h"
#include "testing/testing.h"

namespace sluice {
namespace {

using testing::RawCall;
using testing::RawConn;
using testing::RawRequest;
using testing::WaitUntil;

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer() {
    options_.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(options_, max_body_bytes_, &metrics_);
    server_->Route("GET", "/hello", [](const HttpRequest&, Responder respond) {
      HttpResponse r;
      r.body = "{\"hello\":true}";
      respond(std::move(r));
    });
    server_->Route("POST", "/echo", [](const HttpRequest& req, Responder respond) {
      HttpResponse r;
      r.content_type = "text/plain";
      r.body = req.body;
      respond(std::move(r));
    });
    server_->Route("*", "/items/*", [](const HttpRequest& req, Responder respond) {
      HttpResponse r;
      r.content_type = "text/plain";
      r.body = req.method + " " + req.path + " q=" + QueryValue(req.query, "q").value_or("<none>") +
               " loopback=" + (req.remote_is_loopback ? "1" : "0");
      respond(std::move(r));
    });
    server_->Route("GET", "/later", [this](const HttpRequest&, Responder respond) {
      // Answer from another thread, after the handler returned.
      workers_.emplace_back([respond] {
        HttpResponse r;
        r.body = "{\"later\":true}";
        respond(std::move(r));
      });
    });
    server_->Route("GET", "/throw",
                   [](const HttpRequest&, Responder) { throw std::runtime_error("boom"); });
    auto port = server_->Start();
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }

  void TearDown() override {
    if (server_) server_->Stop(1000);
    for (auto& t : workers_) t.join();
  }

  int64_t Rejected(const std::string& reason) {
    return metrics_.GetCounter("sluice_http_rejected_total", "", Labels({{"reason", reason}}))
        .value();
  }

  ServerOptions options_;
  int64_t max_body_bytes_ = 5 * 1024 * 1024;
  Metrics metrics_;
  std::unique_ptr<HttpServer> server_;
  std::vector<std::thread> workers_;
  int port_ = 0;
};

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.Send(RawRequest("POST", "/echo", "n=" + std::to_string(i))));
    auto r = c.Read();
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "n=" + std::to_string(i));
  }
  EXPECT_EQ(
      metrics_.GetCounter("sluice_http_requests_total", "", Labels({{"code", "200"}})).value(), 20);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("POST", "/echo", "a") + RawRequest("POST", "/echo", "b")));
  EXPECT_EQ(c.Read().body, "a");
  EXPECT_EQ(c.Read().body, "b");
}

TEST_F(HttpServerTest, OversizedBodyReturns413) {
  max_body_bytes_ = 1024 * 1024;
  StartServer();
  RawConn c(port_);
  // Announce 10 MiB; the server refuses right after the headers.
  std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n";
  ASSERT_TRUE(c.Send(head + std::string(64 * 1024, 'x')));
  auto r = c.Read();
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
  EXPECT_TRUE(c.ClosedWithin(5000));
  EXPECT_EQ(Rejected("body_too_large"), 1);
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitReturns413) {
  max_body_bytes_ = 1000;
  StartServer();
  RawConn c(port_);
  std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) req += "200\r\n" + std::string(512, 'y') + "\r\n";
  req += "0\r\n\r\n";
  ASSERT_TRUE(c.Send(req));
  EXPECT_EQ(c.Read().status, 413);
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  max_body_bytes_ = 1000;
  StartServer();
  auto r = RawCall(port_, "POST", "/echo", std::string(1000, 'z'));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), 1000u);
}

TEST_F(HttpServerTest, SlowClientIsClosedByReadTimeout) {
  options_.read_timeout_ms = 300;
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\n"));
  // Trickle one header byte at a time: each byte arrives before any per-read
  // timeout would fire, but the whole request never completes in time.
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    if (!c.Send("X")) break;
    closed = c.ClosedWithin(50);
  }
  if (!closed) closed = c.ClosedWithin(2000);
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(WaitUntil([&] { return Rejected("read_timeout") == 1; }, std::chrono::seconds(5)));
}

TEST_F(HttpServerTest, SlowBodyIsClosedByReadTimeout) {
  options_.read_timeout_ms = 300;
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"));
  EXPECT_TRUE(c.ClosedWithin(3000));
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
  options_.idle_timeout_ms = 200;
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/hello", "")));
  EXPECT_EQ(c.Read().status, 200);
  EXPECT_TRUE(c.ClosedWithin(3000));
}

TEST_F(HttpServerTest, HeaderFloodIsRejected) {
  options_.max_header_bytes = 4096;
  StartServer();
  RawConn c(port_);
  std::string req = "GET /hello HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 2000; ++i) req += "X-Flood-" + std::to_string(i) + ": aaaaaaaaaaaaaaaa\r\n";
  req += "\r\n";
  c.Send(req);  // the server may close before everything is sent
  auto r = c.Read();
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(Rejected("header_too_large"), 1);
}

TEST_F(HttpServerTest, GarbageRequestGets400AndServerSurvives) {
  StartServer();
  {
    RawConn c(port_);
    ASSERT_TRUE(c.Send(std::string("\x01\x02\x03 nonsense \xff\xfe\r\n\r\n", 19)));
    EXPECT_EQ(c.Read().status, 400);
  }
  {
    RawConn c(port_);
    ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n"));
    EXPECT_EQ(c.Read().status, 400);
  }
  EXPECT_EQ(RawCall(port_, "GET", "/hello").status, 200);
}

TEST_F(HttpServerTest, HeadAndUnknownMethodsGet405) {
  StartServer();
  EXPECT_EQ(RawCall(port_, "HEAD", "/hello").status, 405);
  EXPECT_EQ(RawCall(port_, "BREW", "/hello").status, 405);
  EXPECT_EQ(RawCall(port_, "DELETE", "/hello").status, 405);  // known path, other method
}

TEST_F(HttpServerTest, UnknownPathGets404) {
  StartServer();
  EXPECT_EQ(RawCall(port_, "GET", "/nope").status, 404);
}

TEST_F(HttpServerTest, FallbackGetsUnroutedRequests) {
  options_.listen = "127.0.0.1:0";
  server_ = std::make_unique<HttpServer>(options_, max_body_bytes_, &metrics_);
  server_->Fallback([](const HttpRequest& req, Responder respond) {
    HttpResponse r;
    r.status = 202;
    r.body = req.path;
    respond(std::move(r));
  });
  auto port = server_->Start();
  ASSERT_TRUE(port.ok());
  auto r = RawCall(*port, "POST", "/anything/at/all", "{}");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, "/anything/at/all");
}

TEST_F(HttpServerTest, PrefixRouteDecodesPathAndQuery) {
  StartServer();
  auto r = RawCall(port_, "GET", "/items/a%20b%2Fc?x=1&q=hello+world%21");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /items/a b/c q=hello world! loopback=1");
  EXPECT_EQ(RawCall(port_, "GET", "/items/x?q").body, "GET /items/x q= loopback=1");
  EXPECT_EQ(RawCall(port_, "GET", "/items/bad%zz").status, 400);
  EXPECT_EQ(RawCall(port_, "GET", "/items/nul%00").status, 400);
}

TEST_F(HttpServerTest, HandlerMayAnswerLaterFromAnotherThread) {
  StartServer();
  auto r = RawCall(port_, "GET", "/later");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"later\":true}");
}

TEST_F(HttpServerTest, ThrowingHandlerGets500AndServerSurvives) {
  StartServer();
  EXPECT_EQ(RawCall(port_, "GET", "/throw").status, 500);
  EXPECT_EQ(RawCall(port_, "GET", "/hello").status, 200);
}

TEST_F(HttpServerTest, ExpectContinueGetsInterim100ThenTheAnswer) {
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n"));
  auto interim = c.Read(/*keep_interim=*/true);
  EXPECT_EQ(interim.status, 100);
  ASSERT_TRUE(c.Send("hello"));
  auto r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
}

TEST_F(HttpServerTest, ExpectContinueOverLimitGets413WithoutBody) {
  max_body_bytes_ = 100;
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
             "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(c.Read(/*keep_interim=*/true).status, 413);
}

TEST_F(HttpServerTest, ConnectionsBeyondMaxAreClosed) {
  options_.max_connections = 2;
  StartServer();
  RawConn a(port_), b(port_);
  ASSERT_TRUE(a.Send(RawRequest("GET", "/hello", "")));
  ASSERT_EQ(a.Read().status, 200);
  ASSERT_TRUE(b.Send(RawRequest("GET", "/hello", "")));
  ASSERT_EQ(b.Read().status, 200);
  RawConn extra(port_);
  EXPECT_TRUE(extra.ClosedWithin(3000));
  EXPECT_EQ(Rejected("max_connections"), 1);
}

TEST_F(HttpServerTest, ConcurrentRequestsAreAllAnswered) {
  options_.threads = 4;
  StartServer();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 16; ++t) {
    clients.emplace_back([&, t] {
      RawConn c(port_);
      for (int i = 0; i < 50; ++i) {
        const std::string body = std::to_string(t) + ":" + std::to_string(i);
        if (!c.Send(RawRequest("POST", "/echo", body))) return;
        auto r = c.Read();
        if (r.status == 200 && r.body == body) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 16 * 50);
}

TEST_F(HttpServerTest, StopClosesIdleConnectionsAndRefusesNewOnes) {
  StartServer();
  RawConn c(port_);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/hello", "")));
  ASSERT_EQ(c.Read().status, 200);
  server_->Stop(1000);
  EXPECT_TRUE(c.ClosedWithin(3000));
  RawConn after(port_, 1000);
  EXPECT_TRUE(!after.connected() || after.ClosedWithin(2000));
}

TEST_F(HttpServerTest, ResponderOutlivingTheServerIsHarmless) {
  options_.listen = "127.0.0.1:0";
  server_ = std::make_unique<HttpServer>(options_, max_body_bytes_, &metrics_);
  std::mutex mu;
  std::vector<Responder> parked;
  server_->Route("GET", "/park", [&](const HttpRequest&, Responder respond) {
    std::lock_guard<std::mutex> lock(mu);
    parked.push_back(std::move(respond));
  });
  auto port = server_->Start();
  ASSERT_TRUE(port.ok());
  RawConn c(*port);
  ASSERT_TRUE(c.Send(RawRequest("GET", "/park", "")));
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return !parked.empty();
      },
      std::chrono::seconds(5)));
  server_->Stop(50);
  server_.reset();
  std::lock_guard<std::mutex> lock(mu);
  parked[0](HttpResponse{});  // must not crash or touch the destroyed server
}

}  // namespace
}  // namespace sluice
