// PostgreSQL test fixtures: the test server, a fresh database per test, and a
// private cluster a test may stop and restart.
//
// The shared server of a test run comes from, in order: env SLUICE_TEST_PG_URL
// (a postgres:// URL whose user may CREATE DATABASE); the file named by env
// SLUICE_TEST_PG_URL_FILE (written by the CTest fixture, scripts/
// pg-test-cluster.sh); else a cluster this process starts on first use with
// scripts/pg-start.sh and stops at exit (running a test binary by hand).
// Thread-safe.
#pragma once

#include <string>

namespace sluice::testing {

// The URL of the shared test server (see above). "" and *error when none.
std::string TestPostgresServerUrl(std::string* error);

// Creates database sluice_test_<random> on the shared test server and returns
// that URL with the new database name. Returns "" and sets *error when there
// is no server or it refuses.
std::string FreshPostgresUrl(std::string* error);

// Runs one SQL script on `url` (libpq, simple query protocol). "" on success,
// else the error message.
std::string PostgresExec(const std::string& url, const std::string& sql);

// Runs one query on `url` and returns the first column of the first row as
// text ("" when no row); *error is set on failure.
std::string PostgresQueryValue(const std::string& url, const std::string& sql,
                               std::string* error);

// Replaces the database name (the path) of a postgres:// URL.
std::string PostgresUrlWithDatabase(const std::string& url, const std::string& db);

// A private throwaway cluster (scripts/pg-start.sh / pg-stop.sh) for tests
// that stop or restart the server; other tests never see it. Destroying it
// stops the server and removes its data. Thread-compatible.
class PgCluster {
 public:
  PgCluster() = default;
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // initdb + start on a free port. "" on success, else the error.
  std::string Start();
  // Fast shutdown (pg_ctl stop -m fast: clients are disconnected, in-flight
  // transactions roll back); data kept. "" on success.
  std::string StopFast();
  // Crashes (scripts/pg-crash.sh): `pg_ctl stop -m immediate` (every server
  // process quits at once: no checkpoint, commits whose WAL was not flushed
  // are gone) or kill -9 of the postmaster (its backends exit when they see it
  // gone). StartAgain() then runs crash recovery. "" on success.
  std::string StopImmediate();
  std::string KillPostmaster();
  // Starts the stopped cluster again on the same port. "" on success.
  std::string StartAgain();
  // Server URL (database "postgres").
  const std::string& url() const { return url_; }
  bool running() const { return running_; }

 private:
  std::string dir_;
  std::string url_;
  bool running_ = false;
};

}  // namespace sluice::testing
