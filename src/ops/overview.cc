#include "ops/overview.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <map>

#include "common/event.h"
#include "common/time.h"
#include "ops/jobs_admin.h"

namespace sluice {
namespace {

// Each probe beyond the head scan stands for this many seqs.
double SampleScale(const BacklogScan& scan) {
  return scan.samples_taken > 0
             ? static_cast<double>(scan.sample_span) / static_cast<double>(scan.samples_taken)
             : 0.0;
}

int64_t Scaled(int64_t hits, double scale) {
  return static_cast<int64_t>(std::llround(static_cast<double>(hits) * scale));
}

// True when the figures are counts, not estimates: the head scan saw every
// live row, or the probes covered every seq behind it.
bool Exact(const BacklogScan& scan) {
  return scan.live_complete || scan.samples_taken == scan.sample_span;
}

void AppendOptionalMs(int64_t v, std::string* out) {
  *out += v < 0 ? std::string("null") : std::to_string(v);
}

std::string Seconds(int64_t ms) {
  char buf[32];
  if (ms < 0) return "-";
  if (ms < 60000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3600000) {
    std::snprintf(buf, sizeof buf, "%.1fm", static_cast<double>(ms) / 60000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fh", static_cast<double>(ms) / 3600000.0);
  }
  return buf;
}

}  // namespace

QueueView ComputeQueue(const BacklogScan& scan, int64_t scan_limit) {
  QueueView q;
  q.scanned = scan.live_scanned;
  q.scan_limit = scan_limit;
  q.samples = scan.samples_taken;
  q.exact = Exact(scan);
  int64_t hits = 0;
  for (const MaskGroup& g : scan.sampled) hits += g.events;
  q.live = scan.live_scanned + Scaled(hits, SampleScale(scan));
  q.leased = scan.leased_total;
  q.pending = std::max<int64_t>(0, q.live - q.leased);
  for (const MaskGroup& g : scan.dead) q.dead += g.events;
  q.dead_exact = scan.dead_complete;
  int64_t oldest = 0;
  for (const auto* groups : {&scan.live, &scan.sampled}) {
    if (oldest != 0) break;  // the head scan has the oldest, when it has any
    for (const MaskGroup& g : *groups) {
      if (g.oldest_pending_ms > 0 && (oldest == 0 || g.oldest_pending_ms < oldest)) {
        oldest = g.oldest_pending_ms;
      }
    }
  }
  q.oldest_pending_age_ms = oldest > 0 ? std::max<int64_t>(0, scan.now_ms - oldest) : 0;
  return q;
}

std::vector<ConsumerBacklog> ComputeBacklogs(const BacklogScan& scan,
                                             const std::vector<ConsumerSpec>& consumers,
                                             int64_t delay_warning_ms) {
  const double scale = SampleScale(scan);
  std::vector<ConsumerBacklog> out;
  for (const ConsumerSpec& spec : consumers) {
    ConsumerBacklog c;
    c.spec = spec;
    int64_t oldest = 0;
    int64_t next_visible = 0;
    for (const MaskGroup& g : scan.live) {
      if ((g.done_mask & spec.bit) != 0) continue;
      c.counted += g.events;
      c.leased += g.leased;
      c.waiting += g.waiting;
      if (g.oldest_ms > 0 && (oldest == 0 || g.oldest_ms < oldest)) oldest = g.oldest_ms;
      if (g.next_visible_ms > 0 && (next_visible == 0 || g.next_visible_ms < next_visible)) {
        next_visible = g.next_visible_ms;
      }
    }
    c.oldest_exact = oldest != 0 || scan.live_complete;
    // Beyond the head: each probe that hit a row lacking the bit stands for
    // `scale` seqs. The earliest such probe is within one stride of the
    // consumer's oldest event there.
    int64_t beyond_hits = 0;
    int64_t beyond_leased = 0;
    int64_t beyond_waiting = 0;
    int64_t beyond_oldest = 0;
    for (const MaskGroup& g : scan.sampled) {
      if ((g.done_mask & spec.bit) != 0) continue;
      beyond_hits += g.events;
      beyond_leased += g.leased;
      beyond_waiting += g.waiting;
      if (g.oldest_ms > 0 && (beyond_oldest == 0 || g.oldest_ms < beyond_oldest)) {
        beyond_oldest = g.oldest_ms;
      }
      if (g.next_visible_ms > 0 && (next_visible == 0 || g.next_visible_ms < next_visible)) {
        next_visible = g.next_visible_ms;
      }
    }
    c.exact = Exact(scan);
    c.backlog = c.counted + Scaled(beyond_hits, scale);
    c.leased += Scaled(beyond_leased, scale);
    c.waiting += Scaled(beyond_waiting, scale);
    if (oldest == 0 && beyond_oldest != 0) {
      oldest = beyond_oldest;
      c.oldest_exact = scan.samples_taken == scan.sample_span;
    }
    if (oldest != 0) {
      c.oldest_age_ms = std::max<int64_t>(0, scan.now_ms - oldest);
    } else {
      // Nothing lacking the bit was seen: none left, unless the probes could
      // have missed a few (then unknown).
      c.oldest_age_ms = Exact(scan) ? 0 : -1;
    }
    c.next_retry_in_ms = next_visible > 0 ? std::max<int64_t>(0, next_visible - scan.now_ms) : 0;
    for (const MaskGroup& g : scan.dead) {
      if ((g.done_mask & spec.bit) == 0) c.dead += g.events;
    }
    c.dead_exact = scan.dead_complete;
    c.delayed = c.oldest_age_ms > delay_warning_ms;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<ConsumerSpec> MergeConsumers(const std::vector<ConsumerSpec>& local,
                                         const std::vector<ReplicaView>& replicas) {
  std::vector<ConsumerSpec> out = local;
  std::map<std::string, bool> seen;
  for (const ConsumerSpec& c : local) seen[c.name] = true;
  std::vector<ConsumerSpec> extra;
  for (const ReplicaView& r : replicas) {
    if (r.stale || !r.has_stats) continue;
    for (const ConsumerActivity& a : r.stats.consumers) {
      if (seen[a.spec.name] || a.spec.bit == 0) continue;
      seen[a.spec.name] = true;
      extra.push_back(a.spec);
    }
  }
  std::sort(extra.begin(), extra.end(),
            [](const ConsumerSpec& a, const ConsumerSpec& b) { return a.name < b.name; });
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

void AddFleetActivity(Overview* o) {
  o->bucket_ms = kActivityBucketMs;
  o->series_end_ms = 0;
  for (const ReplicaView& r : o->replicas) {
    if (!r.stale && r.has_stats && r.stats.bucket_ms == kActivityBucketMs) {
      o->series_end_ms = std::max(o->series_end_ms, r.stats.end_ms);
    }
  }
  o->ingested.assign(kActivityBuckets, 0);
  o->processed.assign(kActivityBuckets, 0);
  std::map<std::string, ConsumerBacklog*> by_name;
  for (ConsumerBacklog& c : o->consumers) by_name[c.spec.name] = &c;
  for (const ReplicaView& r : o->replicas) {
    if (r.stale || !r.has_stats) continue;
    if (r.stats.bucket_ms == kActivityBucketMs && o->series_end_ms > 0) {
      // Align by bucket end time: the replicas' wall clocks agree to within a
      // bucket or so, which is all a 5-minute chart needs.
      auto add = [&](const std::vector<int64_t>& from, std::vector<int64_t>* to) {
        const int64_t n = static_cast<int64_t>(from.size());
        for (int64_t j = 0; j < n; ++j) {
          const int64_t end = r.stats.end_ms - (n - 1 - j) * kActivityBucketMs;
          const int64_t back = (o->series_end_ms - end) / kActivityBucketMs;
          const int64_t at = kActivityBuckets - 1 - back;
          if (at >= 0 && at < kActivityBuckets) (*to)[static_cast<size_t>(at)] += from[j];
        }
      };
      add(r.stats.ingested, &o->ingested);
      add(r.stats.processed, &o->processed);
    }
    for (const ConsumerActivity& a : r.stats.consumers) {
      auto it = by_name.find(a.spec.name);
      if (it == by_name.end()) continue;
      it->second->delivered += a.delivered;
      it->second->failed += a.failed;
      it->second->retry_after_ms = std::max(it->second->retry_after_ms, a.retry_after_ms);
    }
  }
}

Result<Overview> CollectOverview(Store* store, const std::vector<ConsumerSpec>& local,
                                 const OverviewOptions& options) {
  Overview o;
  o.store_kind = store->kind();
  o.delay_warning_ms = options.delay_warning_ms;
  SLUICE_ASSIGN_OR_RETURN(BacklogScan scan, store->ScanBacklog(options.scan));
  SLUICE_ASSIGN_OR_RETURN(std::vector<ReplicaInfo> replicas,
                          store->ListReplicas(std::max(options.list_within_ms,
                                                       options.alive_within_ms)));
  o.now_ms = scan.now_ms;
  for (ReplicaInfo& info : replicas) {
    ReplicaView v;
    v.heartbeat_age_ms = std::max<int64_t>(0, o.now_ms - info.heartbeat_ms);
    v.stale = v.heartbeat_age_ms > options.alive_within_ms;
    if (std::optional<ReplicaStats> s = ParseReplicaStats(info.stats)) {
      v.has_stats = true;
      v.stats = std::move(*s);
    }
    info.stats.clear();  // parsed; not rendered again
    v.info = std::move(info);
    o.replicas.push_back(std::move(v));
  }
  std::stable_sort(o.replicas.begin(), o.replicas.end(),
                   [](const ReplicaView& a, const ReplicaView& b) {
                     if (a.stale != b.stale) return !a.stale;
                     return a.info.id < b.info.id;
                   });
  o.queue = ComputeQueue(scan, options.scan.max_live);
  o.consumers =
      ComputeBacklogs(scan, MergeConsumers(local, o.replicas), options.delay_warning_ms);
  AddFleetActivity(&o);
  SLUICE_ASSIGN_OR_RETURN(o.jobs, store->JobStatsByName());
  return o;
}

std::string RenderOverviewJson(const Overview& o) {
  const QueueView& q = o.queue;
  std::string out = "{\"queue\":{\"pending\":" + std::to_string(q.pending) +
                    ",\"leased\":" + std::to_string(q.leased) +
                    ",\"dead\":" + std::to_string(q.dead) +
                    ",\"oldest_pending_age_ms\":" + std::to_string(q.oldest_pending_age_ms) +
                    ",\"live\":" + std::to_string(q.live) +
                    ",\"exact\":" + (q.exact ? "true" : "false") +
                    ",\"dead_exact\":" + (q.dead_exact ? "true" : "false") +
                    ",\"scanned\":" + std::to_string(q.scanned) +
                    ",\"scan_limit\":" + std::to_string(q.scan_limit) +
                    ",\"samples\":" + std::to_string(q.samples) + "},\"replicas\":[";
  for (size_t i = 0; i < o.replicas.size(); ++i) {
    const ReplicaView& r = o.replicas[i];
    if (i > 0) out.push_back(',');
    out += "{\"id\":";
    AppendJsonString(r.info.id, &out);
    out += ",\"host\":";
    AppendJsonString(r.info.host, &out);
    out += ",\"pid\":" + std::to_string(r.info.pid) + ",\"version\":";
    AppendJsonString(r.info.version, &out);
    out += ",\"started\":";
    AppendJsonString(FormatIso8601Ms(r.info.started_ms), &out);
    out += ",\"heartbeat\":";
    AppendJsonString(FormatIso8601Ms(r.info.heartbeat_ms), &out);
    out += ",\"heartbeat_age_ms\":" + std::to_string(r.heartbeat_age_ms) +
           ",\"stale\":" + (r.stale ? "true" : "false") +
           ",\"leases_held\":" + std::to_string(r.info.leases_held) + ",\"loops\":" +
           (r.has_stats ? std::to_string(r.stats.loops) : "null") + ",\"busy\":" +
           (r.has_stats ? std::to_string(r.stats.busy) : "null") + "}";
  }
  out += "],\"consumers\":[";
  for (size_t i = 0; i < o.consumers.size(); ++i) {
    const ConsumerBacklog& c = o.consumers[i];
    if (i > 0) out.push_back(',');
    out += "{\"name\":";
    AppendJsonString(c.spec.name, &out);
    out += ",\"bit\":" + std::to_string(std::countr_zero(c.spec.bit)) +
           ",\"in_store\":" + (c.spec.in_store ? "true" : "false") +
           ",\"backlog\":" + std::to_string(c.backlog) +
           ",\"exact\":" + (c.exact ? "true" : "false") + ",\"oldest_age_ms\":";
    AppendOptionalMs(c.oldest_age_ms, &out);
    out += std::string(",\"oldest_exact\":") + (c.oldest_exact ? "true" : "false");
    out += ",\"leased\":" + std::to_string(c.leased) + ",\"waiting\":" + std::to_string(c.waiting) +
           ",\"next_retry_in_ms\":" + std::to_string(c.next_retry_in_ms) +
           ",\"dead\":" + std::to_string(c.dead) +
           ",\"dead_exact\":" + (c.dead_exact ? "true" : "false") +
           ",\"delivered_5m\":" + std::to_string(c.delivered) +
           ",\"failed_5m\":" + std::to_string(c.failed) + ",\"failure_rate\":";
    if (c.delivered > 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f",
                    static_cast<double>(c.failed) / static_cast<double>(c.delivered));
      out += buf;
    } else {
      out += "null";
    }
    out += ",\"retry_after_ms\":" + std::to_string(c.retry_after_ms) +
           ",\"delayed\":" + (c.delayed ? "true" : "false") + "}";
  }
  out += "],\"rates\":{\"bucket_ms\":" + std::to_string(o.bucket_ms) +
         ",\"end_ms\":" + std::to_string(o.series_end_ms) + ",\"ingested\":[";
  for (size_t i = 0; i < o.ingested.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(o.ingested[i]);
  }
  out += "],\"processed\":[";
  for (size_t i = 0; i < o.processed.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += std::to_string(o.processed[i]);
  }
  out += "]},\"jobs\":[";
  for (size_t i = 0; i < o.jobs.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += JobStatsJson(o.jobs[i]);
  }
  out += "],\"delay_warning_ms\":" + std::to_string(o.delay_warning_ms) + ",\"store\":";
  AppendJsonString(o.store_kind, &out);
  out += ",\"now\":";
  AppendJsonString(FormatIso8601Ms(o.now_ms), &out);
  out += ",\"now_ms\":" + std::to_string(o.now_ms) + "}";
  return out;
}

namespace {

// The consumers table of RenderOverviewText.
std::string ConsumersText(const Overview& o) {
  std::string out;
  char line[768];
  std::snprintf(line, sizeof line, "consumers:\n  %-20s %4s %12s %10s %8s %8s %10s %7s\n", "NAME",
                "BIT", "BACKLOG", "OLDEST", "WAITING", "DEAD", "FAILED/5m", "DELAYED");
  out += line;
  for (const ConsumerBacklog& c : o.consumers) {
    const std::string backlog = (c.exact ? "" : "~") + std::to_string(c.backlog);
    const std::string failed = std::to_string(c.failed) + "/" + std::to_string(c.delivered);
    std::snprintf(line, sizeof line, "  %-20s %4d %12s %10s %8lld %8lld %10s %7s\n",
                  c.spec.name.c_str(), std::countr_zero(c.spec.bit), backlog.c_str(),
                  Seconds(c.oldest_age_ms).c_str(), static_cast<long long>(c.waiting),
                  static_cast<long long>(c.dead), failed.c_str(), c.delayed ? "yes" : "");
    out += line;
  }
  return out;
}

}  // namespace

std::string RenderOverviewText(const Overview& o) {
  std::string out;
  char line[768];
  const QueueView& q = o.queue;
  const char* approx = q.exact ? "" : "~";
  std::snprintf(line, sizeof line, "store: %s (clock %s)\n", o.store_kind.c_str(),
                FormatIso8601Ms(o.now_ms).c_str());
  out += line;
  std::snprintf(line, sizeof line,
                "queue: pending %s%lld  leased %lld  dead %s%lld  oldest pending %.1f s\n", approx,
                static_cast<long long>(q.pending), static_cast<long long>(q.leased),
                q.dead_exact ? "" : ">=", static_cast<long long>(q.dead),
                static_cast<double>(q.oldest_pending_age_ms) / 1000.0);
  out += line;
  if (!q.exact) {
    std::snprintf(line, sizeof line,
                  "  (~: more than %lld live events: the oldest %lld counted, the rest "
                  "estimated from %lld probes)\n",
                  static_cast<long long>(q.scan_limit), static_cast<long long>(q.scanned),
                  static_cast<long long>(q.samples));
    out += line;
  }
  int alive = 0;
  for (const ReplicaView& r : o.replicas) alive += r.stale ? 0 : 1;
  std::snprintf(line, sizeof line, "replicas alive: %d\n", alive);
  out += line;
  if (!o.replicas.empty()) {
    std::snprintf(line, sizeof line, "  %-32s %-20s %8s %-10s %-24s %9s %7s %5s\n", "ID", "HOST",
                  "PID", "VERSION", "STARTED", "HEARTBEAT", "LEASED", "BUSY");
    out += line;
    for (const ReplicaView& r : o.replicas) {
      const std::string busy =
          r.has_stats ? std::to_string(r.stats.busy) + "/" + std::to_string(r.stats.loops) : "-";
      std::snprintf(line, sizeof line, "  %-32s %-20s %8lld %-10s %-24s %8s%s %7lld %5s\n",
                    r.info.id.c_str(), r.info.host.c_str(), static_cast<long long>(r.info.pid),
                    r.info.version.c_str(), FormatIso8601Ms(r.info.started_ms).c_str(),
                    Seconds(r.heartbeat_age_ms).c_str(), r.stale ? "!" : " ",
                    static_cast<long long>(r.info.leases_held), busy.c_str());
      out += line;
    }
    bool any_stale = false;
    for (const ReplicaView& r : o.replicas) any_stale = any_stale || r.stale;
    if (any_stale) out += "  (! = stale: no heartbeat within the alive window)\n";
  }
  if (!o.consumers.empty()) out += ConsumersText(o);
  if (!o.jobs.empty()) {
    out += "jobs:\n";
    std::snprintf(line, sizeof line, "  %-20s %8s %8s %8s %8s %6s %9s %10s\n", "NAME", "KEYS",
                  "WAITING", "DUE", "LEASED", "DEAD", "LAG", "RUNS");
    out += line;
    for (const JobStats& j : o.jobs) {
      std::snprintf(line, sizeof line, "  %-20s %8lld %8lld %8lld %8lld %6lld %9s %10lld\n",
                    j.job.c_str(), static_cast<long long>(j.keys),
                    static_cast<long long>(j.waiting), static_cast<long long>(j.due),
                    static_cast<long long>(j.leased), static_cast<long long>(j.dead),
                    Seconds(j.oldest_due_ms).c_str(), static_cast<long long>(j.runs_done));
      out += line;
    }
  }
  return out;
}

}  // namespace sluice
