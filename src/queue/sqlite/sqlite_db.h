// SQLite plumbing for SqliteStore: a connection with cached prepared
// statements, a statement cursor, a connection pool, and error mapping.
//
// SqliteConn and Stmt are thread-compatible (one thread at a time; the pool
// enforces it). SqlitePool is thread-safe.
#pragma once

#include <sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace sluice {

// Maps a SQLite result code to the store's error vocabulary: busy/locked ->
// kUnavailable, disk trouble -> kIoError, anything else -> kInternal.
Status SqliteError(int rc, sqlite3* db, std::string_view what);

// A prepared statement borrowed from a connection's cache. Resets and clears
// its bindings when destroyed so the next borrower starts clean.
class Stmt {
 public:
  Stmt(sqlite3_stmt* s, sqlite3* db) : s_(s), db_(db) {}
  ~Stmt();
  Stmt(Stmt&& o) noexcept : s_(o.s_), db_(o.db_) { o.s_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;

  // Parameters are 1-based. Text is bound without copying (SQLITE_STATIC):
  // it must outlive the statement's last Step.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& BindDouble(int i, double v);
  Stmt& BindNull(int i);

  // One step. Ok(true) = a row is available, Ok(false) = done.
  Result<bool> Step();
  // Rewinds for another execution, keeping the bindings.
  void Reset() { sqlite3_reset(s_); }
  // Steps to the end, discarding rows.
  Status Run();
  // Rows changed by the last completed Run/Step of an INSERT/UPDATE/DELETE.
  int64_t Changes() const { return sqlite3_changes64(db_); }

  // Columns are 0-based.
  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string_view Text(int c) const;
  std::string Str(int c) const { return std::string(Text(c)); }

 private:
  sqlite3_stmt* s_;
  sqlite3* db_;
};

// One database connection and its statement cache.
class SqliteConn {
 public:
  ~SqliteConn();
  // Opens `path` and applies per-connection pragmas.
  static Result<std::unique_ptr<SqliteConn>> Open(const std::string& path, bool sync,
                                                  int64_t busy_timeout_ms);

  // Borrows the cached statement for `sql`, preparing it on first use.
  // REQUIRES: `sql` has static storage (the cache is keyed by its address).
  Result<Stmt> Prepare(const char* sql);
  // Runs one or more statements without caching (DDL, BEGIN/COMMIT).
  Status Exec(const char* sql);

  // Write transactions: BEGIN IMMEDIATE takes the database write lock up
  // front so a transaction never has to upgrade a read snapshot (which WAL
  // refuses with SQLITE_BUSY_SNAPSHOT, bypassing the busy handler).
  Status BeginImmediate();
  Status BeginRead();
  Status Commit();
  void Rollback();

  // The store clock in epoch ms, read from SQLite (never the caller's clock).
  Result<int64_t> NowMs();

  sqlite3* db() const { return db_; }

 private:
  SqliteConn() = default;
  static int BusyHandler(void* self, int count);

  sqlite3* db_ = nullptr;
  int64_t busy_timeout_ms_ = 0;
  int64_t busy_started_ms_ = 0;  // steady clock, set on a wait's first retry
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

// A fixed set of connections; each is used by one thread at a time.
class SqlitePool {
 public:
  class Handle {
   public:
    Handle(SqlitePool* pool, SqliteConn* conn) : pool_(pool), conn_(conn) {}
    ~Handle() {
      if (conn_ != nullptr) pool_->Release(conn_);
    }
    Handle(Handle&& o) noexcept : pool_(o.pool_), conn_(o.conn_) { o.conn_ = nullptr; }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    Handle& operator=(Handle&&) = delete;
    SqliteConn* operator->() const { return conn_; }
    SqliteConn& operator*() const { return *conn_; }

   private:
    SqlitePool* pool_;
    SqliteConn* conn_;
  };

  explicit SqlitePool(std::vector<std::unique_ptr<SqliteConn>> conns);
  // Blocks until a connection is free.
  Handle Acquire();

 private:
  void Release(SqliteConn* c);

  // Constant after construction.
  std::vector<std::unique_ptr<SqliteConn>> all_;
  // Protected by mu_.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SqliteConn*> free_;
};

}  // namespace sluice
