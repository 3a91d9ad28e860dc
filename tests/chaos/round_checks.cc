#include "chaos/round_checks.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>

namespace sluice::testing {

int64_t HeldLeases(const std::string& store_url, const std::string& owner_like) {
  static constexpr char kSql[] =
      "SELECT count(*) FROM queue WHERE state = 'leased' AND lease_owner LIKE ";
  if (store_url.rfind("sqlite:", 0) == 0) {
    sqlite3* db = nullptr;
    int64_t held = -1;
    if (sqlite3_open_v2(store_url.substr(7).c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_busy_timeout(db, 2000);
      sqlite3_stmt* stmt = nullptr;
      // The store's clock, as SqliteConn::NowMs reads it.
      const std::string sql =
          std::string(kSql) +
          "?1 AND lease_until > CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS "
          "INTEGER)";
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
          sqlite3_bind_text(stmt, 1, owner_like.c_str(), -1, SQLITE_TRANSIENT) == SQLITE_OK &&
          sqlite3_step(stmt) == SQLITE_ROW) {
        held = sqlite3_column_int64(stmt, 0);
      }
      sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    return held;
  }
  PGconn* conn = PQconnectdb(store_url.c_str());
  int64_t held = -1;
  if (PQstatus(conn) == CONNECTION_OK) {
    const std::string sql = std::string(kSql) + "$1 AND lease_until > now()";
    const char* params[] = {owner_like.c_str()};
    PGresult* r = PQexecParams(conn, sql.c_str(), 1, nullptr, params, nullptr, nullptr, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      held = std::atoll(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
  }
  PQfinish(conn);
  return held;
}

bool SqliteWriteLocked(const std::string& store_url) {
  sqlite3* db = nullptr;
  bool locked = false;
  if (sqlite3_open_v2(store_url.substr(7).c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) ==
      SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    const int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    locked = rc == SQLITE_BUSY;
    if (rc == SQLITE_OK) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
  return locked;
}

Violations CheckReceiver(const ChaosOptions& o, const DispatchReceiver& receiver,
                         const std::vector<FaultWindow>& windows,
                         const std::map<std::string, std::set<int64_t>>& stored,
                         int64_t hook_metric, ChaosReport* report) {
  Violations v;
  const DispatchReceiver::Counts c = receiver.counts();
  const std::map<std::string, std::vector<int64_t>> got = receiver.deliveries();
  report->received = c.deliveries;
  report->received_distinct = c.distinct;
  report->received_repeats = c.repeats;
  report->hook_deliveries = hook_metric;
  for (const auto& [key, seqs] : stored) {
    if (got.count(key)) continue;
    ++report->receiver_missing;
    if (report->receiver_missing <= 5) {
      v.emplace_back("receiver", key + " is stored but the webhook never delivered it");
    }
  }
  if (c.malformed > 0) {
    v.emplace_back("receiver", std::to_string(c.malformed) + " malformed webhook bodies");
  }
  // A lease that expired during a fault may still be delivered by its old
  // holder right after the fault ended, and taken over one lease later.
  const RedeliveryExplanation why = ExplainRedeliveries(got, windows, 2 * o.lease_ttl_ms + 2000);
  report->receiver_unexplained = why.unexplained;
  for (const auto& [cause, n] : why.by_cause) {
    if (!report->redelivery_causes.empty()) report->redelivery_causes += ", ";
    report->redelivery_causes += cause + " " + std::to_string(n);
  }
  if (why.unexplained > 0) {
    v.emplace_back("dispatch at receiver",
                   std::to_string(why.unexplained) + " of " + std::to_string(why.repeats) +
                       " repeated webhook deliveries had no fault between them, e.g. " +
                       why.examples.front());
  }
  return v;
}

// A round that names a fault it did not exercise proves nothing about it.
Violations CheckFaultsExercised(const ChaosOptions& o, ChaosReport* report) {
  Violations v;
  auto missing = [&](const std::string& what) {
    report->faults_not_exercised.push_back(what);
    v.emplace_back("fault not exercised", what);
  };
  if (o.kill && report->kills_with_leases == 0) {
    missing("kill: no kill -9 caught a replica holding leases (" +
            std::to_string(report->kills) + " kills)");
  }
  if (o.pause && report->zombie_episodes == 0) {
    missing("pause: no SIGSTOP caught a replica holding leases, no zombie (" +
            std::to_string(report->pauses) + " pauses)");
  }
  const bool pg_faults = o.postgres && (o.pg_restart || o.pg_immediate || o.pg_kill9);
  if (o.postgres && o.pg_restart && report->pg_restarts == 0) missing("pg_restart: none injected");
  if (o.postgres && o.pg_immediate && report->pg_immediate_stops == 0) {
    missing("pg_immediate: none injected");
  }
  if (o.postgres && o.pg_kill9 && report->pg_kills == 0) missing("pg_kill9: none injected");
  if (pg_faults && report->pg_stops_in_load == 0) {
    missing("PostgreSQL stops: none came inside the load (leases held, clients sending)");
  }
  if (o.hang && (report->long_batches == 0 || report->stuck_failures == 0)) {
    missing("hang: " + std::to_string(report->long_batches) + " calls hung past the lease, " +
            std::to_string(report->stuck_failures) + " events of calls cut at the timeout");
  }
  return v;
}

}  // namespace sluice::testing
