#include "queue/sqlite/sqlite_db.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "fmt/format.h"

namespace sluice {

Status SqliteError(int rc, sqlite3* db, std::string_view what) {
  std::string msg = fmt::format("sqlite {}: {} ({})", what,
                                db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(std::move(msg));
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::IoError(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

// ---- Stmt ----

Stmt::~Stmt() {
  if (s_ != nullptr) {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
}

Stmt& Stmt::Bind(int i, int64_t v) {
  Check(sqlite3_bind_int64(s_, i, v));
  return *this;
}

Stmt& Stmt::Bind(int i, std::string_view v) {
  Check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
  return *this;
}

Stmt& Stmt::BindDouble(int i, double v) {
  Check(sqlite3_bind_double(s_, i, v));
  return *this;
}

Stmt& Stmt::BindNull(int i) {
  Check(sqlite3_bind_null(s_, i));
  return *this;
}

Result<bool> Stmt::Step() {
  if (bind_rc_ != SQLITE_OK) return SqliteError(bind_rc_, db_, "bind");
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(rc, db_, "step");
}

Status Stmt::Run() {
  if (bind_rc_ != SQLITE_OK) return SqliteError(bind_rc_, db_, "bind");
  while (true) {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return SqliteError(rc, db_, "step");
  }
}

std::string_view Stmt::Text(int c) const {
  const unsigned char* p = sqlite3_column_text(s_, c);
  if (p == nullptr) return {};
  return {reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, c))};
}

// ---- SqliteConn ----

SqliteConn::~SqliteConn() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  for (auto& [sql, stmt] : generated_) sqlite3_finalize(stmt);
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Result<std::unique_ptr<SqliteConn>> SqliteConn::Open(const std::string& path, bool sync,
                                                     int64_t busy_timeout_ms, Clock* clock) {
  // Memory statistics take a global mutex around every SQLite allocation;
  // nothing here reads them. Only possible before SQLite initializes (the
  // first open); later it is refused, harmlessly.
  static std::once_flag no_memstatus;
  std::call_once(no_memstatus, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  std::unique_ptr<SqliteConn> c(new SqliteConn());
  c->clock_ = clock;
  c->busy_timeout_ms_ = busy_timeout_ms;
  // NOMUTEX: the pool hands a connection to one thread at a time.
  int rc =
      sqlite3_open_v2(path.c_str(), &c->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return SqliteError(rc, c->db_, "open " + path);
  sqlite3_extended_result_codes(c->db_, 1);
  sqlite3_busy_handler(c->db_, &SqliteConn::BusyHandler, c.get());
  // journal_mode=WAL changes the file and needs a moment of exclusive access:
  // when several processes open a fresh file together, retry within the timeout.
  const int64_t deadline = clock->MonoMs() + busy_timeout_ms;
  while (true) {
    Status st = c->Exec("PRAGMA journal_mode=WAL");
    if (st.ok()) break;
    if (st.code() != Code::kUnavailable || clock->MonoMs() > deadline) return st;
    clock->SleepMs(5);
  }
  SLUICE_RETURN_IF_ERROR(c->Exec(sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  c->sync_ = sync;
  c->durable_ = sync;
  // A 32 MiB page cache per connection and reads through a memory map (no
  // copy per page read from the OS cache): the queue head, the dedup index
  // and the aggregate tables stay hot.
  SLUICE_RETURN_IF_ERROR(
      c->Exec("PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
              "PRAGMA cache_size=-32768; PRAGMA mmap_size=0;"
              "PRAGMA journal_size_limit=67108864"));
  return c;
}

int SqliteConn::BusyHandler(void* self, int count) {
  auto* c = static_cast<SqliteConn*>(self);
  const int64_t now = c->clock_->MonoMs();
  if (count == 0) c->busy_started_ms_ = now;
  if (now - c->busy_started_ms_ >= c->busy_timeout_ms_) return 0;  // give up: SQLITE_BUSY
  // Short, growing, jittered sleeps: the lock is usually held for well under a
  // millisecond by another process, and lockstep retries would collide again.
  // They are below the Clock's millisecond resolution, so they are real
  // sleeps; the deadline above is on the injected clock.
  thread_local std::minstd_rand rng(std::random_device{}());
  const int64_t cap_us = std::min<int64_t>(200LL << std::min(count, 6), 10'000);
  std::this_thread::sleep_for(std::chrono::microseconds(100 + rng() % cap_us));
  return 1;
}

Result<Stmt> SqliteConn::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return Stmt(it->second, db_);
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteError(rc, db_, std::string("prepare: ") + sql);
  cache_.emplace(sql, s);
  return Stmt(s, db_);
}

Result<Stmt> SqliteConn::PrepareGenerated(const std::string& sql) {
  auto it = generated_.find(sql);
  if (it != generated_.end()) return Stmt(it->second, db_);
  if (generated_.size() >= kMaxGeneratedStatements) {
    for (auto& [text, stmt] : generated_) sqlite3_finalize(stmt);
    generated_.clear();
  }
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteError(rc, db_, "prepare: " + sql);
  generated_.emplace(sql, s);
  return Stmt(s, db_);
}

Status SqliteConn::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (err != nullptr) sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteError(rc, db_, sql);
  return Status::Ok();
}

Status SqliteConn::BeginImmediate() { return Exec("BEGIN IMMEDIATE"); }
Status SqliteConn::BeginRead() { return Exec("BEGIN DEFERRED"); }
Status SqliteConn::Commit() { return Exec("COMMIT"); }

void SqliteConn::Rollback() {
  if (sqlite3_get_autocommit(db_) == 0) (void)Exec("ROLLBACK");
}

Result<int64_t> SqliteConn::NowMs() {
  // julianday('now') carries SQLite's millisecond clock; ROUND undoes the
  // floating-point division so the result is the exact millisecond.
  static constexpr char kSql[] =
      "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";
  SLUICE_ASSIGN_OR_RETURN(Stmt s, Prepare(kSql));
  SLUICE_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return Status::Internal("sqlite: no clock row");
  return s.Int(0);
}

Status SqliteConn::SetDurable(bool durable) {
  if (!sync_ || durable == durable_) return Status::Ok();
  SLUICE_RETURN_IF_ERROR(Exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  durable_ = durable;
  return Status::Ok();
}

// ---- SqlitePool ----

SqlitePool::SqlitePool(std::vector<std::unique_ptr<SqliteConn>> conns) : all_(std::move(conns)) {
  for (auto& c : all_) free_.push_back(c.get());
}

SqlitePool::Handle SqlitePool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !free_.empty(); });
  SqliteConn* c = free_.back();
  free_.pop_back();
  return Handle(this, c);
}

void SqlitePool::Release(SqliteConn* c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(c);
  }
  cv_.notify_one();
}

// ---- SqliteCheckpointer ----

Result<std::unique_ptr<SqliteCheckpointer>> SqliteCheckpointer::Start(const std::string& path,
                                                                      bool sync, int wal_pages,
                                                                      Clock* clock) {
  SLUICE_ASSIGN_OR_RETURN(auto conn, SqliteConn::Open(path, sync, /*busy_timeout_ms=*/1000, clock));
  return std::unique_ptr<SqliteCheckpointer>(
      new SqliteCheckpointer(std::move(conn), std::max(wal_pages, 1), clock));
}

SqliteCheckpointer::SqliteCheckpointer(std::unique_ptr<SqliteConn> conn, int wal_pages,
                                       Clock* clock)
    : conn_(std::move(conn)), wal_pages_(wal_pages), clock_(clock) {
  sqlite3_wal_autocheckpoint(conn_->db(), 0);
  thread_ = std::thread([this] { Main(); });
}

SqliteCheckpointer::~SqliteCheckpointer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SqliteCheckpointer::Watch(SqliteConn& conn) {
  sqlite3_wal_hook(conn.db(), &SqliteCheckpointer::OnCommit, this);
}

int64_t SqliteCheckpointer::checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpoints_;
}

int SqliteCheckpointer::OnCommit(void* self, sqlite3*, const char*, int wal_pages) {
  auto* c = static_cast<SqliteCheckpointer*>(self);
  if (wal_pages < c->wal_pages_) return SQLITE_OK;
  {
    std::lock_guard<std::mutex> lock(c->mu_);
    if (c->wanted_) return SQLITE_OK;
    c->wanted_ = true;
  }
  c->cv_.notify_one();
  return SQLITE_OK;
}

void SqliteCheckpointer::Main() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Also every second when idle, so a quiet database's WAL does not linger.
    clock_->WaitFor(lock, cv_, 1000, [this] { return wanted_ || stop_; });
    if (stop_) return;
    wanted_ = false;
    lock.unlock();
    // PASSIVE copies what no reader still needs and never waits for a lock;
    // a busy answer (another process checkpointing) is fine. The next commit
    // over the threshold asks again.
    int log = 0;
    int done = 0;
    (void)sqlite3_wal_checkpoint_v2(conn_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    lock.lock();
    ++checkpoints_;
  }
}

}  // namespace sluice
