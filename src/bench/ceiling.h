// `sluice bench ceiling`: the rows one event costs the store, written as fast
// as the store's own connection settings allow, for "sustained / ceiling".
//
// Per event: the queue row, the dedup row, and (in a later transaction, as a
// claim's Complete would) the queue row's delete; per claim-sized batch the
// aggregate rows the in-store consumers would write for the same events
// (users and user_events upserts, counters upserts and counter_users inserts
// for the minute, hour and day buckets), pre-combined per batch as the
// consumers' effects are. No HTTP, no JSON parsing, no lease bookkeeping (no
// claim UPDATE, no fence, no done bits), large transactions: SQLite through
// prepared statements on a connection opened as the store opens its own;
// PostgreSQL with COPY for the queue rows, one multi-row (unnest) insert of
// the dedup keys, and one multi-row statement per aggregate table and batch,
// pipelined. The store's
// schema is created by OpenStore first. Rows are generated outside the clock.
// Thread-compatible: one run at a time.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "queue/store.h"

namespace sluice {

struct CeilingBenchOptions {
  StoreOptions store;        // url + sync (the durability of every commit)
  int64_t events = 200000;   // > 0
  int64_t txn_events = 50000;  // events per transaction, >= batch
  int32_t batch = 500;       // events per aggregate batch (the watcher's claim size), >= 1
  int64_t users = 10000;     // as `bench ingest --users`
  int32_t event_bytes = 300;
  // > 0: event i has the content of event i % template_events, as the load
  // generator repeats each connection's request template (connections x
  // batch events); 0: every event distinct.
  int64_t template_events = 0;
};

struct CeilingBenchResult {
  int64_t events = 0;
  int64_t transactions = 0;
  double seconds = 0;          // inside the transactions (generation excluded)
  double events_per_s = 0;
  double cpu_s = 0;            // this process's CPU over the same spans
  int64_t rows_written = 0;    // inserts + upserts + deletes
  int64_t aggregate_rows = 0;  // of which users/user_events/counters/counter_users

  std::string ToJson(const CeilingBenchOptions& o) const;
  std::string ToText(const CeilingBenchOptions& o) const;
};

// REQUIRES: a store without events (a fresh one); refused otherwise.
Result<CeilingBenchResult> RunCeilingBench(const CeilingBenchOptions& options);

}  // namespace sluice
