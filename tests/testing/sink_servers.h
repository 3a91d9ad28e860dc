// Test servers for the external consumers: real s3rver / ClickHouse started by
// the project's scripts (scripts/{s3rver,clickhouse}-{start,stop}.sh) in a
// temp dir on a free port, and a tiny in-process HTTP receiver for webhooks.
// Header-only, used by tests/consumers/{archive,clickhouse,webhook,http}_*test.cc.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/event.h"
#include "queue/store.h"
#include "testing/testing.h"

namespace sluice::testing {

// Runs `command` with sh, returns its stdout; *rc gets the exit status.
inline std::string RunCommand(const std::string& command, int* rc) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) {
    *rc = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = ::pclose(p);
  return out;
}

// A server started by scripts/NAME-start.sh, stopped by scripts/NAME-stop.sh.
// The start script prints "export K=V K2=V2 ..."; vars() holds those.
class ScriptServer {
 public:
  // `env`: "K=V ..." prepended to the start command. Empty vars() on failure
  // (error() says why).
  ScriptServer(const std::string& name, const std::string& env) : name_(name) {
    int rc = 0;
    const std::string cmd =
        "cd '" SLUICE_SOURCE_DIR "' && " + env + " scripts/" + name + "-start.sh 2>&1";
    const std::string out = RunCommand(cmd, &rc);
    const size_t at = out.rfind("export ");
    if (rc != 0 || at == std::string::npos) {
      error_ = "scripts/" + name + "-start.sh failed (rc " + std::to_string(rc) + "): " + out;
      return;
    }
    std::istringstream in(out.substr(at + 7));
    std::string kv;
    while (in >> kv) {
      const size_t eq = kv.find('=');
      if (eq != std::string::npos) vars_[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  ~ScriptServer() {
    const std::string dir_var = name_ == "clickhouse" ? "CH_DIR" : "S3_DIR";
    if (auto it = vars_.find(dir_var); it != vars_.end()) {
      int rc = 0;
      RunCommand(
          "cd '" SLUICE_SOURCE_DIR "' && scripts/" + name_ + "-stop.sh '" + it->second + "' 2>&1",
          &rc);
    }
  }
  ScriptServer(const ScriptServer&) = delete;
  ScriptServer& operator=(const ScriptServer&) = delete;

  bool ok() const { return !vars_.empty(); }
  const std::string& error() const { return error_; }
  std::string var(const std::string& k) const {
    auto it = vars_.find(k);
    return it == vars_.end() ? std::string() : it->second;
  }

 private:
  const std::string name_;
  std::map<std::string, std::string> vars_;
  std::string error_;
};

// One request as the receiver saw it.
struct ReceivedRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body = "ok";
};

// A minimal HTTP/1.1 server on 127.0.0.1:port(), one thread per connection,
// keep-alive. The handler runs for every request (any thread); requests() keeps
// every request unless `keep_requests` is false (a receiver counting a long
// run's dispatches keeps only what its handler records). Thread-safe.
class HttpReceiver {
 public:
  using Handler = std::function<Reply(const ReceivedRequest&)>;

  explicit HttpReceiver(Handler handler, bool keep_requests = true)
      : handler_(std::move(handler)), keep_requests_(keep_requests) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~HttpReceiver() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<ReceivedRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // TCP connections accepted so far.
  int connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return connections_;
  }
  // Requests answered so far (kept or not).
  size_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      ++connections_;
      conn_fds_.push_back(fd);
      threads_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::string buf;
    char chunk[8192];
    for (;;) {
      size_t header_end;
      while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return Close(fd);
        buf.append(chunk, static_cast<size_t>(n));
      }
      ReceivedRequest req;
      std::istringstream head(buf.substr(0, header_end));
      std::string line;
      std::getline(head, line);
      std::istringstream rl(line);
      rl >> req.method >> req.target;
      while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        req.headers[name] = line.substr(v);
      }
      const size_t want =
          req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
      buf.erase(0, header_end + 4);
      while (buf.size() < want) {
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return Close(fd);
        buf.append(chunk, static_cast<size_t>(n));
      }
      req.body = buf.substr(0, want);
      buf.erase(0, want);
      const Reply reply = handler_(req);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++count_;
        if (keep_requests_) requests_.push_back(req);
      }
      std::string out = "HTTP/1.1 " + std::to_string(reply.status) +
                        " X\r\nContent-Length: " + std::to_string(reply.body.size()) + "\r\n";
      for (const auto& [k, v] : reply.headers) out += k + ": " + v + "\r\n";
      out += "\r\n" + reply.body;
      if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) return Close(fd);
    }
  }

  void Close(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase(conn_fds_, fd);
    ::close(fd);
  }

  const Handler handler_;
  const bool keep_requests_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;       // GUARDED_BY(mu_)
  std::vector<int> conn_fds_;              // GUARDED_BY(mu_)
  int connections_ = 0;                    // GUARDED_BY(mu_)
  size_t count_ = 0;                       // GUARDED_BY(mu_)
  std::vector<ReceivedRequest> requests_;  // GUARDED_BY(mu_)
};

// `n` claimed events seq first.., project `project`, insert ids "id-<seq>",
// event name "ev<seq % 3>", received at `received_ms` + seq seconds.
inline std::vector<ClaimedEvent> MakeEvents(int64_t first, int n, const std::string& project,
                                            int64_t received_ms) {
  std::vector<ClaimedEvent> out;
  for (int i = 0; i < n; ++i) {
    ClaimedEvent c;
    c.seq = first + i;
    c.project = project;
    c.insert_id = "id-" + std::to_string(c.seq);
    Event e;
    e.event = "ev" + std::to_string(c.seq % 3);
    e.user_id = "user-" + std::to_string(c.seq % 5);
    e.time_ms = received_ms - 1000 + c.seq;
    e.received_ms = received_ms + 1000 * c.seq;
    e.properties = R"({"n":)" + std::to_string(c.seq) + R"(,"s":"quote \" and \\ back"})";
    c.body = ToBody(e);
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace sluice::testing
