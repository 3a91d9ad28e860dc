// PgListener: one dedicated connection that LISTENs on a channel and calls a
// callback on every NOTIFY, reconnecting with backoff (and calling the
// callback once after each reconnect: notifications sent while it was away
// are lost, so the watcher should look for work).
//
// Thread-safe: owns one thread; SetCallback may be called at any time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "queue/postgres/pg_conn.h"

namespace sluice {

class PgListener {
 public:
  PgListener(std::string url, PgSessionOptions session, std::string channel);
  ~PgListener();  // stops and joins the thread
  PgListener(const PgListener&) = delete;
  PgListener& operator=(const PgListener&) = delete;

  // Starts the thread on first call; an empty cb silences it.
  void SetCallback(std::function<void()> cb);
  // Number of notifications received (for tests and metrics).
  int64_t notifications() const { return notifications_.load(); }
  // True while the LISTEN connection is up.
  bool listening() const { return listening_.load(); }

 private:
  void Run();
  void Fire();

  // Constant after construction.
  const std::string url_;
  const PgSessionOptions session_;
  const std::string channel_;
  int wake_fd_ = -1;  // eventfd: wakes the thread's poll() for shutdown

  std::atomic<bool> stop_{false};
  std::atomic<int64_t> notifications_{0};
  std::atomic<bool> listening_{false};

  // Protected by mu_.
  std::mutex mu_;
  std::function<void()> cb_;
  std::thread thread_;
};

}  // namespace sluice
