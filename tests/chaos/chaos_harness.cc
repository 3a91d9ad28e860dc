// RunChaos: one round, setup -> load + fault schedule -> drain -> checks. The
// pieces are in chaos_round.h (one file each).
#include "chaos/chaos_harness.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>

#include "chaos/chaos_round.h"

namespace sluice::testing {

int64_t ChaosSecondsFromEnv(int64_t fallback) {
  const char* v = std::getenv("CHAOS_SECONDS");
  if (v == nullptr || *v == '\0') return fallback;
  const long long n = std::atoll(v);
  return n > 0 ? n : fallback;
}

void ChaosFaultsFromEnv(ChaosOptions* o) {
  if (const char* sleep = std::getenv("CHAOS_FLAKY_SLEEP_MS"); sleep != nullptr && *sleep) {
    o->flaky_sleep_ms = std::atoll(sleep);
  }
  const char* v = std::getenv("CHAOS_FAULTS");
  if (v == nullptr || *v == '\0') return;
  std::set<std::string> on;
  std::stringstream in(v);
  std::string item;
  while (std::getline(in, item, ',')) on.insert(item);
  o->kill = on.count("kill") > 0;
  o->pause = on.count("pause") > 0;
  o->pg_restart = o->postgres && on.count("pg_restart") > 0;
  o->pg_immediate = o->postgres && on.count("pg_immediate") > 0;
  o->pg_kill9 = o->postgres && on.count("pg_kill9") > 0;
  o->hang = on.count("hang") > 0;
}

std::string ChaosReport::Summary() const {
  std::ostringstream s;
  s << "run: " << duration_ms / 1000.0 << " s, " << requests << " requests, " << events_sent
    << " events sent (" << acked_events << " acked, " << unknown_events << " unknown, "
    << refused_events << " refused distinct), stored " << stored_events << "\n"
    << "faults: kills " << kills << ", pauses " << pauses << " (zombie episodes " << zombie_episodes
    << ", holding the SQLite write lock " << lock_holding_pauses << "), pg restarts " << pg_restarts
    << ", pg immediate stops " << pg_immediate_stops << ", pg postmaster kills " << pg_kills
    << " (kills with leases " << kills_with_leases << ", pg stops in load " << pg_stops_in_load
    << ")"
    << ", cut requests " << cut_requests << ", abandoned requests " << abandoned_requests
    << ", failed restarts " << failed_starts << ", poison events " << poison_events
    << ", flaky consumer failures " << flaky_failures << ", stuck consumer failures "
    << stuck_failures << ", batches > 2.5 s " << long_batches << "\n"
    << "checker: lost " << lost << ", phantom " << phantom << ", count mismatches "
    << count_mismatches << ", collateral dead " << collateral_dead << ", poison not dead "
    << poison_not_dead << ", zombies not fenced " << zombies_not_fenced << ", stored twice "
    << stored_twice << ", archive objects rewritten " << archive_rewrites << " (dropping events "
    << archive_rewrites_lossy << "), events erased from the archive " << archive_erased << "\n"
    << "dispatch: archive deliveries " << archive_deliveries << ", duplicate dispatches "
    << duplicate_dispatches << " ("
    << (stored_events
            ? 100.0 * static_cast<double>(duplicate_dispatches) / static_cast<double>(stored_events)
            : 0.0)
    << " %), fault bound " << fault_bound << ", sluice-counted reclaims " << reclaimed_events
    << ", unexplained " << unexplained_dispatches << ", fenced leases " << fenced << "\n"
    << "receiver: deliveries " << received << " (sluice counted " << hook_deliveries
    << "), distinct " << received_distinct << ", repeats " << received_repeats << " ("
    << (redelivery_causes.empty() ? std::string("-") : redelivery_causes) << "), unexplained "
    << receiver_unexplained << ", stored but never received " << receiver_missing << "\n";
  for (const std::string& v : violations) s << "  VIOLATION " << v << "\n";
  for (const std::string& n : notes) s << "  note " << n << "\n";
  for (const std::string& l : lease_log) s << "  lease log " << l << "\n";
  return s.str();
}

ChaosReport RunChaos(const ChaosOptions& o) {
  using namespace chaos;
  ChaosReport report;
  Round round(o, &report);
  if (!StartCluster(&round)) return report;

  // ---- load + faults ----
  const int64_t start = NowMs();
  const int64_t end = start + o.duration_ms;
  Load load(o, round.ports, start, end);
  load.Start();
  Faults faults(&round, &load);
  faults.Run(start, end);
  load.Join();
  faults.BringBack();
  report.duration_ms = NowMs() - start;

  // ---- drain ----
  const std::string url = RunningUrl(round);
  if (url.empty()) {
    round.Violation("setup", "no replica is running after the workload");
    return report;
  }
  const bool drained = WaitUntil(
      [&] {
        faults.ScrapeAll();
        faults.CheckZombies(false);
        return Backlog(url) == 0;
      },
      std::chrono::seconds(180), std::chrono::milliseconds(250));
  if (!drained) {
    round.Violation("drain", "queue not empty 180 s after the workload (backlog " +
                                 std::to_string(Backlog(url)) + ")");
  }
  WaitUntil(
      [&] {
        faults.ScrapeAll();
        if (faults.ZombieChecksPending()) faults.CheckZombies(false);
        return !faults.ZombieChecksPending();
      },
      std::chrono::seconds(10), std::chrono::milliseconds(200));
  faults.ScrapeAll();
  faults.CheckZombies(true);
  faults.PollArchive();

  // ---- check ----
  CheckRound(&round, load, faults, url);
  StopCluster(&round);
  CollectLeaseLog(&round);
  if (!report.violations.empty() && std::getenv("CHAOS_KEEP_LOGS") != nullptr) {
    for (Replica& r : round.replicas) std::fprintf(stderr, "%s\n", r.proc->ReadLog().c_str());
  }
  return report;
}

}  // namespace sluice::testing
