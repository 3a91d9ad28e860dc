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
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
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
  Stmt(Stmt&& o) noexcept : s_(o.s_), db_(o.db_), bind_rc_(o.bind_rc_) { o.s_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;

  // Parameters are 1-based. Text is bound without copying (SQLITE_STATIC):
  // it must outlive the statement's last Step. A bind SQLite refuses (e.g. on
  // a statement stepped but not Reset) makes the next Step/Run fail rather
  // than run with the old value.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& BindDouble(int i, double v);
  Stmt& BindNull(int i);

  // One step. Ok(true) = a row is available, Ok(false) = done.
  Result<bool> Step();
  // Rewinds for another execution, keeping the bindings.
  void Reset() {
    sqlite3_reset(s_);
    bind_rc_ = SQLITE_OK;
  }
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
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* s_;
  sqlite3* db_;
  int bind_rc_ = SQLITE_OK;  // first refused bind since the last Reset
};

// One database connection and its statement cache.
class SqliteConn {
 public:
  ~SqliteConn();
  // Opens `path` and applies per-connection pragmas. Lock waits (the busy
  // handler, the WAL switch at open) give up after busy_timeout_ms on `clock`.
  // REQUIRES: clock outlives the connection.
  static Result<std::unique_ptr<SqliteConn>> Open(const std::string& path, bool sync,
                                                  int64_t busy_timeout_ms, Clock* clock);

  // Borrows the cached statement for `sql`, preparing it on first use.
  // REQUIRES: `sql` has static storage (the cache is keyed by its address).
  Result<Stmt> Prepare(const char* sql);
  // Borrows a statement generated at run time (e.g. naming the dedup bucket
  // tables), cached by its text. The cache keeps the last
  // kMaxGeneratedStatements texts; a new text beyond that finalizes the
  // others, so statements naming dropped tables do not accumulate.
  Result<Stmt> PrepareGenerated(const std::string& sql);
  static constexpr size_t kMaxGeneratedStatements = 4;
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

  // With sync on, whether the next commits wait for fsync of the WAL
  // (synchronous=FULL) or not (NORMAL: the WAL is synced at checkpoints, and
  // by the next FULL commit, which syncs every frame before it). Outside a
  // transaction only. No-op when the connection was opened with sync off.
  Status SetDurable(bool durable);

  sqlite3* db() const { return db_; }

 private:
  SqliteConn() = default;
  static int BusyHandler(void* self, int count);

  sqlite3* db_ = nullptr;
  Clock* clock_ = nullptr;
  int64_t busy_timeout_ms_ = 0;
  int64_t busy_started_ms_ = 0;   // clock_->MonoMs(), set on a wait's first retry
  bool sync_ = false;             // opened with sync on
  bool durable_ = false;          // current synchronous level is FULL
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
  std::unordered_map<std::string, sqlite3_stmt*> generated_;
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

namespace sluice {

// Checkpoints the WAL from a thread of its own, so that no commit pays for
// copying pages back into the database file and fsyncing it (SQLite's
// automatic checkpoint runs inside whichever COMMIT crosses the threshold).
// Connections registered with Watch() notify it when the WAL passes
// `wal_pages`; it then runs a PASSIVE checkpoint on its own connection, which
// never blocks writers or readers. Thread-safe.
class SqliteCheckpointer {
 public:
  // Takes a connection of its own to `path`. Starts the thread. REQUIRES:
  // clock outlives the checkpointer.
  static Result<std::unique_ptr<SqliteCheckpointer>> Start(const std::string& path, bool sync,
                                                           int wal_pages, Clock* clock);
  ~SqliteCheckpointer();  // stops the thread
  SqliteCheckpointer(const SqliteCheckpointer&) = delete;
  SqliteCheckpointer& operator=(const SqliteCheckpointer&) = delete;

  // Replaces `conn`'s automatic checkpoint with a notification to this
  // checkpointer. REQUIRES: this outlives conn.
  void Watch(SqliteConn& conn);

  int64_t checkpoints() const;

 private:
  SqliteCheckpointer(std::unique_ptr<SqliteConn> conn, int wal_pages, Clock* clock);
  static int OnCommit(void* self, sqlite3* db, const char* schema, int wal_pages);
  void Main();

  const std::unique_ptr<SqliteConn> conn_;
  const int wal_pages_;
  Clock* const clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;  // guarded by mu_
  bool stop_ = false;    // guarded by mu_
  int64_t checkpoints_ = 0;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice
