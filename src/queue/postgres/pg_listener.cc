#include "queue/postgres/pg_listener.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>

namespace sluice {

PgListener::PgListener(std::string url, PgSessionOptions session, std::string channel)
    : url_(std::move(url)), session_(std::move(session)), channel_(std::move(channel)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

PgListener::~PgListener() {
  stop_.store(true);
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void PgListener::SetCallback(std::function<void()> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  cb_ = std::move(cb);
  if (!thread_.joinable() && cb_ && wake_fd_ >= 0) thread_ = std::thread([this] { Run(); });
}

void PgListener::Fire() {
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cb = cb_;
  }
  if (cb) cb();
}

void PgListener::Run() {
  std::unique_ptr<PgConn> conn;
  int64_t backoff_ms = 0;
  // Waits for `ms` or until shutdown; false when shutting down.
  auto sleep_ms = [&](int64_t ms) {
    pollfd p{wake_fd_, POLLIN, 0};
    (void)poll(&p, 1, static_cast<int>(ms));
    return !stop_.load();
  };
  while (!stop_.load()) {
    if (conn == nullptr) {
      auto c = PgConn::Connect(url_, session_);
      if (c.ok()) {
        // The channel name is a fixed identifier of this build, not input.
        auto r = (*c)->ExecOnce("LISTEN " + channel_);
        if (r.ok()) conn = std::move(c).value();
      }
      if (conn == nullptr) {
        backoff_ms = backoff_ms == 0 ? 100 : std::min<int64_t>(2000, backoff_ms * 2);
        if (!sleep_ms(backoff_ms)) break;
        continue;
      }
      backoff_ms = 0;
      listening_.store(true);
      Fire();  // anything enqueued while we were not listening
    }
    pollfd fds[2] = {{PQsocket(conn->raw()), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    // The timeout only bounds how long a silently dead socket goes
    // unnoticed; keepalives do the rest.
    const int n = poll(fds, 2, 5000);
    if (stop_.load()) break;
    if (n < 0) continue;
    if (PQconsumeInput(conn->raw()) == 0 || PQstatus(conn->raw()) != CONNECTION_OK) {
      conn.reset();
      listening_.store(false);
      continue;
    }
    bool got = false;
    while (PGnotify* note = PQnotifies(conn->raw())) {
      PQfreemem(note);
      got = true;
    }
    if (got) {
      notifications_.fetch_add(1);
      Fire();
    }
  }
  listening_.store(false);
}

}  // namespace sluice
