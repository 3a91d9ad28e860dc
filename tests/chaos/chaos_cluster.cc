// Setup of a chaos round: the store, the replicas' TOML, start and restart,
// and the store probes the fault schedule asks (chaos_round.h).
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "chaos/chaos_round.h"
#include "common/clock.h"

namespace sluice::testing::chaos {
namespace {

using std::chrono::milliseconds;

constexpr int kMaxViolationsPerKind = 5;

// `hook_toml`: the webhook consumer posting to the dispatch receiver.
std::string ReplicaToml(const ChaosOptions& o, const std::string& store_url,
                        const std::string& archive_dir, const std::string& hook_toml) {
  std::ostringstream t;
  t << "[store]\nurl = \"" << store_url << "\"\n" << o.store_toml;
  t << "[watcher]\nloops = " << kLoops << "\nbatch = " << kBatch << "\nlease_ttl = \""
    << o.lease_ttl_ms << "ms\"\nheartbeat = \"" << o.lease_ttl_ms / 4
    << "ms\"\nbackoff_base = \"50ms\"\nbackoff_cap = \"800ms\"\nmax_attempts = 8\n"
    << "idle_poll_max = \"200ms\"\n";
  if (o.hang) t << "consumer_timeout = \"" << o.lease_ttl_ms * 3 << "ms\"\n";
  t << "[auth]\nadmin_token = \"" << kAdminToken << "\"\n[auth.write_keys]\n";
  for (int p = 0; p < kProjects; ++p) t << "\"" << WriteKey(p) << "\" = \"" << Project(p) << "\"\n";
  t << "[[consumer]]\ntype = \"users\"\n[[consumer]]\ntype = \"counters\"\n";
  t << "[[consumer]]\ntype = \"archive\"\nname = \"archive\"\nbit = 2\ndir = \"" << archive_dir
    << "\"\nfsync = false\n";
  t << "[[consumer]]\ntype = \"test\"\nname = \"flaky\"\nbit = 3\nsleep_ms = " << o.flaky_sleep_ms
    << "\n";
  if (o.flaky) t << "fail_rate = 0.05\n";
  // Without `hang` the default consumer timeout (TTL / 2) cuts this hang short;
  // with it (timeout 3 x TTL) the hang outlives the lease and completes.
  if (o.flaky || o.hang) {
    t << "hang_ms = " << o.lease_ttl_ms * 2 << "\nhang_first_n = " << (o.hang ? 2 : 1) << "\n";
  }
  if (o.hang) {
    t << "[[consumer]]\ntype = \"test\"\nname = \"stuck\"\nbit = 5\nhang_ms = "
      << o.lease_ttl_ms * 4 << "\nhang_first_n = 1\n";
  }
  if (o.poison)
    t << "[[consumer]]\ntype = \"test\"\nname = \"poisoned\"\nbit = 4\n"
      << "poison_event = \"poison\"\n";
  t << hook_toml;
  return t.str();
}

}  // namespace

int64_t NowMs() { return Clock::Real().MonoMs(); }
std::string Project(int p) { return "p" + std::to_string(p); }
std::string WriteKey(int p) { return "wk-chaos-" + std::to_string(p) + "-secret"; }
std::vector<std::pair<std::string, std::string>> AdminHeaders() {
  return {{"Authorization", std::string("Bearer ") + kAdminToken}};
}

ReplicaFigures& ReplicaFigures::operator+=(const ReplicaFigures& o) {
  archive += o.archive;
  hook += o.hook;
  flaky_failures += o.flaky_failures;
  stuck_failures += o.stuck_failures;
  long_batches += o.long_batches;
  reclaims += o.reclaims;
  fenced += o.fenced;
  return *this;
}

bool Scrape(const SluiceProcess& p, ReplicaFigures* f) {
  HttpResult r = HttpGet(p.Url("/metrics"), {}, milliseconds(3000));
  if (r.status != 200) return false;
  f->archive = MetricSum(r.body, "sluice_deliveries_total", "consumer=\"archive\"");
  f->hook = MetricSum(r.body, "sluice_deliveries_total", "consumer=\"hook\"");
  f->flaky_failures = MetricSum(r.body, "sluice_failures_total", "consumer=\"flaky\"");
  f->stuck_failures = MetricSum(r.body, "sluice_failures_total", "consumer=\"stuck\"");
  f->long_batches = MetricSum(r.body, "sluice_batch_seconds_count") -
                    MetricSum(r.body, "sluice_batch_seconds_bucket", "le=\"2.5\"");
  f->reclaims = MetricSum(r.body, "sluice_lease_reclaims_total");
  f->fenced = MetricSum(r.body, "sluice_fenced_total");
  f->in_flight = MetricSum(r.body, "sluice_watcher_in_flight");
  return true;
}

void Round::Violation(const std::string& kind, const std::string& what) {
  if (kinds[kind]++ < kMaxViolationsPerKind) report->violations.push_back(kind + ": " + what);
}

bool StartCluster(Round* round) {
  const ChaosOptions& o = round->o;
  round->archive_dir = round->dir.File("archive");
  round->store_url = "sqlite:" + round->dir.File("sluice.db");
  if (o.postgres) {
    round->pg = std::make_unique<PgCluster>();
    const std::string err = round->pg->Start();
    if (!err.empty()) {
      round->Violation("setup", "postgres: " + err);
      return false;
    }
    round->store_url = round->pg->url();
  }
  const std::string config = round->dir.File("sluice.toml");
  const std::string config_text = ReplicaToml(o, round->store_url, round->archive_dir,
                                              round->receiver.ConsumerToml("hook", 6));
  std::ofstream(config) << config_text;

  round->replicas.resize(o.replicas);
  for (int i = 0; i < o.replicas; ++i) {
    SluiceProcessOptions po;
    po.binary = BinaryFor(config_text);
    po.dir = round->dir.path();
    po.args = {"--config", config, "--replica-id", "r" + std::to_string(i)};
    po.log_name = "replica-" + std::to_string(i) + ".log";
    Replica& r = round->replicas[i];
    r.proc = std::make_unique<SluiceProcess>(po);
    if (!r.proc->Start()) {
      round->Violation("setup", "replica " + std::to_string(i) + ": " + r.proc->error());
      return false;
    }
    round->ports.push_back(r.proc->port());
  }
  return true;
}

// A restarted replica may find the SQLite file locked by another replica's
// write while it opens the store (it then exits: "database is locked").
bool RestartWithRetries(SluiceProcess& p, int64_t* failed_starts) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) Clock::Real().SleepMs(500);
    if (p.Restart()) return true;
    ++*failed_starts;
    std::fprintf(stderr, "chaos: restart attempt %d failed: %s\n", attempt + 1, p.error().c_str());
  }
  return false;
}

int64_t Backlog(const std::string& url) {
  HttpResult r = HttpGet(url + "/admin/status", AdminHeaders(), milliseconds(5000));
  if (r.status != 200) return -1;
  simdjson::dom::parser p;
  simdjson::dom::element el;
  int64_t pending = 0, leased = 0;
  if (p.parse(r.body).get(el) != simdjson::SUCCESS ||
      el["queue"]["pending"].get_int64().get(pending) != simdjson::SUCCESS ||
      el["queue"]["leased"].get_int64().get(leased) != simdjson::SUCCESS) {
    return -1;
  }
  return pending + leased;
}

// (An earlier harness always asked replica 0, and read "HTTP 0" for every
// count when its restart failed.)
std::string RunningUrl(Round& round) {
  for (Replica& r : round.replicas) {
    if (r.proc->Running()) return r.proc->url();
  }
  return "";
}

void StopCluster(Round* round) {
  for (Replica& r : round->replicas) {
    if (r.proc->Running()) {
      if (!r.proc->Terminate(std::chrono::seconds(30))) r.proc->Kill();
    }
  }
}

}  // namespace sluice::testing::chaos
