// A tiny blocking HTTP/1.1 client over raw sockets for the ingest tests: it
// can misbehave on purpose (slow headers, floods, half-sent bodies), which a
// real client library would not let a test do. Test-only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::testing {

struct RawResponse {
  int status = 0;                              // 0 when no complete response arrived
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class RawConn {
 public:
  explicit RawConn(int port, int timeout_ms = 10000) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return connected_; }

  // False when the peer closed or reset the connection.
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (skipping interim 1xx unless `keep_interim`).
  RawResponse Read(bool keep_interim = false) {
    for (;;) {
      RawResponse r;
      size_t header_end;
      while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
        if (!Fill()) return r;
      }
      const std::string head = buf_.substr(0, header_end);
      buf_.erase(0, header_end + 4);
      size_t line_end = head.find("\r\n");
      const std::string status_line = head.substr(0, line_end);
      if (status_line.size() < 12) return r;
      r.status = std::atoi(status_line.c_str() + 9);
      while (line_end != std::string::npos) {
        const size_t start = line_end + 2;
        line_end = head.find("\r\n", start);
        std::string line = head.substr(
            start, line_end == std::string::npos ? std::string::npos : line_end - start);
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        r.headers[name] = line.substr(v);
      }
      if (r.status >= 100 && r.status < 200 && !keep_interim) continue;
      size_t len = 0;
      if (auto it = r.headers.find("content-length"); it != r.headers.end()) {
        len = std::stoul(it->second);
      }
      while (buf_.size() < len) {
        if (!Fill()) {
          r.status = 0;
          return r;
        }
      }
      r.body = buf_.substr(0, len);
      buf_.erase(0, len);
      return r;
    }
  }

  // Reads raw bytes (a streamed body with its chunk framing) until `needle`
  // has arrived; returns everything read so far, consumed. "" when the
  // connection ended or the socket timeout passed first.
  std::string ReadUntil(std::string_view needle) {
    while (buf_.find(needle) == std::string::npos) {
      if (!Fill()) return std::string();
    }
    std::string out;
    out.swap(buf_);
    return out;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // True when the server closed the connection within `timeout_ms` (data
  // still arriving before the close is discarded).
  bool ClosedWithin(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char tmp[4096];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return true;
    }
  }

 private:
  bool Fill() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

// "POST path HTTP/1.1" with Content-Length and the given extra header lines
// (each "Name: value").
inline std::string RawRequest(std::string_view method, std::string_view path, std::string_view body,
                              const std::vector<std::string>& headers = {}) {
  std::string req;
  req.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  for (const auto& h : headers) req.append(h).append("\r\n");
  if (method != "GET" || !body.empty()) {
    req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  req.append("\r\n").append(body);
  return req;
}

// One request on a fresh connection.
inline RawResponse RawCall(int port, std::string_view method, std::string_view path,
                           std::string_view body = "",
                           const std::vector<std::string>& headers = {}) {
  RawConn c(port);
  if (!c.connected() || !c.Send(RawRequest(method, path, body, headers))) return {};
  return c.Read();
}

}  // namespace sluice::testing
