// The pieces of one chaos round (chaos_harness.h), one file each, in the
// order RunChaos uses them:
//   chaos_cluster.cc  setup: the store, the replicas' TOML, start/restart,
//                     store probes (held leases, the SQLite write lock)
//   chaos_load.cc     load: the clients, what each request's answer says
//                     about its events
//   chaos_faults.cc   the fault schedule: kill, pause (zombie), PostgreSQL
//                     fast restart / immediate stop / kill -9; metric
//                     scraping and the zombie checks
//   chaos_checks.cc   the checker: archive vs answers, aggregates, dead
//                     letters, dispatch figures, the replicas' lease logs
// Internal to tests/chaos. Thread-compatible unless a member says otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chaos/archive_check.h"
#include "chaos/chaos_harness.h"
#include "chaos/round_checks.h"
#include "testing/dispatch_receiver.h"
#include "testing/pg_fixture.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing::chaos {

inline constexpr int64_t kHourMs = 3600 * 1000;
inline constexpr int64_t kBaseMs = 1793491200000;  // 2026-11-01T00:00:00Z
inline constexpr int kProjects = 3;
inline constexpr int kUsersPerProject = 40;
inline constexpr int kNames = 5;
inline constexpr int kLoops = 2;   // [watcher] loops per replica
inline constexpr int kBatch = 50;  // [watcher] batch
inline constexpr char kAdminToken[] = "chaos-admin-token-0123456789";

// The real monotonic clock, ms.
int64_t NowMs();
std::string Project(int p);
std::string WriteKey(int p);
std::vector<std::pair<std::string, std::string>> AdminHeaders();

// ---- one round ----

// The figures of one replica incarnation's /metrics.
struct ReplicaFigures {
  int64_t archive = 0, hook = 0, flaky_failures = 0, stuck_failures = 0, long_batches = 0,
          reclaims = 0, fenced = 0, in_flight = 0;
  // Sums every figure but the in-flight gauge.
  ReplicaFigures& operator+=(const ReplicaFigures& o);
};

// Reads `p`'s /metrics into `*f`; false when it did not answer.
bool Scrape(const SluiceProcess& p, ReplicaFigures* f);

// One replica and its figures: `done` sums the incarnations that were killed
// (their last scrape), `last` is the current one's last scrape.
struct Replica {
  std::unique_ptr<SluiceProcess> proc;
  ReplicaFigures done, last;
  bool paused = false, killed = false;
  int64_t resume_at = 0, restart_at = 0;
  int64_t fenced_at_pause = -1;  // >= 0 while a zombie episode awaits its check
  int64_t check_until = 0;
};

// What one round runs on and writes to.
struct Round {
  Round(const ChaosOptions& options, ChaosReport* report) : o(options), report(report) {}

  // Records a violation; at most a few per kind are kept in the report.
  void Violation(const std::string& kind, const std::string& what);

  const ChaosOptions& o;
  ChaosReport* const report;
  std::map<std::string, int> kinds;  // violations seen per kind
  TempDir dir;
  std::string archive_dir;
  std::string store_url;
  std::unique_ptr<PgCluster> pg;  // postgres rounds only
  std::vector<Replica> replicas;
  std::vector<int> ports;  // of the replicas, fixed across restarts
  // The webhook consumer "hook" of every replica posts here: an independent
  // count of dispatches (testing/dispatch_receiver.h).
  DispatchReceiver receiver;
  std::vector<FaultWindow> windows;  // every fault injected, for the receiver's repeats
};

// ---- setup (chaos_cluster.cc) ----

// Starts the store (a private PostgreSQL cluster, or a SQLite file) and the
// replicas. False (a "setup" violation recorded) when anything did not start.
bool StartCluster(Round* round);
// Restarts a killed replica, retrying a start that found the SQLite file
// locked (as a supervisor would); counts the failed attempts.
bool RestartWithRetries(SluiceProcess& p, int64_t* failed_starts);
// (HeldLeases and SqliteWriteLocked, the store probes: chaos/round_checks.h.)
// pending + leased from /admin/status; -1 on error.
int64_t Backlog(const std::string& url);
// The URL of a replica that is up, "" when none is.
std::string RunningUrl(Round& round);
// SIGTERM (then SIGKILL) every replica still running.
void StopCluster(Round* round);

// ---- load (chaos_load.cc) ----

// One event as a client sent it.
struct SentEvent {
  int project = 0;
  std::string insert_id;
  std::string event;
  std::string user;
  int64_t time_ms = 0;
};

// What the clients know about one event, merged over every request carrying it.
struct Outcome {
  bool acked = false;    // in some 200
  bool unknown = false;  // in some request whose fate the client cannot know
  bool refused = false;  // in some 4xx or cut request
};

// The clients: `o.clients` threads posting batches (with re-sent insert_ids,
// poison events, cut and abandoned requests) to random replicas until `end`,
// paced to o.events_per_second.
class Load {
 public:
  Load(const ChaosOptions& o, std::vector<int> ports, int64_t start, int64_t end);
  ~Load();  // Join()

  void Start();
  void Join();

  // After Join: "project/insert_id" -> what was sent / what the answers said.
  const std::map<std::string, SentEvent>& events() const { return events_; }
  const std::map<std::string, Outcome>& outcomes() const { return outcomes_; }
  // Copies the request counts into the report.
  void Report(ChaosReport* r) const;
  // Requests answered so far (any thread).
  int64_t requests() const { return requests_.load(); }

 private:
  void Client(int c);

  const ChaosOptions& o_;
  const std::vector<int> ports_;
  const int64_t start_, end_;
  std::vector<std::thread> clients_;
  std::atomic<int64_t> requests_{0}, sent_{0}, cut_{0}, abandoned_{0}, poison_{0};
  std::mutex mu_;
  std::map<std::string, SentEvent> events_;  // GUARDED_BY(mu_) until Join
  std::map<std::string, Outcome> outcomes_;  // GUARDED_BY(mu_) until Join
};

// ---- the fault schedule (chaos_faults.cc) ----

class Faults {
 public:
  // `load` (its request count) tells whether a PostgreSQL stop happened
  // inside the load. REQUIRES: both outlive this.
  Faults(Round* round, const Load* load);

  // Until `end` (real ms): every 200 ms scrapes the replicas, resumes and
  // restarts the victims due, checks zombies; every o.fault_interval_ms
  // injects the next enabled fault (kill, pause, PostgreSQL restart) in
  // rotation into a replica that is up, keeping one serving.
  void Run(int64_t start, int64_t end);
  // Resumes the stopped replicas, then restarts the killed ones.
  void BringBack();

  // Scrapes every replica that is up (and polls the archive once a second).
  void ScrapeAll();
  // Each zombie episode must end with a fenced write after SIGCONT, within
  // 5 s (or by now, when `final`).
  void CheckZombies(bool final);
  bool ZombieChecksPending() const;
  void PollArchive();
  const ArchiveWatch& archive() const { return archive_; }

 private:
  // Injects `fault` (kill or pause into replica `victim`, or a PostgreSQL
  // fast restart, immediate stop or postmaster kill) and counts it in the
  // report, with whether it was exercised (leases held, clients sending).
  void Inject(int fault, size_t victim, int64_t requests_before);

  Round* const round_;
  const Load* const load_;
  ArchiveWatch archive_;
  int64_t next_archive_poll_ = 0;
};

// ---- the checker (chaos_checks.cc) ----

// Every check after the drain, through the replica at `url`; fills the
// checker's and the dispatch figures of the report.
void CheckRound(Round* round, const Load& load, const Faults& faults, const std::string& url);
// The replicas' own log lines about fenced leases (first few), into the
// report. REQUIRES: the replicas stopped.
void CollectLeaseLog(Round* round);

}  // namespace sluice::testing::chaos
