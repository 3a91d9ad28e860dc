#include "queue/postgres/pg_conn.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "fmt/format.h"

namespace sluice {

namespace {

std::string_view SqlState(const PGresult* r) {
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s ? std::string_view(s) : std::string_view();
}

std::string TrimMessage(const char* m) {
  std::string s = m ? m : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

bool IsConnectionSqlState(std::string_view s) {
  // 08xxx connection exception; 57P01 admin_shutdown, 57P02 crash_shutdown,
  // 57P03 cannot_connect_now (starting up / shutting down).
  return s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03";
}

bool IsRetryableSqlState(std::string_view s) { return s == "40001" || s == "40P01"; }

int64_t PgResult::Int(int row, int col) const {
  std::string_view t = Text(row, col);
  if (t.empty()) return 0;
  if (t == "t") return 1;
  if (t == "f") return 0;
  int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}

int64_t PgResult::Affected() const {
  const char* n = r_ ? PQcmdTuples(r_.get()) : nullptr;
  if (n == nullptr || *n == '\0') return 0;
  int64_t v = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), v);
  return v;
}

void AppendArrayElement(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

PgParams& PgParams::Add(int64_t v) {
  values_.push_back(std::to_string(v));
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::Add(std::string_view v) {
  values_.emplace_back(v);
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::AddNull() {
  values_.emplace_back();
  null_.push_back(true);
  return *this;
}

PgParams& PgParams::AddArray(std::span<const int64_t> v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s.push_back(',');
    s += std::to_string(v[i]);
  }
  s.push_back('}');
  values_.push_back(std::move(s));
  null_.push_back(false);
  return *this;
}

template <typename T>
static std::string TextArray(std::span<const T> v) {
  size_t bytes = 2;
  for (const auto& e : v) bytes += e.size() + 3;
  std::string s;
  s.reserve(bytes + bytes / 16);
  s.push_back('{');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s.push_back(',');
    AppendArrayElement(v[i], &s);
  }
  s.push_back('}');
  return s;
}

PgParams& PgParams::AddArray(std::span<const std::string> v) {
  values_.push_back(TextArray(v));
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::AddArray(std::span<const std::string_view> v) {
  values_.push_back(TextArray(v));
  null_.push_back(false);
  return *this;
}

std::vector<const char*> PgParams::Pointers() const {
  std::vector<const char*> p(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) p[i] = null_[i] ? nullptr : values_[i].c_str();
  return p;
}

Result<std::unique_ptr<PgConn>> PgConn::Connect(const std::string& url,
                                                const PgSessionOptions& session) {
  const std::string connect_timeout =
      std::to_string(std::max<int64_t>(2, (session.connect_timeout_ms + 999) / 1000));
  const std::string user_timeout = std::to_string(session.statement_timeout_ms + 5000);
  // The URL comes first with expand_dbname: later keywords fill in only what
  // it does not say. Keepalives and tcp_user_timeout bound how long a call
  // can hang on a server that vanished without closing the socket.
  const char* keys[] = {"dbname",           "connect_timeout", "application_name",
                        "keepalives",       "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", nullptr};
  const char* vals[] = {url.c_str(), connect_timeout.c_str(), session.application_name.c_str(),
                        "1",         "5",                     "2",
                        "3",         user_timeout.c_str(),    nullptr};
  PGconn* raw = PQconnectdbParams(keys, vals, /*expand_dbname=*/1);
  if (raw == nullptr) return Status::Unavailable("postgres: out of memory connecting");
  std::unique_ptr<PgConn> conn(new PgConn(raw));
  // libpq prints server notices (e.g. the FATAL a shutdown sends to idle
  // connections) to stderr by default; errors reach us as results instead.
  PQsetNoticeProcessor(raw, [](void*, const char*) {}, nullptr);
  if (PQstatus(raw) != CONNECTION_OK) {
    return Status::Unavailable("postgres: connect: " + TrimMessage(PQerrorMessage(raw)));
  }
  const std::string setup = fmt::format(
      "SET statement_timeout = {0}; SET lock_timeout = {0}; "
      "SET idle_in_transaction_session_timeout = {1}; SET synchronous_commit = {2}; "
      "SET client_min_messages = warning; SET TIME ZONE 'UTC'",
      session.statement_timeout_ms, std::max<int64_t>(60000, 6 * session.statement_timeout_ms),
      session.sync ? "on" : "off");
  auto r = conn->ExecOnce(setup);
  if (!r.ok()) return r.status();
  return conn;
}

Result<PgResult> PgConn::Check(PGresult* raw, std::string_view what) {
  PgResult r(raw);
  const ExecStatusType st = raw ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    last_sqlstate_.clear();
    return r;
  }
  const std::string_view state = SqlState(raw);
  last_sqlstate_ = std::string(state);
  std::string msg = TrimMessage(raw ? PQresultErrorMessage(raw) : PQerrorMessage(conn_.get()));
  if (msg.empty()) msg = TrimMessage(PQerrorMessage(conn_.get()));
  std::string text = fmt::format("postgres: {}: {}{}{}", what, msg, state.empty() ? "" : " ",
                                 state.empty() ? "" : fmt::format("[{}]", state));
  if (PQstatus(conn_.get()) != CONNECTION_OK || IsConnectionSqlState(state) || state.empty()) {
    // No SQLSTATE means libpq itself failed (socket closed, timeout).
    broken_ = true;
    return Status::Unavailable(std::move(text));
  }
  if (IsRetryableSqlState(state) || state == "57014" /* statement timeout */ ||
      state == "55P03" /* lock timeout */ || state == "53300" /* too many connections */) {
    return Status::Unavailable(std::move(text));
  }
  if (state.starts_with("53") || state.starts_with("58")) return Status::IoError(std::move(text));
  if (state.starts_with("22")) return Status::InvalidArgument(std::move(text));
  return Status::Internal(std::move(text));
}

Result<const std::string*> PgConn::Prepared(const char* sql) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = fmt::format("s{}", prepared_.size());
    auto prep = Check(PQprepare(conn_.get(), name.c_str(), sql, 0, nullptr), "prepare");
    if (!prep.ok()) return prep.status();
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  return &it->second;
}

Result<PgResult> PgConn::Exec(const char* sql, const PgParams& params) {
  SLUICE_ASSIGN_OR_RETURN(const std::string* name, Prepared(sql));
  const auto ptrs = params.Pointers();
  return Check(PQexecPrepared(conn_.get(), name->c_str(), params.size(), ptrs.data(), nullptr,
                              nullptr, 0),
               "exec");
}

Result<std::vector<PgResult>> PgConn::ExecPipeline(std::span<const PgStatement> statements) {
  // Prepare outside the pipeline (once per connection): inside it, the
  // answers of Parse would interleave with the results.
  std::vector<const std::string*> names;
  names.reserve(statements.size());
  for (const PgStatement& s : statements) {
    SLUICE_ASSIGN_OR_RETURN(const std::string* name, Prepared(s.sql));
    names.push_back(name);
  }
  PGconn* raw = conn_.get();
  auto lost = [&](std::string_view what) -> Status {
    broken_ = true;
    last_sqlstate_.clear();
    return Status::Unavailable(
        fmt::format("postgres: pipeline {}: {}", what, TrimMessage(PQerrorMessage(raw))));
  };
  if (PQenterPipelineMode(raw) != 1) return lost("enter");
  static const PgParams kNoParams;
  for (size_t i = 0; i < statements.size(); ++i) {
    const PgParams& p = statements[i].params ? *statements[i].params : kNoParams;
    const auto ptrs = p.Pointers();
    if (PQsendQueryPrepared(raw, names[i]->c_str(), p.size(), ptrs.data(), nullptr, nullptr,
                            0) != 1) {
      return lost("send");
    }
  }
  if (PQpipelineSync(raw) != 1) return lost("sync");
  std::vector<PgResult> out;
  out.reserve(statements.size());
  Status first_error;
  for (size_t i = 0; i < statements.size(); ++i) {
    PGresult* r = PQgetResult(raw);
    if (r == nullptr) return lost("result");
    if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
      PQclear(r);  // skipped after an earlier error
    } else if (first_error.ok()) {
      auto checked = Check(r, "exec");
      if (checked.ok()) {
        out.push_back(std::move(checked).value());
      } else {
        first_error = checked.status();
      }
    } else {
      PQclear(r);
    }
    if (broken_) return first_error;
    // Each statement's results end with a NULL.
    while ((r = PQgetResult(raw)) != nullptr) PQclear(r);
  }
  PGresult* sync = PQgetResult(raw);
  const bool synced = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(raw) != 1) {
    Status st = lost("end");
    return first_error.ok() ? st : first_error;
  }
  if (!first_error.ok()) return first_error;
  return out;
}

Result<PgResult> PgConn::ExecOnce(const std::string& sql, const PgParams& params) {
  if (params.size() == 0) return Check(PQexec(conn_.get(), sql.c_str()), "exec");
  const auto ptrs = params.Pointers();
  return Check(PQexecParams(conn_.get(), sql.c_str(), params.size(), nullptr, ptrs.data(),
                            nullptr, nullptr, 0),
               "exec");
}

Status PgConn::Begin() {
  static constexpr const char* kBegin = "BEGIN";
  return Exec(kBegin).status();
}

Status PgConn::Commit() {
  static constexpr const char* kCommit = "COMMIT";
  auto r = Exec(kCommit);
  if (!r.ok()) return r.status();
  // A COMMIT of a transaction that had failed reports ROLLBACK, not an error.
  if (r->CommandTag() == "ROLLBACK") return Status::Internal("postgres: transaction rolled back");
  return Status::Ok();
}

void PgConn::Rollback() {
  if (broken_) return;
  if (PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) return;
  static constexpr const char* kRollback = "ROLLBACK";
  auto r = Exec(kRollback);
  if (!r.ok()) broken_ = true;
}

bool PgConn::AliveIdle() {
  if (broken_ || PQstatus(conn_.get()) != CONNECTION_OK) return false;
  if (PQconsumeInput(conn_.get()) == 0) return false;
  // A shutdown sends an error message and closes; libpq notices the close
  // on the next read, which PQconsumeInput just did.
  if (PQstatus(conn_.get()) != CONNECTION_OK) return false;
  return PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
}

PgPool::PgPool(std::string url, PgSessionOptions session, int size, int64_t acquire_timeout_ms,
               Clock* clock)
    : url_(std::move(url)),
      session_(std::move(session)),
      size_(std::max(1, size)),
      acquire_timeout_ms_(acquire_timeout_ms),
      clock_(clock) {}

Result<PgPool::Handle> PgPool::Acquire() {
  const int64_t deadline = clock_->MonoMs() + acquire_timeout_ms_;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    while (!idle_.empty()) {
      std::unique_ptr<PgConn> c = std::move(idle_.back());
      idle_.pop_back();
      if (c->AliveIdle()) {
        ++in_use_;
        Handle h(this, std::move(c));
        h.set_reused(true);
        return h;
      }
      // Dropped: the server closed it (restart) or it broke earlier.
    }
    if (in_use_ + connecting_ < size_) break;
    if (!clock_->WaitUntil(lock, cv_, deadline,
                           [&] { return !idle_.empty() || in_use_ + connecting_ < size_; })) {
      return Status::Unavailable(
          fmt::format("postgres: all {} pool connections busy for {} ms", size_,
                      acquire_timeout_ms_));
    }
  }
  const int64_t now = clock_->MonoMs();
  if (now < retry_at_ms_) {
    return Status::Unavailable(fmt::format("postgres unreachable (retry in {} ms): {}",
                                           retry_at_ms_ - now, last_error_));
  }
  ++connecting_;
  lock.unlock();
  auto c = PgConn::Connect(url_, session_);
  lock.lock();
  --connecting_;
  if (!c.ok()) {
    backoff_ms_ = backoff_ms_ == 0 ? 100 : std::min<int64_t>(2000, backoff_ms_ * 2);
    retry_at_ms_ = clock_->MonoMs() + backoff_ms_;
    last_error_ = c.status().message();
    cv_.notify_one();
    return c.status();
  }
  backoff_ms_ = 0;
  retry_at_ms_ = 0;
  ++in_use_;
  return Handle(this, std::move(c).value());
}

void PgPool::Release(std::unique_ptr<PgConn> c) {
  const bool keep = !c->broken() && PQtransactionStatus(c->raw()) == PQTRANS_IDLE;
  if (!keep) c.reset();  // closes the socket outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  --in_use_;
  if (keep) idle_.push_back(std::move(c));
  cv_.notify_one();
}

int PgPool::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_ + static_cast<int>(idle_.size());
}

}  // namespace sluice
