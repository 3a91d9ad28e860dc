// libpq plumbing for PostgresStore: owned results, parameter lists, one
// connection with a prepared-statement cache, a bounded pool that reconnects
// with backoff, and the mapping of SQLSTATEs to the store's error vocabulary.
//
// PgResult, PgParams and PgConn are thread-compatible (one thread at a time;
// the pool enforces it for connections). PgPool is thread-safe.
#pragma once

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace sluice {

// Session settings applied to every new connection.
struct PgSessionOptions {
  bool sync = true;                   // synchronous_commit on/off
  int64_t statement_timeout_ms = 10000;  // also bounds lock waits; > 0
  int64_t connect_timeout_ms = 10000;    // rounded up to whole seconds, >= 2 s
  std::string application_name = "sluice";
};

// SQLSTATE classes that mean "the server went away or is restarting": the
// connection is unusable and the call may succeed on a new one.
bool IsConnectionSqlState(std::string_view sqlstate);
// Deadlock / serialization failure: the transaction may simply be re-run.
bool IsRetryableSqlState(std::string_view sqlstate);

// Owns one PGresult. Columns and rows are 0-based; values are text format.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r) {}
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view Text(int row, int col) const {
    return {PQgetvalue(r_.get(), row, col),
            static_cast<size_t>(PQgetlength(r_.get(), row, col))};
  }
  std::string Str(int row, int col) const { return std::string(Text(row, col)); }
  // NULL -> 0. Values are integers printed by the server (bigint/int/bool as 0/1).
  int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const { return Text(row, col) == "t"; }
  // Rows affected by an INSERT/UPDATE/DELETE without RETURNING.
  int64_t Affected() const;
  std::string_view CommandTag() const { return r_ ? PQcmdStatus(r_.get()) : ""; }

 private:
  struct Clear {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  std::unique_ptr<PGresult, Clear> r_;
};

// Text-format parameters for one statement. Arrays are sent as PostgreSQL
// array literals ("{...}" with every element quoted), so any text is safe.
class PgParams {
 public:
  PgParams& Add(int64_t v);
  PgParams& Add(std::string_view v);
  PgParams& Add(const std::string& v) { return Add(std::string_view(v)); }
  PgParams& Add(const char* v) { return Add(std::string_view(v)); }
  PgParams& AddNull();
  PgParams& AddArray(std::span<const int64_t> v);
  PgParams& AddArray(std::span<const std::string> v);
  PgParams& AddArray(std::span<const std::string_view> v);

  int size() const { return static_cast<int>(values_.size()); }
  // Pointers into this object; valid until the next Add.
  std::vector<const char*> Pointers() const;

 private:
  std::vector<std::string> values_;
  std::vector<bool> null_;
};

// Appends `s` as a quoted element of a PostgreSQL array literal.
void AppendArrayElement(std::string_view s, std::string* out);

// One statement of a pipeline: `sql` has static storage (see PgConn::Exec).
struct PgStatement {
  const char* sql = nullptr;
  const PgParams* params = nullptr;  // nullptr: no parameters
};

// One connection with its session settings and prepared statements.
class PgConn {
 public:
  // Connects and applies `session`. kUnavailable when the server cannot be reached.
  static Result<std::unique_ptr<PgConn>> Connect(const std::string& url,
                                                 const PgSessionOptions& session);

  // Runs `sql` (one statement, $1.. placeholders) as a prepared statement,
  // preparing it on first use on this connection.
  // REQUIRES: `sql` has static storage (the cache is keyed by its address).
  Result<PgResult> Exec(const char* sql, const PgParams& params = PgParams());
  // Sends every statement (prepared as by Exec) in one round trip (libpq
  // pipeline mode) and returns their results in order. The first failure is
  // returned as Exec would return it; the statements after it are not run
  // (the server skips them). Results must stay small: the server's answers
  // are read only after everything was sent.
  // REQUIRES: every `sql` has static storage; no transaction control other
  // than BEGIN/COMMIT/SET LOCAL.
  Result<std::vector<PgResult>> ExecPipeline(std::span<const PgStatement> statements);
  // Runs `sql` once without preparing (DDL, BEGIN/COMMIT, several statements).
  Result<PgResult> ExecOnce(const std::string& sql, const PgParams& params = PgParams());

  Status Begin();
  Status Commit();
  void Rollback();  // best effort; a failure marks the connection broken

  // True once the connection failed in a way that makes it unusable; the pool
  // drops it instead of reusing it.
  bool broken() const { return broken_; }
  // SQLSTATE of the last failed command; "" after a success.
  const std::string& last_sqlstate() const { return last_sqlstate_; }
  // Cheap liveness check of an idle connection: reads whatever the server
  // sent (e.g. the FATAL of a shutdown) without blocking.
  bool AliveIdle();
  PGconn* raw() const { return conn_.get(); }

 private:
  struct Finish {
    void operator()(PGconn* c) const { PQfinish(c); }
  };
  explicit PgConn(PGconn* c) : conn_(c) {}
  // Turns a finished command into a Result, classifying failures.
  Result<PgResult> Check(PGresult* r, std::string_view what);
  // The statement name of `sql`, preparing it on first use.
  Result<const std::string*> Prepared(const char* sql);

  std::unique_ptr<PGconn, Finish> conn_;
  std::unordered_map<const char*, std::string> prepared_;  // sql -> statement name
  bool broken_ = false;
  std::string last_sqlstate_;
};

// Up to `size` connections, created on demand. A failed connect starts a
// backoff (100 ms doubling to 2 s) during which Acquire fails at once with
// kUnavailable instead of hammering a server that is down.
class PgPool {
 public:
  class Handle {
   public:
    Handle(PgPool* pool, std::unique_ptr<PgConn> conn) : pool_(pool), conn_(std::move(conn)) {}
    ~Handle() {
      if (conn_ != nullptr) pool_->Release(std::move(conn_));
    }
    Handle(Handle&& o) noexcept = default;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Handle& operator=(Handle&&) = delete;
    PgConn* operator->() const { return conn_.get(); }
    PgConn& operator*() const { return *conn_; }
    // True when this connection was idle in the pool before (it may be stale).
    bool reused() const { return reused_; }
    void set_reused(bool r) { reused_ = r; }

   private:
    PgPool* pool_;
    std::unique_ptr<PgConn> conn_;
    bool reused_ = false;
  };

  // REQUIRES: size >= 1; clock outlives the pool (acquire waits and the
  // reconnect backoff run on it).
  PgPool(std::string url, PgSessionOptions session, int size, int64_t acquire_timeout_ms,
         Clock* clock);

  // A connection for one thread; waits up to acquire_timeout_ms for a free
  // slot. kUnavailable when none frees up or the server cannot be reached.
  Result<Handle> Acquire();
  // Number of open connections (idle + in use), for metrics and tests.
  int open() const;

 private:
  void Release(std::unique_ptr<PgConn> c);

  // Constant after construction.
  const std::string url_;
  const PgSessionOptions session_;
  const int size_;
  const int64_t acquire_timeout_ms_;
  Clock* const clock_;

  // Protected by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PgConn>> idle_;
  int in_use_ = 0;
  int connecting_ = 0;
  int64_t retry_at_ms_ = 0;   // clock_->MonoMs(); no connect attempt before this
  int64_t backoff_ms_ = 0;    // 0 after a successful connect
  std::string last_error_;
};

}  // namespace sluice
