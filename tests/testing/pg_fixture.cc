#include "testing/pg_fixture.h"

#include <libpq-fe.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "fmt/format.h"

namespace sluice::testing {

namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Runs a shell command; returns its stdout and sets *ok from its exit code.
std::string RunCommand(const std::string& cmd, bool* ok) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *ok = false;
    return "popen failed";
  }
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  *ok = rc == 0;
  return Trim(out);
}

std::string Script(const char* name) {
  return fmt::format("bash '{}/scripts/{}'", SLUICE_SOURCE_DIR, name);
}

// The cluster started by this process when no server was given; stopped
// at exit.
struct OwnCluster {
  std::mutex mu;
  bool tried = false;
  std::string url;
  std::string error;
  PgCluster* cluster = nullptr;
};

OwnCluster& Own() {
  static OwnCluster* own = new OwnCluster();  // never destroyed: used from atexit
  return *own;
}

void StopOwnCluster() {
  OwnCluster& own = Own();
  std::lock_guard<std::mutex> lock(own.mu);
  delete own.cluster;
  own.cluster = nullptr;
}

}  // namespace

std::string PostgresUrlWithDatabase(const std::string& url, const std::string& db) {
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  const size_t query = url.find('?', start);
  const size_t slash = url.find('/', start);
  const size_t host_end = query == std::string::npos ? url.size() : query;
  const std::string tail = query == std::string::npos ? "" : url.substr(query);
  if (slash == std::string::npos || slash > host_end) {
    return url.substr(0, host_end) + "/" + db + tail;
  }
  return url.substr(0, slash) + "/" + db + tail;
}

std::string PostgresExec(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string err = PQerrorMessage(conn);
    PQfinish(conn);
    return "connect " + url + ": " + err;
  }
  PGresult* res = PQexec(conn, sql.c_str());
  std::string err;
  const ExecStatusType st = PQresultStatus(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQresultErrorMessage(res);
  PQclear(res);
  PQfinish(conn);
  return err;
}

std::string PostgresQueryValue(const std::string& url, const std::string& sql,
                               std::string* error) {
  error->clear();
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    *error = "connect " + url + ": " + PQerrorMessage(conn);
    PQfinish(conn);
    return "";
  }
  PGresult* res = PQexec(conn, sql.c_str());
  std::string out;
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    *error = PQresultErrorMessage(res);
  } else if (PQntuples(res) > 0) {
    out = PQgetvalue(res, 0, 0);
  }
  PQclear(res);
  PQfinish(conn);
  return out;
}

std::string TestPostgresServerUrl(std::string* error) {
  const char* env = std::getenv("SLUICE_TEST_PG_URL");
  if (env != nullptr && *env != '\0') return env;
  const char* file = std::getenv("SLUICE_TEST_PG_URL_FILE");
  if (file != nullptr && *file != '\0') {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string url = Trim(ss.str());
    if (url.empty()) {
      *error = fmt::format(
          "SLUICE_TEST_PG_URL_FILE={} is missing or empty: did the CTest fixture "
          "pg_cluster_start fail? (scripts/pg-test-cluster.sh)",
          file);
    }
    return url;
  }
  OwnCluster& own = Own();
  std::lock_guard<std::mutex> lock(own.mu);
  if (!own.tried) {
    own.tried = true;
    own.cluster = new PgCluster();
    own.error = own.cluster->Start();
    if (own.error.empty()) {
      own.url = own.cluster->url();
      std::atexit(StopOwnCluster);
    }
  }
  if (own.url.empty()) *error = "cannot start a PostgreSQL test cluster: " + own.error;
  return own.url;
}

std::string FreshPostgresUrl(std::string* error) {
  const std::string base = TestPostgresServerUrl(error);
  if (base.empty()) return "";
  std::random_device rd;
  const std::string db = fmt::format("sluice_test_{:08x}{:08x}", rd(), rd());
  std::string err = PostgresExec(base, "CREATE DATABASE " + db);
  if (!err.empty()) {
    *error = "CREATE DATABASE " + db + " failed: " + err;
    return "";
  }
  return PostgresUrlWithDatabase(base, db);
}

PgCluster::~PgCluster() {
  if (dir_.empty()) return;
  bool ok = false;
  RunCommand(fmt::format("{} '{}' >/dev/null 2>&1", Script("pg-stop.sh"), dir_), &ok);
}

std::string PgCluster::Start() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = fmt::format("{}/sluice-pgc.XXXXXX", tmp != nullptr ? tmp : "/tmp");
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return "mkdtemp failed";
  dir_ = buf.data();
  bool ok = false;
  std::string out =
      RunCommand(fmt::format("{} '{}' 2>&1", Script("pg-start.sh"), dir_), &ok);
  if (!ok) return "pg-start.sh failed: " + out;
  // The URL is the last line (earlier lines may be retry notes).
  const size_t nl = out.rfind('\n');
  url_ = nl == std::string::npos ? out : out.substr(nl + 1);
  running_ = true;
  return "";
}

std::string PgCluster::StopFast() {
  bool ok = false;
  std::string out =
      RunCommand(fmt::format("{} '{}' --keep 2>&1", Script("pg-stop.sh"), dir_), &ok);
  if (!ok) return "pg-stop.sh failed: " + out;
  running_ = false;
  return "";
}

std::string PgCluster::StopImmediate() {
  bool ok = false;
  std::string out =
      RunCommand(fmt::format("{} '{}' immediate 2>&1", Script("pg-crash.sh"), dir_), &ok);
  if (!ok) return "pg-crash.sh immediate failed: " + out;
  running_ = false;
  return "";
}

std::string PgCluster::KillPostmaster() {
  bool ok = false;
  std::string out =
      RunCommand(fmt::format("{} '{}' kill9 2>&1", Script("pg-crash.sh"), dir_), &ok);
  if (!ok) return "pg-crash.sh kill9 failed: " + out;
  running_ = false;
  return "";
}

std::string PgCluster::StartAgain() {
  bool ok = false;
  std::string out =
      RunCommand(fmt::format("{} '{}' 2>&1", Script("pg-start.sh"), dir_), &ok);
  if (!ok) return "pg-start.sh failed: " + out;
  running_ = true;
  return "";
}

}  // namespace sluice::testing
