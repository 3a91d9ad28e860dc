// Chaos rounds over the real binary (tests/chaos/chaos_harness.h): SQLite and
// PostgreSQL under kill -9, zombies, PostgreSQL restarts and crashes (immediate
// stop, kill -9 of the postmaster), a flaky consumer, poison events and cut
// requests — and the two control experiments proving the checker fails against
// the naive two-step claim and against disabled fencing. A round fails when a
// fault it names was not exercised.
// Size: CHAOS_SECONDS (default 20 s of workload per round; `make chaos` sets more).
// CHAOS_FAULTS (e.g. "kill", "pause", "pg_restart", "pg_immediate", "pg_kill9",
// "hang") restricts the two ChaosShort store rounds to those faults, for
// per-fault figures. CHAOS_RESULTS_DIR: each round writes its summary there
// (chaos/run_summary.h; scripts/chaos.sh sets it).

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "chaos/chaos_harness.h"
#include "chaos/run_summary.h"

namespace sluice::testing {
namespace {

// Runs one round, prints its figures and writes its summary (named after the
// round, and after CHAOS_FAULTS when that restricts the faults).
ChaosReport Round(const char* round, const char* title, const ChaosOptions& o) {
  const double load = LoadAverage();
  const ChaosReport r = RunChaos(o);
  std::printf("=== chaos %s ===\n%s", title, r.Summary().c_str());
  std::string name = round;
  if (const char* only = std::getenv("CHAOS_FAULTS"); only != nullptr && *only != '\0') {
    name += std::string("-only-") + only;
    for (char& c : name) c = c == ',' ? '+' : c;
  }
  const std::string path = WriteRunSummary(name, o, r, load);
  if (!path.empty()) std::printf("summary: %s\n", path.c_str());
  std::fflush(stdout);
  return r;
}

void ExpectClean(const ChaosReport& r) {
  EXPECT_TRUE(r.violations.empty()) << r.Summary();
  EXPECT_EQ(r.lost, 0);
  EXPECT_EQ(r.phantom, 0);
  EXPECT_EQ(r.count_mismatches, 0);
  EXPECT_EQ(r.collateral_dead, 0);
  EXPECT_EQ(r.poison_not_dead, 0);
  EXPECT_EQ(r.zombies_not_fenced, 0);
  EXPECT_EQ(r.stored_twice, 0);
  EXPECT_EQ(r.archive_erased, 0);
  EXPECT_EQ(r.receiver_missing, 0);
  EXPECT_EQ(r.receiver_unexplained, 0);
  EXPECT_TRUE(r.faults_not_exercised.empty());
  EXPECT_GT(r.acked_events, 0);
}

TEST(ChaosShort, SqliteReplicasCountEveryAcknowledgedEventOnceUnderFaults) {
  ChaosOptions o;
  o.replicas = 3;
  o.duration_ms = ChaosSecondsFromEnv(20) * 1000;
  o.seed = 11;
  ChaosFaultsFromEnv(&o);
  ExpectClean(Round("sqlite-all-faults", "sqlite", o));
}

// Faults in rotation every 2.5 s: kill -9, pause, fast restart, immediate stop,
// kill -9 of the postmaster (each at least once in 20 s).
TEST(ChaosShort, PostgresReplicasCountEveryAcknowledgedEventOnceUnderFaultsRestartsAndCrashes) {
  ChaosOptions o;
  o.postgres = true;
  o.pg_restart = o.pg_immediate = o.pg_kill9 = true;
  o.replicas = 3;
  o.duration_ms = ChaosSecondsFromEnv(20) * 1000;
  o.seed = 12;
  ChaosFaultsFromEnv(&o);
  ExpectClean(Round("postgres-all-faults", "postgres", o));
}

// Consumer calls hanging past the lease in live replicas (no kill, no pause):
// the heartbeat keeps every lease, so no lease expires and nothing reaches the
// archive twice; the hang past the consumer timeout is cut and retried.
TEST(ChaosShort, SqliteConsumerHangsPastTheLeaseExpireNoLeaseAndDeliverNothingTwice) {
  ChaosOptions o;
  o.replicas = 2;
  o.kill = o.pause = false;
  o.hang = true;
  o.events_per_second = 1000;  // two replicas drain less
  o.duration_ms = ChaosSecondsFromEnv(15) * 1000;
  o.seed = 15;
  const ChaosReport r = Round("sqlite-consumer-hang", "sqlite consumer hang", o);
  ExpectClean(r);
  EXPECT_GT(r.long_batches, 0) << "no call hung past the lease";
  EXPECT_GT(r.stuck_failures, 0) << "no hang was cut at the consumer timeout";
  // No lease expired (no claim took rows over an expired lease) and nothing
  // reached the archive twice. (sluice_fenced_total is not used here: the
  // watcher also counts a heartbeat that found its rows already completed.)
  EXPECT_EQ(r.reclaimed_events, 0) << "a lease expired although every replica's heartbeat ran";
  EXPECT_EQ(r.duplicate_dispatches, 0);
}

// Control: the naive two-step claim must be caught as duplicate dispatch that
// no expired lease explains.
TEST(ChaosControl, CheckerReportsNaiveTwoStepClaim) {
  ChaosOptions o;
  o.replicas = 3;
  o.clients = 2;
  o.duration_ms = 6000;
  o.kill = o.pause = o.flaky = o.disconnect = o.poison = false;
  o.events_per_second = 6000;  // a growing backlog: every claim races with others
  o.store_toml = "claim_strategy = \"naive\"\n";
  o.seed = 13;
  const ChaosReport r = Round("control-naive-claim", "control naive claim", o);
  EXPECT_GT(r.unexplained_dispatches, 0) << r.Summary();
  // ... and at the receiver, independently of sluice's counters.
  EXPECT_GT(r.receiver_unexplained, 0) << r.Summary();
  EXPECT_FALSE(r.violations.empty());
}

// One replica, paced clients, a SIGSTOP zombie every second and no other
// fault: the schedule both fencing controls share, so that the only
// difference between them is the switch.
ChaosOptions SingleReplicaZombieSchedule() {
  ChaosOptions o;
  o.replicas = 1;
  o.clients = 2;
  o.client_pause_ms = 50;
  o.events_per_second = 0;  // paced by client_pause_ms
  o.duration_ms = 15000;
  o.fault_interval_ms = 1000;
  o.kill = o.flaky = o.disconnect = o.poison = false;
  o.seed = 14;
  return o;
}

// Control: with fencing disabled a zombie's late writes are accepted.
TEST(ChaosControl, CheckerReportsDisabledFencing) {
  ChaosOptions o = SingleReplicaZombieSchedule();
  o.store_toml = "fencing = false\n";
  const ChaosReport r = Round("control-fencing-off", "control fencing off", o);
  EXPECT_GT(r.zombies_not_fenced, 0) << r.Summary();
  EXPECT_FALSE(r.violations.empty());
}

// The same schedule with fencing on: every zombie fenced.
TEST(ChaosControl, SingleReplicaZombiesAreFencedWithFencingOn) {
  const ChaosReport r =
      Round("control-fencing-on", "control fencing on", SingleReplicaZombieSchedule());
  ExpectClean(r);
  EXPECT_GT(r.zombie_episodes, 0);
}

}  // namespace
}  // namespace sluice::testing
