#include "chaos/run_summary.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/event.h"

namespace sluice::testing {
namespace {

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string Str(const std::string& s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

std::string StrList(const std::vector<std::string>& v, size_t max) {
  std::string out = "[";
  for (size_t i = 0; i < v.size() && i < max; ++i) out += (i ? "," : "") + Str(v[i]);
  return out + "]";
}

}  // namespace

double LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  in >> one;
  return one;
}

std::string WriteRunSummary(const std::string& round, const ChaosOptions& o,
                            const ChaosReport& r, double load_before) {
  const char* dir = std::getenv("CHAOS_RESULTS_DIR");
  if (dir == nullptr || *dir == '\0') return "";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string src = SLUICE_SOURCE_DIR;
  const std::string commit = Run("git -C '" + src + "' rev-parse --short=12 HEAD 2>/dev/null");
  // Uncommitted changes to what builds and runs the round (the code, the
  // tests, the scripts); documentation and the results themselves aside.
  const std::string changed =
      Run("git -C '" + src +
          "' status --porcelain --untracked-files=no -- src tests scripts bench CMakeLists.txt "
          "Makefile ':(exclude)tests/chaos/results' 2>/dev/null | head -5");
  const char* command = std::getenv("CHAOS_COMMAND");
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
#if defined(__SANITIZE_ADDRESS__)
  const char* build = "ASan+UBSan test build";
#else
  const char* build = "test build without sanitizers";
#endif
  std::vector<std::string> faults;
  if (o.kill) faults.push_back("kill");
  if (o.pause) faults.push_back("pause");
  if (o.postgres && o.pg_restart) faults.push_back("pg_restart");
  if (o.postgres && o.pg_immediate) faults.push_back("pg_immediate");
  if (o.postgres && o.pg_kill9) faults.push_back("pg_kill9");
  if (o.hang) faults.push_back("hang");
  if (o.flaky) faults.push_back("flaky consumer");
  if (o.disconnect) faults.push_back("cut/abandoned requests");
  if (!o.store_toml.empty()) faults.push_back("control: " + o.store_toml.substr(0, o.store_toml.find('\n')));

  std::ostringstream j;
  j << "{\n  \"round\": " << Str(round) << ",\n  \"date\": " << Str(date)
    << ",\n  \"commit\": " << Str(commit) << ",\n  \"tree\": "
    << Str(changed.empty() ? "clean" : "modified: " + changed)
    << ",\n  \"command\": " << Str(command != nullptr ? command : "ctest (CHAOS_SECONDS unset)")
    << ",\n  \"build\": " << Str(build) << ",\n  \"load_before\": " << load_before
    << ",\n  \"load_after\": " << LoadAverage() << ",\n  \"store\": "
    << Str(o.postgres ? "postgres" : "sqlite") << ",\n  \"replicas\": " << o.replicas
    << ",\n  \"clients\": " << o.clients << ",\n  \"events_per_second\": " << o.events_per_second
    << ",\n  \"faults\": " << StrList(faults, 20) << ",\n  \"passed\": "
    << (r.violations.empty() ? "true" : "false") << ",\n  \"figures\": {";
  const std::pair<const char*, int64_t> figures[] = {
      {"duration_ms", r.duration_ms},
      {"requests", r.requests},
      {"events_sent", r.events_sent},
      {"acked_events", r.acked_events},
      {"unknown_events", r.unknown_events},
      {"refused_events", r.refused_events},
      {"stored_events", r.stored_events},
      {"kills", r.kills},
      {"kills_with_leases", r.kills_with_leases},
      {"pauses", r.pauses},
      {"zombie_episodes", r.zombie_episodes},
      {"lock_holding_pauses", r.lock_holding_pauses},
      {"pg_restarts", r.pg_restarts},
      {"pg_immediate_stops", r.pg_immediate_stops},
      {"pg_kills", r.pg_kills},
      {"pg_stops_in_load", r.pg_stops_in_load},
      {"cut_requests", r.cut_requests},
      {"abandoned_requests", r.abandoned_requests},
      {"failed_starts", r.failed_starts},
      {"poison_events", r.poison_events},
      {"flaky_failures", r.flaky_failures},
      {"stuck_failures", r.stuck_failures},
      {"long_batches", r.long_batches},
      {"lost", r.lost},
      {"phantom", r.phantom},
      {"count_mismatches", r.count_mismatches},
      {"stored_twice", r.stored_twice},
      {"collateral_dead", r.collateral_dead},
      {"poison_not_dead", r.poison_not_dead},
      {"zombies_not_fenced", r.zombies_not_fenced},
      {"archive_rewrites", r.archive_rewrites},
      {"archive_rewrites_lossy", r.archive_rewrites_lossy},
      {"archive_erased", r.archive_erased},
      {"archive_deliveries", r.archive_deliveries},
      {"duplicate_dispatches", r.duplicate_dispatches},
      {"fault_bound", r.fault_bound},
      {"unexplained_dispatches", r.unexplained_dispatches},
      {"reclaimed_events", r.reclaimed_events},
      {"fenced", r.fenced},
      {"received", r.received},
      {"received_distinct", r.received_distinct},
      {"received_repeats", r.received_repeats},
      {"receiver_unexplained", r.receiver_unexplained},
      {"receiver_missing", r.receiver_missing},
      {"hook_deliveries", r.hook_deliveries},
  };
  bool first = true;
  for (const auto& [name, value] : figures) {
    j << (first ? "\n    " : ",\n    ") << Str(name) << ": " << value;
    first = false;
  }
  j << "\n  },\n  \"redelivery_causes\": " << Str(r.redelivery_causes)
    << ",\n  \"faults_not_exercised\": " << StrList(r.faults_not_exercised, 10)
    << ",\n  \"violations\": " << StrList(r.violations, 10) << "\n}\n";
  const std::string path = std::string(dir) + "/" + round + ".json";
  std::ofstream out(path);
  out << j.str();
  if (!out) {
    std::fprintf(stderr, "chaos: cannot write %s\n", path.c_str());
    return "";
  }
  return path;
}

}  // namespace sluice::testing
