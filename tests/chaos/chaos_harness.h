// A Jepsen-style chaos harness over the real `sluice` binary: N replicas on
// one store, a concurrent workload with known content, faults on a schedule,
// then a checker that trusts only what the clients saw and what landed in the
// archive directory — not sluice's own bookkeeping (its metrics are used only
// for the dispatch and fencing figures, and then as lower bounds).
//
//   workload  several clients; several projects (write key -> project) and
//             users; unique and deliberately re-sent insert_ids; a few poison
//             events; requests cut mid-body or abandoned before the answer
//   faults    kill -9 + restart; SIGSTOP past the lease TTL + SIGCONT (zombie);
//             PostgreSQL fast restart, immediate stop and kill -9 of the
//             postmaster (crashes); a test consumer failing a fraction of
//             batches; consumer calls hanging past the lease in a live replica
//   checker   stored set S = distinct (project, insert_id) in the archive;
//             acknowledged ⊆ S (nothing lost), S ⊆ acknowledged ∪ unknown
//             (nothing refused was stored); users and counters equal the
//             aggregates of S exactly (each stored event counted once); dead =
//             the poison events, with their error; duplicate dispatches
//             explained by expired leases; every zombie fenced; every event
//             received by a webhook receiver in this process (an independent
//             count of dispatches, testing/dispatch_receiver.h), each repeat
//             there explained by a fault between the two deliveries; and every
//             fault the round names exercised (else "fault not exercised").
// Thread-compatible: one RunChaos at a time per ChaosOptions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::testing {

struct ChaosOptions {
  bool postgres = false;  // false: SQLite file; true: a private PostgreSQL cluster
  int replicas = 3;
  int clients = 4;              // concurrent ingest clients
  int64_t duration_ms = 30000;  // workload + faults; then drain and check
  int64_t lease_ttl_ms = 2000;
  int64_t fault_interval_ms = 2500;  // one fault every this long, in rotation
  bool kill = true;                  // kill -9 a random replica, restart it 1 s later
  bool pause = true;                 // SIGSTOP a replica for lease_ttl + 1.5 s
  bool pg_restart = false;           // pg_ctl stop -m fast + start (postgres only)
  bool pg_immediate = false;         // pg_ctl stop -m immediate + start: a crash (postgres only)
  bool pg_kill9 = false;             // kill -9 of the postmaster + start: a crash (postgres only)
  bool flaky = true;                 // test consumer: fail_rate 5 %, one hang cut at the timeout
  // Consumer calls hanging past the lease TTL in a healthy replica (heartbeat
  // running): [watcher] consumer_timeout = 3 x TTL; the flaky consumer's first
  // 2 calls per process hang 2 x TTL (past the lease, within the timeout: they
  // must complete with the lease extended), and a consumer "stuck" hangs its
  // first call 4 x TTL (past the timeout: cut, failed, retried).
  bool hang = false;
  int64_t flaky_sleep_ms = 150;  // the flaky consumer's time per batch (I/O-bound sink)
  bool disconnect = true;        // clients cutting requests mid-body / not reading answers
  bool poison = true;            // 2 poison events, one consumer always fails them
  int64_t client_pause_ms = 0;   // each client waits this long between requests
  // Offered load, events per second over all clients (0 = as fast as the
  // replicas answer). Must stay below what the replicas drain, or the round
  // ends with a backlog it cannot drain in time: ingest is much faster than
  // the consumers (the flaky one sleeps 150 ms per batch).
  int64_t events_per_second = 2000;
  double dup_rate = 0.1;   // fraction of events re-sent with the same insert_id
  std::string store_toml;  // extra [store] keys: claim_strategy, fencing (controls)
  uint64_t seed = 1;
};

struct ChaosReport {
  // Run size.
  int64_t duration_ms = 0;
  int64_t requests = 0;
  int64_t events_sent = 0;     // including re-sends
  int64_t acked_events = 0;    // distinct events in some 200 answer
  int64_t unknown_events = 0;  // distinct, only in answers 0/5xx or abandoned requests
  int64_t refused_events = 0;  // distinct, only in 4xx or cut requests
  int64_t stored_events = 0;   // |S|
  int64_t kills = 0, pauses = 0, pg_restarts = 0, cut_requests = 0, abandoned_requests = 0;
  int64_t pg_immediate_stops = 0, pg_kills = 0;  // PostgreSQL crashes
  // The faults exercised: kills that caught the victim holding leases, and
  // PostgreSQL stops (any kind) with leases held and requests coming in.
  int64_t kills_with_leases = 0, pg_stops_in_load = 0;
  int64_t poison_events = 0;
  int64_t failed_starts = 0;  // restarts that exited at startup and were tried again
  // Checker results (must be 0).
  int64_t lost = 0;              // acknowledged but not stored
  int64_t phantom = 0;           // refused but stored
  int64_t count_mismatches = 0;  // users / counters values differing from S's aggregates
  int64_t collateral_dead = 0;   // dead events that are not poison
  int64_t poison_not_dead = 0;
  int64_t zombies_not_fenced = 0;
  int64_t stored_twice = 0;  // one insert_id under two queue seqs (dedup failed)
  // Archive objects replaced under the same key during the round (two
  // deliveries with the same first and last seq), and those whose new version
  // lacked events of the old one.
  int64_t archive_rewrites = 0;
  int64_t archive_rewrites_lossy = 0;
  // Events whose only archive line a replacement erased (must be 0): stored,
  // maybe counted, and gone from the archive.
  int64_t archive_erased = 0;
  int64_t zombie_episodes = 0;  // pauses with leases in flight
  // SQLite: pauses that caught the replica inside a write transaction. It
  // keeps the write lock while stopped (every other writer waits, restarts
  // fail with "database is locked"), then commits unfenced — correctly, as
  // nobody could take its rows meanwhile. Not counted as zombie episodes.
  int64_t lock_holding_pauses = 0;
  // Dispatch figures (metrics; lower bounds when replicas were killed).
  int64_t archive_deliveries = 0;
  int64_t duplicate_dispatches = 0;  // archive deliveries - |S|
  int64_t reclaimed_events = 0;      // sluice_lease_reclaims_total (sluice's own view)
  // Most duplicates the injected faults can explain: (kills + pauses +
  // pg_restarts * replicas) * loops * batch.
  int64_t fault_bound = 0;
  int64_t unexplained_dispatches = 0;  // duplicates beyond fault_bound
  int64_t flaky_failures = 0;
  int64_t stuck_failures = 0;  // events of "stuck" calls cut at the consumer timeout (hang)
  int64_t long_batches = 0;    // batches that took > 2.5 s (longer than the 2 s lease)
  int64_t fenced = 0;
  // The webhook receiver's count (independent of sluice): deliveries,
  // distinct events, repeats; stored events it never received (must be 0);
  // repeats with no fault between the two deliveries (must be 0), and the
  // faults that explain the others; sluice's own count of those deliveries.
  int64_t received = 0, received_distinct = 0, received_repeats = 0, receiver_missing = 0;
  int64_t receiver_unexplained = 0;
  std::string redelivery_causes;  // "kill -9 12, pause 3"
  int64_t hook_deliveries = 0;    // sluice_deliveries_total{consumer="hook"} (lower bound)
  std::vector<std::string> faults_not_exercised;  // a named fault that did not happen as named
  std::vector<std::string> violations;  // human-readable, first few of each kind
  std::vector<std::string> lease_log;   // replicas' log lines on fenced leases (first 12)
  std::vector<std::string> notes;       // lossy archive rewrites (first 10)

  std::string Summary() const;
};

// Runs one round in a fresh temp dir. Setup failures are returned as violations.
ChaosReport RunChaos(const ChaosOptions& options);

// CHAOS_SECONDS from the environment, else `fallback`.
int64_t ChaosSecondsFromEnv(int64_t fallback);

// CHAOS_FAULTS from the environment (comma-separated: kill, pause, pg_restart,
// pg_immediate, pg_kill9, hang; "none" for none) replaces the scheduled faults of `o` — for the
// per-fault figures of RELIABILITY.md. Unset: `o` is left alone. The flaky
// consumer, cut requests and poison events stay as `o` has them.
// CHAOS_FLAKY_SLEEP_MS sets o->flaky_sleep_ms (the first harness used 30).
void ChaosFaultsFromEnv(ChaosOptions* o);

}  // namespace sluice::testing
