#include "ops/status_report.h"

#include <algorithm>
#include <cstdio>

#include "common/event.h"
#include "common/time.h"
#include "ops/jobs_admin.h"

namespace sluice {

Result<StatusReport> CollectStatus(Store* store, int64_t alive_within_ms) {
  StatusReport r;
  r.store_kind = store->kind();
  SLUICE_ASSIGN_OR_RETURN(r.now_ms, store->NowMs());
  SLUICE_ASSIGN_OR_RETURN(r.queue, store->Stats());
  SLUICE_ASSIGN_OR_RETURN(r.replicas, store->ListReplicas(alive_within_ms));
  std::sort(r.replicas.begin(), r.replicas.end(),
            [](const ReplicaInfo& a, const ReplicaInfo& b) { return a.id < b.id; });
  SLUICE_ASSIGN_OR_RETURN(r.jobs, store->JobStatsByName());
  return r;
}

std::string RenderStatusJson(const StatusReport& r) {
  std::string out = "{\"queue\":{\"pending\":" + std::to_string(r.queue.pending) +
                    ",\"leased\":" + std::to_string(r.queue.leased) +
                    ",\"dead\":" + std::to_string(r.queue.dead) +
                    ",\"oldest_pending_age_ms\":" + std::to_string(r.queue.oldest_pending_age_ms) +
                    "},\"replicas\":[";
  bool first = true;
  for (const ReplicaInfo& rep : r.replicas) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"id\":";
    AppendJsonString(rep.id, &out);
    out += ",\"host\":";
    AppendJsonString(rep.host, &out);
    out += ",\"pid\":" + std::to_string(rep.pid) + ",\"version\":";
    AppendJsonString(rep.version, &out);
    out += ",\"started\":";
    AppendJsonString(FormatIso8601Ms(rep.started_ms), &out);
    out += ",\"heartbeat\":";
    AppendJsonString(FormatIso8601Ms(rep.heartbeat_ms), &out);
    out += ",\"heartbeat_age_ms\":" +
           std::to_string(std::max<int64_t>(0, r.now_ms - rep.heartbeat_ms));
    out += ",\"leases_held\":" + std::to_string(rep.leases_held) + "}";
  }
  out += "],\"jobs\":[";
  for (size_t i = 0; i < r.jobs.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += JobStatsJson(r.jobs[i]);
  }
  out += "],\"store\":";
  AppendJsonString(r.store_kind, &out);
  out += ",\"now\":";
  AppendJsonString(FormatIso8601Ms(r.now_ms), &out);
  out += "}";
  return out;
}

std::string RenderStatusText(const StatusReport& r) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "store: %s (clock %s)\n", r.store_kind.c_str(),
                FormatIso8601Ms(r.now_ms).c_str());
  out += line;
  std::snprintf(line, sizeof line,
                "queue: pending %lld  leased %lld  dead %lld  oldest pending %.1f s\n",
                static_cast<long long>(r.queue.pending), static_cast<long long>(r.queue.leased),
                static_cast<long long>(r.queue.dead),
                static_cast<double>(r.queue.oldest_pending_age_ms) / 1000.0);
  out += line;
  std::snprintf(line, sizeof line, "replicas alive: %zu\n", r.replicas.size());
  out += line;
  if (r.replicas.empty()) return out;
  std::snprintf(line, sizeof line, "  %-32s %-20s %8s %-10s %-24s %9s %7s\n", "ID", "HOST", "PID",
                "VERSION", "STARTED", "HEARTBEAT", "LEASED");
  out += line;
  for (const ReplicaInfo& rep : r.replicas) {
    const double age = static_cast<double>(std::max<int64_t>(0, r.now_ms - rep.heartbeat_ms));
    std::snprintf(line, sizeof line, "  %-32s %-20s %8lld %-10s %-24s %7.1fs %7lld\n",
                  rep.id.c_str(), rep.host.c_str(), static_cast<long long>(rep.pid),
                  rep.version.c_str(), FormatIso8601Ms(rep.started_ms).c_str(), age / 1000.0,
                  static_cast<long long>(rep.leases_held));
    out += line;
  }
  return out;
}

}  // namespace sluice
