// The fault schedule of a chaos round, with the metric scraping and the
// zombie checks it drives (chaos_round.h).
#include <random>

#include "chaos/chaos_round.h"
#include "common/clock.h"

namespace sluice::testing::chaos {
namespace {

// The PostgreSQL stops (kPgRestart and after) hit every replica at once.
enum Fault { kKill = 0, kPause = 1, kPgRestart = 2, kPgImmediate = 3, kPgKill9 = 4 };

}  // namespace

Faults::Faults(Round* round, const Load* load)
    : round_(round), load_(load), archive_(round->archive_dir) {}

void Faults::PollArchive() {
  std::vector<std::string> lossy;
  archive_.Poll(&lossy);
  for (const std::string& what : lossy) {
    std::vector<std::string>& notes = round_->report->notes;
    if (notes.size() < 10) notes.push_back("archive rewrite: " + what);
  }
  next_archive_poll_ = NowMs() + 1000;
}

void Faults::ScrapeAll() {
  for (Replica& r : round_->replicas) {
    if (r.paused || r.killed) continue;
    ReplicaFigures f;
    if (Scrape(*r.proc, &f)) r.last = f;
  }
  if (NowMs() >= next_archive_poll_) PollArchive();
}

void Faults::CheckZombies(bool final) {
  for (size_t i = 0; i < round_->replicas.size(); ++i) {
    Replica& r = round_->replicas[i];
    if (r.fenced_at_pause < 0 || r.paused || r.killed) continue;
    if (r.last.fenced > r.fenced_at_pause) {
      r.fenced_at_pause = -1;
    } else if (final || NowMs() > r.check_until) {
      ++round_->report->zombies_not_fenced;
      round_->Violation("zombie",
                        "replica r" + std::to_string(i) +
                            " was stopped past its lease with batches in flight, and after "
                            "SIGCONT none of its writes was refused (sluice_fenced_total stayed " +
                            std::to_string(r.fenced_at_pause) + ")");
      r.fenced_at_pause = -1;
    }
  }
}

bool Faults::ZombieChecksPending() const {
  for (const Replica& r : round_->replicas) {
    if (r.fenced_at_pause >= 0) return true;
  }
  return false;
}

void Faults::Run(int64_t start, int64_t end) {
  const ChaosOptions& o = round_->o;
  ChaosReport& report = *round_->report;
  std::mt19937_64 frng(o.seed);
  int64_t next_fault = start + o.fault_interval_ms;
  int rotation = 0;
  while (NowMs() < end) {
    const int64_t requests_before = load_->requests();  // answered ~200 ms ago
    Clock::Real().SleepMs(200);
    ScrapeAll();
    const int64_t now = NowMs();
    // Resumes first, and no restart while a replica is stopped: a replica
    // stopped inside a SQLite write transaction keeps the write lock, and a
    // restart (blocking this loop) would wait for that lock until its own
    // startup gave up — the first harness lost replica 0 that way at 10:19.
    bool any_paused = false;
    for (Replica& r : round_->replicas) {
      if (r.paused && now >= r.resume_at) {
        r.proc->Resume();
        r.paused = false;
        r.check_until = now + 5000;
      }
      any_paused |= r.paused;
    }
    for (size_t i = 0; i < round_->replicas.size(); ++i) {
      Replica& r = round_->replicas[i];
      if (r.killed && now >= r.restart_at && !any_paused) {
        if (!RestartWithRetries(*r.proc, &report.failed_starts)) {
          round_->Violation("setup",
                            "restart r" + std::to_string(i) + " failed: " + r.proc->error());
        }
        r.killed = false;
        r.last = ReplicaFigures{};
      }
    }
    CheckZombies(false);
    if (now < next_fault) continue;
    next_fault = now + o.fault_interval_ms;
    std::vector<int> kinds_on;
    if (o.kill) kinds_on.push_back(kKill);
    if (o.pause) kinds_on.push_back(kPause);
    if (o.pg_restart && round_->pg) kinds_on.push_back(kPgRestart);
    if (o.pg_immediate && round_->pg) kinds_on.push_back(kPgImmediate);
    if (o.pg_kill9 && round_->pg) kinds_on.push_back(kPgKill9);
    if (kinds_on.empty()) continue;
    const int fault = kinds_on[rotation++ % kinds_on.size()];
    std::vector<size_t> up;
    for (size_t i = 0; i < round_->replicas.size(); ++i) {
      const Replica& r = round_->replicas[i];
      if (!r.paused && !r.killed && r.fenced_at_pause < 0) up.push_back(i);
    }
    // Keep one replica serving when there are several.
    if (up.empty() || (fault < kPgRestart && round_->replicas.size() > 1 && up.size() < 2)) {
      continue;
    }
    Inject(fault, up[frng() % up.size()], requests_before);
  }
}

void Faults::Inject(int fault, size_t victim, int64_t requests_before) {
  const ChaosOptions& o = round_->o;
  ChaosReport& report = *round_->report;
  if (fault >= kPgRestart) {
    // Exercised inside the load: leases held and clients sending.
    const bool in_load =
        HeldLeases(round_->store_url, "%") > 0 && load_->requests() > requests_before;
    FaultWindow w{fault == kPgRestart     ? "pg fast restart"
                  : fault == kPgImmediate ? "pg immediate"
                                          : "pg kill -9",
                  NowMs(), 0};
    std::string err = fault == kPgRestart     ? round_->pg->StopFast()
                      : fault == kPgImmediate ? round_->pg->StopImmediate()
                                              : round_->pg->KillPostmaster();
    Clock::Real().SleepMs(fault == kPgRestart ? 1000 : 500);
    if (err.empty()) err = round_->pg->StartAgain();
    if (!err.empty()) round_->Violation("setup", w.cause + ": " + err);
    w.end_ms = NowMs();
    round_->windows.push_back(w);
    report.pg_stops_in_load += in_load ? 1 : 0;
    ++(fault == kPgRestart     ? report.pg_restarts
       : fault == kPgImmediate ? report.pg_immediate_stops
                               : report.pg_kills);
    return;
  }
  Replica& v = round_->replicas[victim];
  ReplicaFigures f;
  if (fault == kKill) {
    if (Scrape(*v.proc, &f)) v.last = f;
    // Exercised when the victim held leases: they expire under it.
    if (HeldLeases(round_->store_url, "r" + std::to_string(victim) + "/%") > 0) {
      ++report.kills_with_leases;
    }
    round_->windows.push_back(FaultWindow{"kill -9", NowMs(), NowMs()});
    v.proc->Kill();
    v.done += v.last;
    v.last = ReplicaFigures{};
    v.killed = true;
    v.restart_at = NowMs() + 1000;
    ++report.kills;
    return;
  }
  // kPause
  if (!Scrape(*v.proc, &f)) return;
  v.last = f;
  v.proc->Pause();
  v.paused = true;
  v.resume_at = NowMs() + o.lease_ttl_ms + 1500;
  ++report.pauses;
  round_->windows.push_back(FaultWindow{"pause", NowMs(), v.resume_at});
  // A zombie only if it holds leases now that it is stopped: ask the store
  // (the in-flight gauge was scraped before the stop, and a short batch may
  // have finished in between); the gauge only if that fails.
  const int64_t held = HeldLeases(round_->store_url, "r" + std::to_string(victim) + "/%");
  if (!o.postgres && SqliteWriteLocked(round_->store_url)) {
    // Stopped inside a write transaction: it keeps SQLite's write lock, so
    // no other replica can claim its rows (or write at all) until it resumes
    // and commits — its commit is then correct and not fenced.
    ++report.lock_holding_pauses;
  } else if (held >= 0 ? held > 0 : f.in_flight > 0) {
    v.fenced_at_pause = f.fenced;
    ++report.zombie_episodes;
  }
}

void Faults::BringBack() {
  // The stopped ones first (see Run).
  for (Replica& r : round_->replicas) {
    if (r.paused) {
      r.proc->Resume();
      r.paused = false;
      r.check_until = NowMs() + 5000;
    }
  }
  for (Replica& r : round_->replicas) {
    if (r.killed) {
      if (!RestartWithRetries(*r.proc, &round_->report->failed_starts)) {
        round_->Violation("setup", "restart failed: " + r.proc->error());
      }
      r.killed = false;
    }
  }
}

}  // namespace sluice::testing::chaos
