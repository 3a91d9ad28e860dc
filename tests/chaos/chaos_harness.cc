#include "chaos/chaos_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "chaos/archive_check.h"
#include "chaos/round_checks.h"
#include "common/event.h"
#include "consumers/archive/archive_consumer.h"
#include "testing/dispatch_receiver.h"
#include "testing/pg_fixture.h"
#include "testing/process.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int64_t kHourMs = 3600 * 1000;
constexpr int64_t kBaseMs = 1793491200000;  // 2026-11-01T00:00:00Z
constexpr int kProjects = 3;
constexpr int kUsersPerProject = 40;
constexpr int kNames = 5;
constexpr int kLoops = 2;
constexpr int kBatch = 50;
constexpr char kAdminToken[] = "chaos-admin-token-0123456789";
constexpr int kMaxViolationsPerKind = 5;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

std::string Project(int p) { return "p" + std::to_string(p); }
std::string WriteKey(int p) { return "wk-chaos-" + std::to_string(p) + "-secret"; }
std::vector<std::pair<std::string, std::string>> AdminHeaders() {
  return {{"Authorization", std::string("Bearer ") + kAdminToken}};
}

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

std::string Body(const std::vector<const SentEvent*>& events) {
  std::string body = "{\"events\":[";
  for (size_t i = 0; i < events.size(); ++i) {
    const SentEvent& e = *events[i];
    if (i) body.push_back(',');
    body.append("{\"insert_id\":");
    AppendJsonString(e.insert_id, &body);
    body.append(",\"event\":");
    AppendJsonString(e.event, &body);
    body.append(",\"user_id\":");
    AppendJsonString(e.user, &body);
    body.append(",\"time\":" + std::to_string(e.time_ms) + "}");
  }
  body.append("]}");
  return body;
}

// Sends a POST over a raw socket and hangs up: `cut` after half the body
// (the server must store nothing), else after the whole request without
// reading the answer (the server may or may not store it).
void RawPostAndHangUp(int port, const std::string& key, const std::string& body, bool cut) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req =
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Authorization: Bearer " +
        key + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    req += cut ? body.substr(0, body.size() / 2) : body;
    size_t off = 0;
    while (off < req.size()) {
      const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    if (!cut) std::this_thread::sleep_for(milliseconds(1));
  }
  ::close(fd);
}

// Sum of a Prometheus metric's samples whose labels contain `filter`.
int64_t MetricSum(const std::string& text, const std::string& name,
                  const std::string& filter = "") {
  int64_t sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    if (!filter.empty() && line.find(filter) == std::string::npos) continue;
    sum += std::llround(std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return sum;
}

struct Metrics {
  int64_t archive = 0, hook = 0, flaky_failures = 0, stuck_failures = 0, long_batches = 0,
          reclaims = 0, fenced = 0, in_flight = 0;
  Metrics& operator+=(const Metrics& o) {
    archive += o.archive;
    hook += o.hook;
    flaky_failures += o.flaky_failures;
    stuck_failures += o.stuck_failures;
    long_batches += o.long_batches;
    reclaims += o.reclaims;
    fenced += o.fenced;
    return *this;
  }
};

bool Scrape(const SluiceProcess& p, Metrics* m) {
  HttpResult r = HttpGet(p.Url("/metrics"), {}, milliseconds(3000));
  if (r.status != 200) return false;
  m->archive = MetricSum(r.body, "sluice_deliveries_total", "consumer=\"archive\"");
  m->hook = MetricSum(r.body, "sluice_deliveries_total", "consumer=\"hook\"");
  m->flaky_failures = MetricSum(r.body, "sluice_failures_total", "consumer=\"flaky\"");
  m->stuck_failures = MetricSum(r.body, "sluice_failures_total", "consumer=\"stuck\"");
  m->long_batches = MetricSum(r.body, "sluice_batch_seconds_count") -
                    MetricSum(r.body, "sluice_batch_seconds_bucket", "le=\"2.5\"");
  m->reclaims = MetricSum(r.body, "sluice_lease_reclaims_total");
  m->fenced = MetricSum(r.body, "sluice_fenced_total");
  m->in_flight = MetricSum(r.body, "sluice_watcher_in_flight");
  return true;
}

// One replica and its metrics: `done` sums the incarnations that were
// killed (their last scrape), `last` is the current one's last scrape.
struct Replica {
  std::unique_ptr<SluiceProcess> proc;
  Metrics done, last;
  bool paused = false, killed = false;
  int64_t resume_at = 0, restart_at = 0;
  int64_t fenced_at_pause = -1;  // >= 0 while a zombie episode awaits its check
  int64_t check_until = 0;
};

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

void Violation(ChaosReport* r, std::map<std::string, int>* kinds, const std::string& kind,
               const std::string& what) {
  if ((*kinds)[kind]++ < kMaxViolationsPerKind) r->violations.push_back(kind + ": " + what);
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

std::string UrlEncode(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out.append(buf);
    }
  }
  return out;
}

// A restarted replica may find the SQLite file locked by another replica's
// write while it opens the store (it then exits: "database is locked"); the
// harness tries again, as a supervisor would, and counts the extra attempts.
bool RestartWithRetries(SluiceProcess& p, int64_t* failed_starts) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(milliseconds(500));
    if (p.Restart()) return true;
    ++*failed_starts;
    std::fprintf(stderr, "chaos: restart attempt %d failed: %s\n", attempt + 1, p.error().c_str());
  }
  return false;
}

}  // namespace

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
  ChaosReport report;
  std::map<std::string, int> kinds;
  TempDir dir;
  const std::string archive_dir = dir.File("archive");

  std::unique_ptr<PgCluster> pg;
  std::string store_url = "sqlite:" + dir.File("sluice.db");
  if (o.postgres) {
    pg = std::make_unique<PgCluster>();
    const std::string err = pg->Start();
    if (!err.empty()) {
      report.violations.push_back("setup: postgres: " + err);
      return report;
    }
    store_url = pg->url();
  }
  DispatchReceiver receiver;
  std::vector<FaultWindow> windows;  // every fault injected, for the receiver's repeats
  const std::string config = dir.File("sluice.toml");
  const std::string config_text =
      ReplicaToml(o, store_url, archive_dir, receiver.ConsumerToml("hook", 6));
  std::ofstream(config) << config_text;

  std::vector<Replica> replicas(o.replicas);
  for (int i = 0; i < o.replicas; ++i) {
    SluiceProcessOptions po;
    po.binary = BinaryFor(config_text);
    po.dir = dir.path();
    po.args = {"--config", config, "--replica-id", "r" + std::to_string(i)};
    po.log_name = "replica-" + std::to_string(i) + ".log";
    replicas[i].proc = std::make_unique<SluiceProcess>(po);
    if (!replicas[i].proc->Start()) {
      report.violations.push_back("setup: replica " + std::to_string(i) + ": " +
                                  replicas[i].proc->error());
      return report;
    }
  }
  std::vector<int> ports;
  for (const Replica& r : replicas) ports.push_back(r.proc->port());

  // ---- workload ----
  const int64_t start = NowMs();
  const int64_t end = start + o.duration_ms;
  std::mutex mu;
  std::map<std::string, SentEvent> events;  // "project/insert_id" -> content
  std::map<std::string, Outcome> outcomes;
  std::atomic<int64_t> requests{0}, sent{0}, cut{0}, abandoned{0}, poison{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < o.clients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937_64 rng(o.seed * 1000 + static_cast<uint64_t>(c));
      std::vector<SentEvent> mine;
      int64_t n = 0;
      int64_t paced = 0;  // events this client sent, for pacing
      while (NowMs() < end) {
        const int p = static_cast<int>(rng() % kProjects);
        const size_t size = 1 + rng() % 40;
        std::vector<SentEvent> batch;
        for (size_t i = 0; i < size; ++i) {
          if (!mine.empty() && std::uniform_real_distribution<double>(0, 1)(rng) < o.dup_rate) {
            const SentEvent& old = mine[rng() % mine.size()];
            if (old.project == p) {
              batch.push_back(old);
              continue;
            }
          }
          SentEvent e;
          e.project = p;
          e.insert_id = "c" + std::to_string(c) + "-" + std::to_string(n++);
          e.event = "event_" + std::to_string(rng() % kNames);
          e.user = "user_" + std::to_string(rng() % kUsersPerProject);
          e.time_ms = kBaseMs + static_cast<int64_t>(rng() % (6 * kHourMs));
          if (o.poison && c < 2 && n == 5) {
            e.event = "poison";
            ++poison;
          }
          batch.push_back(e);
        }
        // No insert_id twice in one request: keep the first.
        std::set<std::string> ids;
        std::vector<const SentEvent*> ptrs;
        for (const SentEvent& e : batch) {
          if (ids.insert(e.insert_id).second) ptrs.push_back(&e);
        }
        const std::string body = Body(ptrs);
        const int port = ports[rng() % ports.size()];
        int kind = 0;  // 0 normal, 1 cut mid-body, 2 abandoned
        if (o.disconnect) {
          const uint64_t roll = rng() % 100;
          kind = roll < 3 ? 1 : roll < 6 ? 2 : 0;
        }
        Outcome got;
        if (kind == 1) {
          RawPostAndHangUp(port, WriteKey(p), body, true);
          got.refused = true;
          ++cut;
        } else if (kind == 2) {
          RawPostAndHangUp(port, WriteKey(p), body, false);
          got.unknown = true;
          ++abandoned;
        } else {
          HttpResult r = HttpPost(
              "http://127.0.0.1:" + std::to_string(port) + "/v1/events", body,
              {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + WriteKey(p)}},
              milliseconds(5000));
          if (r.status == 200) {
            got.acked = true;
          } else if (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429) {
            got.refused = true;
          } else {
            got.unknown = true;  // 0 (cut, refused connection, timeout), 5xx, 429
          }
        }
        ++requests;
        sent += static_cast<int64_t>(ptrs.size());
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const SentEvent* e : ptrs) {
            const std::string key = Project(e->project) + "/" + e->insert_id;
            events.emplace(key, *e);
            Outcome& out = outcomes[key];
            out.acked |= got.acked;
            out.unknown |= got.unknown;
            out.refused |= got.refused;
          }
        }
        for (const SentEvent* e : ptrs) {
          if (mine.size() < 5000 && e->insert_id.rfind("c" + std::to_string(c) + "-", 0) == 0) {
            mine.push_back(*e);
          }
        }
        if (got.unknown && !got.acked) std::this_thread::sleep_for(milliseconds(20));
        if (o.client_pause_ms > 0) std::this_thread::sleep_for(milliseconds(o.client_pause_ms));
        if (o.events_per_second > 0) {
          // Pace this client to its share of the offered load.
          paced += static_cast<int64_t>(ptrs.size());
          const int64_t due = start + paced * 1000 * o.clients / o.events_per_second;
          const int64_t wait = due - NowMs();
          if (wait > 0) std::this_thread::sleep_for(milliseconds(std::min<int64_t>(wait, 1000)));
        }
      }
    });
  }

  // ---- faults + metric scraping ----
  std::mt19937_64 frng(o.seed);
  int64_t next_fault = start + o.fault_interval_ms;
  int rotation = 0;
  ArchiveWatch archive_watch(archive_dir);
  int64_t next_archive_poll = 0;
  auto poll_archive = [&] {
    std::vector<std::string> lossy;
    archive_watch.Poll(&lossy);
    for (const std::string& what : lossy) {
      if (report.notes.size() < 10) report.notes.push_back("archive rewrite: " + what);
    }
    next_archive_poll = NowMs() + 1000;
  };
  auto scrape_all = [&] {
    for (Replica& r : replicas) {
      if (r.paused || r.killed) continue;
      Metrics m;
      if (Scrape(*r.proc, &m)) r.last = m;
    }
    if (NowMs() >= next_archive_poll) poll_archive();
  };
  auto check_zombies = [&](bool final) {
    for (size_t i = 0; i < replicas.size(); ++i) {
      Replica& r = replicas[i];
      if (r.fenced_at_pause < 0 || r.paused || r.killed) continue;
      if (r.last.fenced > r.fenced_at_pause) {
        r.fenced_at_pause = -1;
      } else if (final || NowMs() > r.check_until) {
        ++report.zombies_not_fenced;
        Violation(&report, &kinds, "zombie",
                  "replica r" + std::to_string(i) +
                      " was stopped past its lease with batches in flight, and after SIGCONT "
                      "none of its writes was refused (sluice_fenced_total stayed " +
                      std::to_string(r.fenced_at_pause) + ")");
        r.fenced_at_pause = -1;
      }
    }
  };
  int64_t requests_at_scrape = 0;  // requests answered by the previous turn (~200 ms ago)
  while (NowMs() < end) {
    requests_at_scrape = requests.load();
    std::this_thread::sleep_for(milliseconds(200));
    scrape_all();
    const int64_t now = NowMs();
    // Resumes first, and no restart while a replica is stopped: a replica
    // stopped inside a SQLite write transaction keeps the write lock, and a
    // restart (blocking this loop) would wait for that lock until its own
    // startup gave up — the first harness lost replica 0 that way at 10:19.
    bool any_paused = false;
    for (Replica& r : replicas) {
      if (r.paused && now >= r.resume_at) {
        r.proc->Resume();
        r.paused = false;
        r.check_until = now + 5000;
      }
      any_paused |= r.paused;
    }
    for (size_t i = 0; i < replicas.size(); ++i) {
      Replica& r = replicas[i];
      if (r.killed && now >= r.restart_at && !any_paused) {
        if (!RestartWithRetries(*r.proc, &report.failed_starts)) {
          Violation(&report, &kinds, "setup",
                    "restart r" + std::to_string(i) + " failed: " + r.proc->error());
        }
        r.killed = false;
        r.last = Metrics{};
      }
    }
    check_zombies(false);
    if (now < next_fault) continue;
    next_fault = now + o.fault_interval_ms;
    std::vector<int> kinds_on;
    if (o.kill) kinds_on.push_back(0);
    if (o.pause) kinds_on.push_back(1);
    if (o.pg_restart && pg) kinds_on.push_back(2);
    if (o.pg_immediate && pg) kinds_on.push_back(3);
    if (o.pg_kill9 && pg) kinds_on.push_back(4);
    if (kinds_on.empty()) continue;
    const int fault = kinds_on[rotation++ % kinds_on.size()];
    std::vector<size_t> up;
    for (size_t i = 0; i < replicas.size(); ++i) {
      if (!replicas[i].paused && !replicas[i].killed && replicas[i].fenced_at_pause < 0) {
        up.push_back(i);
      }
    }
    // Keep one replica serving when there are several.
    if (up.empty() || (fault < 2 && replicas.size() > 1 && up.size() < 2)) continue;
    const size_t victim_index = up[frng() % up.size()];
    Replica& victim = replicas[victim_index];
    if (fault == 0) {
      Metrics m;
      if (Scrape(*victim.proc, &m)) victim.last = m;
      // Exercised when the victim held leases: they expire under it.
      if (HeldLeases(store_url, "r" + std::to_string(victim_index) + "/%") > 0) {
        ++report.kills_with_leases;
      }
      windows.push_back(FaultWindow{"kill -9", NowMs(), NowMs()});
      victim.proc->Kill();
      victim.done += victim.last;
      victim.last = Metrics{};
      victim.killed = true;
      victim.restart_at = NowMs() + 1000;
      ++report.kills;
    } else if (fault == 1) {
      Metrics m;
      if (!Scrape(*victim.proc, &m)) continue;
      victim.last = m;
      victim.proc->Pause();
      victim.paused = true;
      victim.resume_at = NowMs() + o.lease_ttl_ms + 1500;
      ++report.pauses;
      windows.push_back(FaultWindow{"pause", NowMs(), victim.resume_at});
      // A zombie only if it holds leases now that it is stopped: ask the
      // store (the in-flight gauge was scraped before the stop, and a short
      // batch may have finished in between); the gauge only if that fails.
      const int64_t held = HeldLeases(store_url, "r" + std::to_string(victim_index) + "/%");
      if (!o.postgres && SqliteWriteLocked(store_url)) {
        // Stopped inside a write transaction: it keeps SQLite's write lock, so
        // no other replica can claim its rows (or write at all) until it
        // resumes and commits — its commit is then correct and not fenced.
        ++report.lock_holding_pauses;
      } else if (held >= 0 ? held > 0 : m.in_flight > 0) {
        victim.fenced_at_pause = m.fenced;
        ++report.zombie_episodes;
      }
    } else {
      // Exercised inside the load: leases held and clients sending.
      const bool in_load = HeldLeases(store_url, "%") > 0 && requests.load() > requests_at_scrape;
      FaultWindow w{fault == 2 ? "pg fast restart" : fault == 3 ? "pg immediate" : "pg kill -9",
                    NowMs(), 0};
      std::string err = fault == 2 ? pg->StopFast() : fault == 3 ? pg->StopImmediate()
                                                                 : pg->KillPostmaster();
      std::this_thread::sleep_for(milliseconds(fault == 2 ? 1000 : 500));
      if (err.empty()) err = pg->StartAgain();
      if (!err.empty()) Violation(&report, &kinds, "setup", w.cause + ": " + err);
      w.end_ms = NowMs();
      windows.push_back(w);
      report.pg_stops_in_load += in_load ? 1 : 0;
      ++(fault == 2 ? report.pg_restarts : fault == 3 ? report.pg_immediate_stops : report.pg_kills);
    }
  }
  for (auto& t : clients) t.join();
  // Bring everyone back: the stopped ones first (see above).
  for (Replica& r : replicas) {
    if (r.paused) {
      r.proc->Resume();
      r.paused = false;
      r.check_until = NowMs() + 5000;
    }
  }
  for (size_t i = 0; i < replicas.size(); ++i) {
    Replica& r = replicas[i];
    if (r.killed) {
      if (!RestartWithRetries(*r.proc, &report.failed_starts)) {
        Violation(&report, &kinds, "setup", "restart failed: " + r.proc->error());
      }
      r.killed = false;
    }
  }
  report.duration_ms = NowMs() - start;

  // ---- drain ----
  // Drain and check through a replica that is up (an earlier harness always
  // asked replica 0, and read "HTTP 0" for every count when its restart failed).
  std::string url;
  for (Replica& r : replicas) {
    if (r.proc->Running()) {
      url = r.proc->url();
      break;
    }
  }
  if (url.empty()) {
    Violation(&report, &kinds, "setup", "no replica is running after the workload");
    return report;
  }
  const bool drained = WaitUntil(
      [&] {
        scrape_all();
        check_zombies(false);
        return Backlog(url) == 0;
      },
      std::chrono::seconds(180), milliseconds(250));
  if (!drained) {
    Violation(
        &report, &kinds, "drain",
        "queue not empty 180 s after the workload (backlog " + std::to_string(Backlog(url)) + ")");
  }
  WaitUntil(
      [&] {
        scrape_all();
        bool waiting = false;
        for (const Replica& r : replicas) waiting |= r.fenced_at_pause >= 0;
        if (waiting) check_zombies(false);
        return !waiting;
      },
      std::chrono::seconds(10), milliseconds(200));
  scrape_all();
  check_zombies(true);
  poll_archive();
  report.archive_rewrites = archive_watch.rewrites();
  report.archive_rewrites_lossy = archive_watch.lossy();

  // ---- check ----
  report.requests = requests.load();
  report.events_sent = sent.load();
  report.cut_requests = cut.load();
  report.abandoned_requests = abandoned.load();
  report.poison_events = poison.load();
  std::string archive_error;
  const std::map<std::string, std::set<int64_t>> archived =
      ReadArchive(archive_dir, &archive_error);
  if (!archive_error.empty()) Violation(&report, &kinds, "archive", archive_error);
  report.stored_events = static_cast<int64_t>(archived.size());
  // A replacement that dropped an event whose line is in no other object has
  // erased it from the archive: counted in users/counters (if its batch was
  // completed), missing from S — a "lost" or a count mismatch below, with
  // its cause named here.
  {
    std::set<int64_t> archived_seqs;
    for (const auto& [key, seqs] : archived) archived_seqs.insert(seqs.begin(), seqs.end());
    for (const auto& [seq, e] : archive_watch.erased()) {
      if (archived_seqs.count(seq)) continue;
      ++report.archive_erased;
      Violation(&report, &kinds, "archive erased",
                e.key + " (seq " + std::to_string(seq) + ") was archived in " + e.object +
                    ", which a later delivery replaced without it; it is in no other object");
    }
  }
  for (const auto& [key, out] : outcomes) {
    if (out.acked) {
      ++report.acked_events;
    } else if (out.unknown) {
      ++report.unknown_events;
    } else {
      ++report.refused_events;
    }
    const bool stored = archived.count(key) > 0;
    if (out.acked && !stored) {
      ++report.lost;
      Violation(&report, &kinds, "lost", key + " was acknowledged but is not in the archive");
    }
    if (!out.acked && !out.unknown && stored) {
      ++report.phantom;
      Violation(&report, &kinds, "phantom", key + " was refused but is in the archive");
    }
  }
  for (const auto& [key, seqs] : archived) {
    if (seqs.size() > 1) {
      ++report.stored_twice;
      Violation(&report, &kinds, "stored twice",
                key + " is in the queue under " + std::to_string(seqs.size()) + " seqs (" +
                    std::to_string(*seqs.begin()) + ", " + std::to_string(*seqs.rbegin()) +
                    "): deduplication by insert_id failed");
    }
    if (!events.count(key)) {
      ++report.phantom;
      Violation(&report, &kinds, "phantom", key + " in the archive was never sent");
    }
  }

  // Expected aggregates of the stored set, each event once.
  std::map<std::pair<int, std::string>, std::map<std::string, int64_t>> user_counts;
  std::map<std::tuple<int, std::string, int64_t>, int64_t> hour_counts;
  std::map<std::tuple<int, std::string, int64_t>, std::set<std::string>> hour_users;
  std::set<std::string> poison_keys;
  for (const auto& [key, seqs] : archived) {
    auto it = events.find(key);
    if (it == events.end()) continue;
    const SentEvent& e = it->second;
    // Stored twice is reported above; the aggregates then count it twice.
    const int64_t copies = static_cast<int64_t>(seqs.size());
    user_counts[{e.project, e.user}][e.event] += copies;
    const int64_t hour = e.time_ms / kHourMs * kHourMs;
    hour_counts[{e.project, e.event, hour}] += copies;
    hour_users[{e.project, e.event, hour}].insert(e.user);
    if (e.event == "poison") poison_keys.insert(key);
  }
  simdjson::dom::parser parser;
  for (int p = 0; p < kProjects; ++p) {
    for (int u = 0; u < kUsersPerProject; ++u) {
      const std::string user = "user_" + std::to_string(u);
      auto it = user_counts.find({p, user});
      HttpResult r =
          HttpGet(url + "/v1/users/" + UrlEncode(user) + "?project=" + Project(p), AdminHeaders());
      if (it == user_counts.end()) {
        if (r.status != 404) {
          ++report.count_mismatches;
          Violation(&report, &kinds, "count",
                    Project(p) + "/" + user + ": expected no profile, got HTTP " +
                        std::to_string(r.status));
        }
        continue;
      }
      int64_t want_total = 0;
      for (const auto& [name, c] : it->second) want_total += c;
      simdjson::dom::element el;
      int64_t got_total = -1;
      if (r.status != 200 || parser.parse(r.body).get(el) != simdjson::SUCCESS ||
          el["events"].get_int64().get(got_total) != simdjson::SUCCESS) {
        ++report.count_mismatches;
        Violation(&report, &kinds, "count",
                  Project(p) + "/" + user + ": HTTP " + std::to_string(r.status) + " " + r.body);
        continue;
      }
      if (got_total != want_total) {
        ++report.count_mismatches;
        Violation(&report, &kinds, "count",
                  Project(p) + "/" + user + ": events " + std::to_string(got_total) + ", stored " +
                      std::to_string(want_total));
      }
      for (const auto& [name, c] : it->second) {
        int64_t got = -1;
        if (el["event_counts"][name].get_int64().get(got)) {
        }
        if (got != c) {
          ++report.count_mismatches;
          // Which sent events of this user and name are not in the archive, and
          // what did their clients see? (Tells a missing archive line from a
          // double count.)
          std::string unarchived;
          for (const auto& [key, e] : events) {
            if (e.project != p || e.user != user || e.event != name || archived.count(key)) {
              continue;
            }
            const Outcome& out = outcomes.at(key);
            unarchived += " " + key + (out.acked ? "[acked]" : "") +
                          (out.unknown ? "[unknown]" : "") + (out.refused ? "[refused]" : "");
          }
          Violation(&report, &kinds, "count",
                    Project(p) + "/" + user + " " + name + ": " + std::to_string(got) +
                        ", stored " + std::to_string(c) + "; sent but not archived:" +
                        (unarchived.empty() ? std::string(" none") : unarchived));
        }
      }
    }
    std::vector<std::string> names;
    for (int k = 0; k < kNames; ++k) names.push_back("event_" + std::to_string(k));
    if (o.poison) names.push_back("poison");
    for (const std::string& name : names) {
      HttpResult r = HttpGet(url + "/v1/counters?project=" + Project(p) + "&event=" + name +
                                 "&bucket=hour&from=" + std::to_string(kBaseMs) +
                                 "&to=" + std::to_string(kBaseMs + 7 * kHourMs),
                             AdminHeaders());
      simdjson::dom::element el;
      simdjson::dom::array series;
      if (r.status != 200 || parser.parse(r.body).get(el) != simdjson::SUCCESS ||
          el["series"].get_array().get(series) != simdjson::SUCCESS) {
        ++report.count_mismatches;
        Violation(&report, &kinds, "count",
                  "counters " + Project(p) + "/" + name + ": HTTP " + std::to_string(r.status));
        continue;
      }
      std::map<int64_t, std::pair<int64_t, int64_t>> got;
      for (auto pt : series) {
        int64_t ts = 0, count = 0, users = 0;
        if (pt["ts"].get_int64().get(ts)) {
        }
        if (pt["count"].get_int64().get(count)) {
        }
        if (pt["users"].get_int64().get(users)) {
        }
        if (count != 0) got[ts] = {count, users};
      }
      std::map<int64_t, std::pair<int64_t, int64_t>> want;
      for (const auto& [k, c] : hour_counts) {
        if (std::get<0>(k) != p || std::get<1>(k) != name) continue;
        want[std::get<2>(k)] = {c, static_cast<int64_t>(hour_users.at(k).size())};
      }
      for (const auto& [ts, cu] : want) {
        auto g = got.find(ts);
        if (g == got.end() || g->second != cu) {
          ++report.count_mismatches;
          Violation(&report, &kinds, "count",
                    "counter " + Project(p) + "/" + name + "@" + std::to_string(ts) + ": got " +
                        (g == got.end() ? std::string("none")
                                        : std::to_string(g->second.first) + "/" +
                                              std::to_string(g->second.second)) +
                        ", stored " + std::to_string(cu.first) + "/" + std::to_string(cu.second));
        }
      }
      for (const auto& [ts, cu] : got) {
        if (!want.count(ts)) {
          ++report.count_mismatches;
          Violation(&report, &kinds, "count",
                    "counter " + Project(p) + "/" + name + "@" + std::to_string(ts) + ": " +
                        std::to_string(cu.first) + " for no stored event");
        }
      }
    }
  }

  // Dead letters: exactly the poison events, each with its error.
  {
    HttpResult r = HttpGet(url + "/admin/dlq?limit=10000", AdminHeaders());
    simdjson::dom::element el;
    simdjson::dom::array dead;
    std::set<std::string> dead_keys;
    if (r.status != 200 || parser.parse(r.body).get(el) != simdjson::SUCCESS ||
        el["dead"].get_array().get(dead) != simdjson::SUCCESS) {
      Violation(&report, &kinds, "dlq", "GET /admin/dlq: HTTP " + std::to_string(r.status));
    } else {
      for (auto d : dead) {
        std::string_view project, id, error, name;
        if (d["project"].get_string().get(project)) {
        }
        if (d["insert_id"].get_string().get(id)) {
        }
        if (d["last_error"].get_string().get(error)) {
        }
        if (d["body"]["event"].get_string().get(name)) {
        }
        const std::string key = std::string(project) + "/" + std::string(id);
        dead_keys.insert(key);
        if (name != "poison") {
          ++report.collateral_dead;
          Violation(&report, &kinds, "dead",
                    key + " (" + std::string(name) + ") is dead: " + std::string(error));
        } else if (std::string(error).find("poison") == std::string::npos) {
          Violation(&report, &kinds, "dead",
                    key + " is dead without its error: " + std::string(error));
        }
      }
    }
    for (const std::string& key : poison_keys) {
      if (!dead_keys.count(key)) {
        ++report.poison_not_dead;
        Violation(&report, &kinds, "dead", "poison event " + key + " is not dead");
      }
    }
  }

  // Dispatch figures.
  Metrics total;
  for (const Replica& r : replicas) {
    total += r.done;
    total += r.last;
  }
  report.archive_deliveries = total.archive;
  report.duplicate_dispatches = total.archive - report.stored_events;
  report.reclaimed_events = total.reclaims;
  report.flaky_failures = total.flaky_failures;
  report.stuck_failures = total.stuck_failures;
  report.long_batches = total.long_batches;
  report.fenced = total.fenced;
  // Independent of sluice's own bookkeeping (its "reclaimed" flag is what the
  // naive claim gets wrong): a second dispatch to the archive needs a lease
  // that expired, and only the faults make leases expire — each kill or pause
  // strands at most the victim's in-flight leases, each PostgreSQL restart at
  // most every replica's. Duplicates beyond that bound are unexplained.
  // A PostgreSQL crash also takes the commits that did not wait for the WAL
  // flush (lease writes: done bits, completes) of the last 3 x
  // wal_writer_delay (600 ms): up to 4 more batches per loop at 150 ms each.
  report.fault_bound = (report.kills + report.pauses + report.pg_restarts * o.replicas +
                        (report.pg_immediate_stops + report.pg_kills) * o.replicas * 5) *
                       kLoops * kBatch;
  report.unexplained_dispatches =
      std::max<int64_t>(0, report.duplicate_dispatches - report.fault_bound);
  if (report.unexplained_dispatches > 0) {
    Violation(&report, &kinds, "dispatch",
              std::to_string(report.duplicate_dispatches) +
                  " duplicate archive dispatches; the faults injected explain at most " +
                  std::to_string(report.fault_bound) + " (sluice itself counted " +
                  std::to_string(report.reclaimed_events) + " reclaims)");
  }
  if (report.acked_events == 0) Violation(&report, &kinds, "setup", "no event acknowledged");
  for (const auto& [kind, what] :
       CheckReceiver(o, receiver, windows, archived, total.hook, &report)) {
    Violation(&report, &kinds, kind, what);
  }
  for (const auto& [kind, what] : CheckFaultsExercised(o, &report)) {
    Violation(&report, &kinds, kind, what);
  }

  for (Replica& r : replicas) {
    if (r.proc->Running()) {
      if (!r.proc->Terminate(std::chrono::seconds(30))) r.proc->Kill();
    }
  }
  // Where leases were fenced, in the replicas' own words (the first few), with
  // what the log said about the same token before.
  for (size_t i = 0; i < replicas.size(); ++i) {
    std::vector<std::string> lines;
    {
      std::istringstream log(replicas[i].proc->ReadLog());
      std::string line;
      while (std::getline(log, line)) lines.push_back(line);
    }
    for (size_t k = 0; k < lines.size() && report.lease_log.size() < 12; ++k) {
      if (lines[k].find("watcher fenced") == std::string::npos) continue;
      const size_t at = lines[k].find("token=");
      const std::string token =
          at == std::string::npos ? "" : lines[k].substr(at, lines[k].find(' ', at) - at);
      for (size_t j = k > 400 ? k - 400 : 0; j < k && !token.empty(); ++j) {
        if (lines[j].find(token + " ") != std::string::npos ||
            lines[j].find(token + "\"") != std::string::npos) {
          report.lease_log.push_back("r" + std::to_string(i) + ": " + lines[j].substr(0, 240));
        }
      }
      report.lease_log.push_back("r" + std::to_string(i) + ": " + lines[k].substr(0, 240));
    }
  }
  if (!report.violations.empty() && std::getenv("CHAOS_KEEP_LOGS") != nullptr) {
    for (Replica& r : replicas) std::fprintf(stderr, "%s\n", r.proc->ReadLog().c_str());
  }
  return report;
}

}  // namespace sluice::testing
