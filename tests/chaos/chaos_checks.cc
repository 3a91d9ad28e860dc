// The checker of a chaos round: it trusts only what the clients saw and what
// landed in the archive directory (chaos_harness.h, chaos_round.h).
#include <simdjson.h>

#include <sstream>
#include <tuple>

#include "chaos/chaos_round.h"
#include "http_client/http_client.h"

namespace sluice::testing::chaos {
namespace {

using Archived = std::map<std::string, std::set<int64_t>>;

// Expected aggregates of the stored set, each event once.
struct Expected {
  std::map<std::pair<int, std::string>, std::map<std::string, int64_t>> user_counts;
  std::map<std::tuple<int, std::string, int64_t>, int64_t> hour_counts;
  std::map<std::tuple<int, std::string, int64_t>, std::set<std::string>> hour_users;
  std::set<std::string> poison_keys;
};

// A replacement that dropped an event whose line is in no other object has
// erased it from the archive: counted in users/counters (if its batch was
// completed), missing from S — a "lost" or a count mismatch below, with its
// cause named here.
void CheckErased(Round* round, const Archived& archived, const ArchiveWatch& watch) {
  std::set<int64_t> archived_seqs;
  for (const auto& [key, seqs] : archived) archived_seqs.insert(seqs.begin(), seqs.end());
  for (const auto& [seq, e] : watch.erased()) {
    if (archived_seqs.count(seq)) continue;
    ++round->report->archive_erased;
    round->Violation("archive erased",
                     e.key + " (seq " + std::to_string(seq) + ") was archived in " + e.object +
                         ", which a later delivery replaced without it; it is in no other object");
  }
}

// acknowledged ⊆ S ⊆ acknowledged ∪ unknown, each stored once, nothing
// stored that was never sent.
void CheckStoredSet(Round* round, const Load& load, const Archived& archived) {
  ChaosReport& report = *round->report;
  for (const auto& [key, out] : load.outcomes()) {
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
      round->Violation("lost", key + " was acknowledged but is not in the archive");
    }
    if (!out.acked && !out.unknown && stored) {
      ++report.phantom;
      round->Violation("phantom", key + " was refused but is in the archive");
    }
  }
  for (const auto& [key, seqs] : archived) {
    if (seqs.size() > 1) {
      ++report.stored_twice;
      round->Violation("stored twice",
                       key + " is in the queue under " + std::to_string(seqs.size()) + " seqs (" +
                           std::to_string(*seqs.begin()) + ", " + std::to_string(*seqs.rbegin()) +
                           "): deduplication by insert_id failed");
    }
    if (!load.events().count(key)) {
      ++report.phantom;
      round->Violation("phantom", key + " in the archive was never sent");
    }
  }
}

Expected ExpectedAggregates(const Load& load, const Archived& archived) {
  Expected x;
  for (const auto& [key, seqs] : archived) {
    auto it = load.events().find(key);
    if (it == load.events().end()) continue;
    const SentEvent& e = it->second;
    // Stored twice is reported above; the aggregates then count it twice.
    const int64_t copies = static_cast<int64_t>(seqs.size());
    x.user_counts[{e.project, e.user}][e.event] += copies;
    const int64_t hour = e.time_ms / kHourMs * kHourMs;
    x.hour_counts[{e.project, e.event, hour}] += copies;
    x.hour_users[{e.project, e.event, hour}].insert(e.user);
    if (e.event == "poison") x.poison_keys.insert(key);
  }
  return x;
}

// Which sent events of this user and name are not in the archive, and what
// did their clients see? (Tells a missing archive line from a double count.)
std::string Unarchived(const Load& load, const Archived& archived, int p, const std::string& user,
                       const std::string& name) {
  std::string out;
  for (const auto& [key, e] : load.events()) {
    if (e.project != p || e.user != user || e.event != name || archived.count(key)) continue;
    const Outcome& o = load.outcomes().at(key);
    out += " " + key + (o.acked ? "[acked]" : "") + (o.unknown ? "[unknown]" : "") +
           (o.refused ? "[refused]" : "");
  }
  return out.empty() ? std::string(" none") : out;
}

// Every user profile of project `p` equals the aggregates of S.
void CheckUsers(Round* round, const Load& load, const Archived& archived, const Expected& x,
                const std::string& url, int p, simdjson::dom::parser* parser) {
  ChaosReport& report = *round->report;
  for (int u = 0; u < kUsersPerProject; ++u) {
    const std::string user = "user_" + std::to_string(u);
    const std::string who = Project(p) + "/" + user;
    auto it = x.user_counts.find({p, user});
    HttpResult r =
        HttpGet(url + "/v1/users/" + UriEncode(user) + "?project=" + Project(p), AdminHeaders());
    if (it == x.user_counts.end()) {
      if (r.status != 404) {
        ++report.count_mismatches;
        round->Violation("count",
                         who + ": expected no profile, got HTTP " + std::to_string(r.status));
      }
      continue;
    }
    int64_t want_total = 0;
    for (const auto& [name, c] : it->second) want_total += c;
    simdjson::dom::element el;
    int64_t got_total = -1;
    if (r.status != 200 || parser->parse(r.body).get(el) != simdjson::SUCCESS ||
        el["events"].get_int64().get(got_total) != simdjson::SUCCESS) {
      ++report.count_mismatches;
      round->Violation("count", who + ": HTTP " + std::to_string(r.status) + " " + r.body);
      continue;
    }
    if (got_total != want_total) {
      ++report.count_mismatches;
      round->Violation("count", who + ": events " + std::to_string(got_total) + ", stored " +
                                    std::to_string(want_total));
    }
    for (const auto& [name, c] : it->second) {
      int64_t got = -1;
      if (el["event_counts"][name].get_int64().get(got)) {
      }
      if (got != c) {
        ++report.count_mismatches;
        round->Violation("count", who + " " + name + ": " + std::to_string(got) + ", stored " +
                                      std::to_string(c) + "; sent but not archived:" +
                                      Unarchived(load, archived, p, user, name));
      }
    }
  }
}

// Every hourly counter of project `p` equals the aggregates of S.
void CheckCounters(Round* round, const Expected& x, const std::string& url, int p,
                   simdjson::dom::parser* parser) {
  ChaosReport& report = *round->report;
  std::vector<std::string> names;
  for (int k = 0; k < kNames; ++k) names.push_back("event_" + std::to_string(k));
  if (round->o.poison) names.push_back("poison");
  for (const std::string& name : names) {
    const std::string what = Project(p) + "/" + name;
    HttpResult r = HttpGet(url + "/v1/counters?project=" + Project(p) + "&event=" + name +
                               "&bucket=hour&from=" + std::to_string(kBaseMs) +
                               "&to=" + std::to_string(kBaseMs + 7 * kHourMs),
                           AdminHeaders());
    simdjson::dom::element el;
    simdjson::dom::array series;
    if (r.status != 200 || parser->parse(r.body).get(el) != simdjson::SUCCESS ||
        el["series"].get_array().get(series) != simdjson::SUCCESS) {
      ++report.count_mismatches;
      round->Violation("count", "counters " + what + ": HTTP " + std::to_string(r.status));
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
    for (const auto& [k, c] : x.hour_counts) {
      if (std::get<0>(k) != p || std::get<1>(k) != name) continue;
      want[std::get<2>(k)] = {c, static_cast<int64_t>(x.hour_users.at(k).size())};
    }
    for (const auto& [ts, cu] : want) {
      auto g = got.find(ts);
      if (g == got.end() || g->second != cu) {
        ++report.count_mismatches;
        round->Violation("count", "counter " + what + "@" + std::to_string(ts) + ": got " +
                                      (g == got.end() ? std::string("none")
                                                      : std::to_string(g->second.first) + "/" +
                                                            std::to_string(g->second.second)) +
                                      ", stored " + std::to_string(cu.first) + "/" +
                                      std::to_string(cu.second));
      }
    }
    for (const auto& [ts, cu] : got) {
      if (!want.count(ts)) {
        ++report.count_mismatches;
        round->Violation("count", "counter " + what + "@" + std::to_string(ts) + ": " +
                                      std::to_string(cu.first) + " for no stored event");
      }
    }
  }
}

// Dead letters: exactly the poison events, each with its error.
void CheckDead(Round* round, const Expected& x, const std::string& url,
               simdjson::dom::parser* parser) {
  ChaosReport& report = *round->report;
  HttpResult r = HttpGet(url + "/admin/dlq?limit=10000", AdminHeaders());
  simdjson::dom::element el;
  simdjson::dom::array dead;
  std::set<std::string> dead_keys;
  if (r.status != 200 || parser->parse(r.body).get(el) != simdjson::SUCCESS ||
      el["dead"].get_array().get(dead) != simdjson::SUCCESS) {
    round->Violation("dlq", "GET /admin/dlq: HTTP " + std::to_string(r.status));
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
        round->Violation("dead",
                         key + " (" + std::string(name) + ") is dead: " + std::string(error));
      } else if (std::string(error).find("poison") == std::string::npos) {
        round->Violation("dead", key + " is dead without its error: " + std::string(error));
      }
    }
  }
  for (const std::string& key : x.poison_keys) {
    if (!dead_keys.count(key)) {
      ++report.poison_not_dead;
      round->Violation("dead", "poison event " + key + " is not dead");
    }
  }
}

// Independent of sluice's own bookkeeping (its "reclaimed" flag is what the
// naive claim gets wrong): a second dispatch to the archive needs a lease
// that expired, and only the faults make leases expire — each kill or pause
// strands at most the victim's in-flight leases, each PostgreSQL restart at
// most every replica's. Duplicates beyond that bound are unexplained. Then
// the webhook receiver's own count, and whether every named fault happened.
void DispatchFigures(Round* round, const Archived& archived) {
  ChaosReport& report = *round->report;
  ReplicaFigures total;
  for (const Replica& r : round->replicas) {
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
  // A PostgreSQL crash also takes the commits that did not wait for the WAL
  // flush (lease writes: done bits, completes) of the last 3 x
  // wal_writer_delay (600 ms): up to 4 more batches per loop at 150 ms each.
  report.fault_bound = (report.kills + report.pauses + report.pg_restarts * round->o.replicas +
                        (report.pg_immediate_stops + report.pg_kills) * round->o.replicas * 5) *
                       kLoops * kBatch;
  report.unexplained_dispatches =
      std::max<int64_t>(0, report.duplicate_dispatches - report.fault_bound);
  if (report.unexplained_dispatches > 0) {
    round->Violation("dispatch",
                     std::to_string(report.duplicate_dispatches) +
                         " duplicate archive dispatches; the faults injected explain at most " +
                         std::to_string(report.fault_bound) + " (sluice itself counted " +
                         std::to_string(report.reclaimed_events) + " reclaims)");
  }
  for (const auto& [kind, what] :
       CheckReceiver(round->o, round->receiver, round->windows, archived, total.hook, &report)) {
    round->Violation(kind, what);
  }
  for (const auto& [kind, what] : CheckFaultsExercised(round->o, &report)) {
    round->Violation(kind, what);
  }
}

}  // namespace

void CheckRound(Round* round, const Load& load, const Faults& faults, const std::string& url) {
  ChaosReport& report = *round->report;
  report.archive_rewrites = faults.archive().rewrites();
  report.archive_rewrites_lossy = faults.archive().lossy();
  load.Report(&report);
  std::string archive_error;
  const Archived archived = ReadArchive(round->archive_dir, &archive_error);
  if (!archive_error.empty()) round->Violation("archive", archive_error);
  report.stored_events = static_cast<int64_t>(archived.size());
  CheckErased(round, archived, faults.archive());
  CheckStoredSet(round, load, archived);
  const Expected expected = ExpectedAggregates(load, archived);
  simdjson::dom::parser parser;
  for (int p = 0; p < kProjects; ++p) {
    CheckUsers(round, load, archived, expected, url, p, &parser);
    CheckCounters(round, expected, url, p, &parser);
  }
  CheckDead(round, expected, url, &parser);
  DispatchFigures(round, archived);
  if (report.acked_events == 0) round->Violation("setup", "no event acknowledged");
}

// Where leases were fenced, in the replicas' own words (the first few), with
// what the log said about the same token before.
void CollectLeaseLog(Round* round) {
  std::vector<std::string>& out = round->report->lease_log;
  for (size_t i = 0; i < round->replicas.size(); ++i) {
    std::vector<std::string> lines;
    {
      std::istringstream log(round->replicas[i].proc->ReadLog());
      std::string line;
      while (std::getline(log, line)) lines.push_back(line);
    }
    const std::string who = "r" + std::to_string(i) + ": ";
    for (size_t k = 0; k < lines.size() && out.size() < 12; ++k) {
      if (lines[k].find("watcher fenced") == std::string::npos) continue;
      const size_t at = lines[k].find("token=");
      const std::string token =
          at == std::string::npos ? "" : lines[k].substr(at, lines[k].find(' ', at) - at);
      for (size_t j = k > 400 ? k - 400 : 0; j < k && !token.empty(); ++j) {
        if (lines[j].find(token + " ") != std::string::npos ||
            lines[j].find(token + "\"") != std::string::npos) {
          out.push_back(who + lines[j].substr(0, 240));
        }
      }
      out.push_back(who + lines[k].substr(0, 240));
    }
  }
}

}  // namespace sluice::testing::chaos
