// `sluice status`, `sluice dlq`, `sluice jobs`, `sluice users show`, `sluice migrate`:
// commands that open the store directly (no running replica needed).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "app/cli.h"
#include "app/logging.h"
#include "app/version.h"
#include "common/strings.h"
#include "common/time.h"
#include "config/config.h"
#include "consumers/registry/registry.h"
#include "ops/dlq.h"
#include "ops/jobs_admin.h"
#include "ops/overview.h"
#include "ops/status_report.h"
#include "ops/user_json.h"
#include "queue/open/open_store.h"
#include "queue/store.h"

namespace sluice {
namespace {

struct StoreFlags {
  std::string store;
  std::string config;
};

void AddStoreFlags(CLI::App* cmd, StoreFlags* f) {
  cmd->add_option("--store", f->store, "sqlite:PATH or postgres://... (default from config/env)");
  cmd->add_option("--config", f->config, "TOML config file to take the store from");
}

// The store options: --store, else the config file (with SLUICE_STORE), else default.
Result<StorePtr> OpenStoreFor(const char* cmd, const StoreFlags& f) {
  StoreOptions options;
  Result<Config> config = LoadConfig(f.config);
  if (config.ok()) {
    options = config->store;
  } else if (!f.config.empty()) {
    return config.status();
  } else if (const char* env = std::getenv("SLUICE_STORE"); env != nullptr && *env != '\0') {
    options.url = env;  // the env may be fine even when other settings are not
  }
  if (!f.store.empty()) options.url = f.store;
  options.pool_size = 2;
  Result<StorePtr> store = OpenStore(options);
  if (!store.ok()) {
    std::fprintf(stderr, "sluice %s: opening store %s: %s\n", cmd, RedactUrl(options.url).c_str(),
                 store.status().ToString().c_str());
  }
  return store;
}

struct StatusFlags {
  StoreFlags store;
  bool json = false;
  int64_t alive_within_ms = kDefaultReplicaAliveWithinMs;
};

// The consumers of the config (none when it cannot be read or names a type
// this binary lacks); the replicas publish theirs too.
std::vector<ConsumerSpec> ConfiguredConsumers(const StoreFlags& f) {
  std::vector<ConsumerSpec> out;
  Result<Config> config = LoadConfig(f.config);
  if (!config.ok()) return out;
  Metrics scratch;
  Result<std::vector<ConsumerPtr>> made = MakeConsumers(config->consumers, &scratch);
  if (!made.ok()) return out;
  for (const ConsumerPtr& c : *made) out.push_back({c->name(), c->bit(), c->in_store()});
  return out;
}

int RunStatus(const StatusFlags& f) {
  Result<StorePtr> store = OpenStoreFor("status", f.store);
  if (!store.ok()) return 1;
  // The document of GET /admin/overview, read from the store directly.
  OverviewOptions options;
  options.alive_within_ms = f.alive_within_ms;
  Result<Overview> overview = CollectOverview(store->get(), ConfiguredConsumers(f.store), options);
  if (!overview.ok()) {
    std::fprintf(stderr, "sluice status: %s\n", overview.status().ToString().c_str());
    return 1;
  }
  const std::string out =
      f.json ? RenderOverviewJson(*overview) + "\n" : RenderOverviewText(*overview);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

struct DlqFlags {
  StoreFlags store;
  std::string project;
  std::string consumer;
  std::string error;
  std::vector<int64_t> ids;
  int32_t limit = 100;
  bool json = false;
  bool all = false;
};

DeadFilter FilterOf(const DlqFlags& f) {
  DeadFilter filter;
  filter.project = f.project;
  filter.consumer = f.consumer;
  filter.error = f.error;
  filter.seqs = f.ids;
  filter.limit = std::min(f.limit, kMaxDeadList);
  return filter;
}

int RunDlq(const std::string& action, const DlqFlags& f) {
  const DeadFilter filter = FilterOf(f);
  if (action == "purge" && DeadFilterIsEmpty(filter) && !f.all) {
    std::fprintf(stderr,
                 "sluice dlq purge: refusing to purge every dead event without --all "
                 "(or narrow it with --project, --consumer, --id)\n");
    return 2;
  }
  Result<StorePtr> store = OpenStoreFor("dlq", f.store);
  if (!store.ok()) return 1;
  if (action == "list") {
    Result<std::vector<DeadEvent>> dead = (*store)->ListDead(filter);
    if (!dead.ok()) {
      std::fprintf(stderr, "sluice dlq list: %s\n", dead.status().ToString().c_str());
      return 1;
    }
    const std::string out = f.json ? RenderDeadJson(*dead) + "\n" : RenderDeadText(*dead);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  Result<int64_t> n =
      action == "requeue" ? (*store)->RequeueDead(filter) : (*store)->PurgeDead(filter);
  if (!n.ok()) {
    std::fprintf(stderr, "sluice dlq %s: %s\n", action.c_str(), n.status().ToString().c_str());
    return 1;
  }
  if (f.json) {
    std::printf("{\"%s\":%lld}\n", action == "requeue" ? "requeued" : "purged",
                static_cast<long long>(*n));
  } else {
    std::printf("%s %lld dead event(s)\n", action == "requeue" ? "requeued" : "purged",
                static_cast<long long>(*n));
  }
  return 0;
}

struct UsersFlags {
  StoreFlags store;
  std::string project;
  std::string id;
  bool json = false;
};

std::string JoinIds(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out;
}

// The person as text: one field a line.
std::string RenderUserText(const UserProfile& u) {
  std::string out = "user_id:    " + u.user_id + "\nids:        " + JoinIds(u.ids) +
                    "\nproject:    " + u.project + "\nfirst_seen: " +
                    FormatIso8601Ms(u.first_seen_ms) + "\nlast_seen:  " +
                    FormatIso8601Ms(u.last_seen_ms) + "\nevents:     " + std::to_string(u.events);
  for (const auto& [name, n] : u.event_counts) out += "\n  " + name + ": " + std::to_string(n);
  out += "\nproperties: " + (u.properties.empty() ? std::string("{}") : u.properties);
  for (const RefusedMerge& m : u.merges_refused) {
    out += "\nmerge refused: " + m.from + " -> " + m.to + " at " +
           FormatIso8601Ms(m.key.time_ms) + " (" + m.key.insert_id + ")";
  }
  return out + "\n";
}

int RunUsersShow(const UsersFlags& f) {
  Result<StorePtr> store = OpenStoreFor("users show", f.store);
  if (!store.ok()) return 1;
  Result<UserProfile> user = (*store)->GetUser(f.project, f.id);
  if (!user.ok()) {
    std::fprintf(stderr, "sluice users show: %s\n", user.status().ToString().c_str());
    return user.status().code() == Code::kNotFound ? 3 : 1;
  }
  const std::string out = f.json ? UserProfileJson(*user) + "\n" : RenderUserText(*user);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

struct JobsFlags {
  StoreFlags store;
  JobFilter filter;
  int32_t limit = 100;
  bool json = false;
  bool all = false;
};

// list: every job's figures and the rows of the filter; show: one key's row
// and its dead runs; requeue/purge: dead runs.
int RunJobs(const std::string& action, JobsFlags f) {
  f.filter.limit = std::min(f.limit, kMaxJobList);
  if (action == "show" && (f.filter.job.empty() || f.filter.key.empty())) {
    std::fprintf(stderr, "sluice jobs show: --job and --key are required\n");
    return 2;
  }
  if (action == "purge" && JobFilterIsEmpty(f.filter) && !f.all) {
    std::fprintf(stderr,
                 "sluice jobs purge: refusing to purge every dead run without --all "
                 "(or narrow it with --job, --project, --key, --id)\n");
    return 2;
  }
  Result<StorePtr> store = OpenStoreFor("jobs", f.store);
  if (!store.ok()) return 1;
  Store& st = **store;
  auto fail = [&](const Status& s) {
    std::fprintf(stderr, "sluice jobs %s: %s\n", action.c_str(), s.ToString().c_str());
    return 1;
  };
  if (action == "list" || action == "show") {
    if (action == "show" && f.filter.project.empty()) f.filter.project = "default";
    Result<int64_t> now = st.NowMs();
    if (!now.ok()) return fail(now.status());
    Result<std::vector<JobStats>> stats = st.JobStatsByName();
    if (!stats.ok()) return fail(stats.status());
    Result<std::vector<JobRow>> rows = st.ListJobs(f.filter);
    if (!rows.ok()) return fail(rows.status());
    std::vector<DeadRun> dead;
    if (action == "show") {
      Result<std::vector<DeadRun>> d = st.ListDeadRuns(f.filter);
      if (!d.ok()) return fail(d.status());
      dead = std::move(*d);
      if (rows->empty() && dead.empty()) {
        std::fprintf(stderr, "sluice jobs show: no job %s for %s/%s\n", f.filter.job.c_str(),
                     f.filter.project.c_str(), f.filter.key.c_str());
        return 1;
      }
      std::erase_if(*stats, [&](const JobStats& s) { return s.job != f.filter.job; });
    } else {
      Result<std::vector<DeadRun>> d = st.ListDeadRuns(f.filter);
      if (!d.ok()) return fail(d.status());
      dead = std::move(*d);
    }
    const std::string out = f.json ? RenderJobsJson(*now, *stats, *rows, dead) + "\n"
                                   : RenderJobsText(*now, *stats, *rows, dead);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  Result<int64_t> n =
      action == "requeue" ? st.RequeueDeadRuns(f.filter) : st.PurgeDeadRuns(f.filter);
  if (!n.ok()) return fail(n.status());
  const char* verb = action == "requeue" ? "requeued" : "purged";
  if (f.json) {
    std::printf("{\"%s\":%lld}\n", verb, static_cast<long long>(*n));
  } else {
    std::printf("%s %lld dead run(s)\n", verb, static_cast<long long>(*n));
  }
  return 0;
}

}  // namespace

void AddUsersCommand(CLI::App* app, CliAction* run) {
  CLI::App* users = app->add_subcommand("users", "Per-person profiles (docs/users.md)");
  users->require_subcommand(1);
  auto flags = std::make_shared<UsersFlags>();
  CLI::App* cmd = users->add_subcommand(
      "show", "The person an id belongs to: merged ids, counts, properties, refused merges");
  AddStoreFlags(cmd, &flags->store);
  cmd->add_option("ID", flags->id, "Any id of the person (user_id or anonymous_id)")->required();
  cmd->add_option("--project", flags->project, "Project (default \"default\")");
  cmd->add_flag("--json", flags->json, "Print JSON (the document of GET /v1/users/{id})");
  cmd->callback([flags, run] { *run = [flags] { return RunUsersShow(*flags); }; });
}

void AddJobsCommand(CLI::App* app, CliAction* run) {
  CLI::App* jobs = app->add_subcommand("jobs", "Keyed jobs: list, show, requeue, purge");
  jobs->require_subcommand(1);
  for (const char* action : {"list", "show", "requeue", "purge"}) {
    auto flags = std::make_shared<JobsFlags>();
    const std::string name = action;
    CLI::App* cmd = jobs->add_subcommand(
        name, name == "list"      ? "Every job's figures, its rows and dead runs"
              : name == "show"    ? "One key's job row and its dead runs"
              : name == "requeue" ? "Dead runs back to their rows, due now"
                                  : "Delete dead runs for good");
    AddStoreFlags(cmd, &flags->store);
    cmd->add_option("--job", flags->filter.job, "Only this job");
    cmd->add_option("--project", flags->filter.project, "Only this project");
    cmd->add_option("--key", flags->filter.key, "Only this key");
    if (name == "requeue" || name == "purge") {
      cmd->add_option("--id", flags->filter.ids, "Only these dead runs (repeatable)");
    }
    cmd->add_flag("--json", flags->json, "Print JSON (the document of GET /admin/jobs)");
    if (name == "list") {
      cmd->add_option("--limit", flags->limit, "At most this many rows (default 100, max 1000)");
    }
    if (name == "purge") cmd->add_flag("--all", flags->all, "Purge every dead run");
    cmd->callback([flags, run, name] { *run = [flags, name] { return RunJobs(name, *flags); }; });
  }
}

void AddStatusCommand(CLI::App* app, CliAction* run) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* cmd = app->add_subcommand(
      "status", "Queue depth, replicas and per-consumer backlog, from the store");
  AddStoreFlags(cmd, &flags->store);
  cmd->add_flag("--json", flags->json, "Print JSON (the document of GET /admin/overview)");
  cmd->add_option("--alive-within-ms", flags->alive_within_ms,
                  "A replica is alive when its heartbeat is this recent (default 10000)");
  cmd->callback([flags, run] { *run = [flags] { return RunStatus(*flags); }; });
}

void AddDlqCommand(CLI::App* app, CliAction* run) {
  CLI::App* dlq = app->add_subcommand("dlq", "Dead-letter events: list, requeue, purge");
  dlq->require_subcommand(1);
  for (const char* action : {"list", "requeue", "purge"}) {
    auto flags = std::make_shared<DlqFlags>();
    const std::string name = action;
    CLI::App* cmd = dlq->add_subcommand(
        name, name == "list"      ? "List dead events"
              : name == "requeue" ? "Dead events back to pending (attempts reset, done bits kept)"
                                  : "Delete dead events for good");
    AddStoreFlags(cmd, &flags->store);
    cmd->add_option("--project", flags->project, "Only this project");
    cmd->add_option("--consumer", flags->consumer, "Only events that failed in this consumer");
    cmd->add_option("--error", flags->error, "Only events whose last error contains this text");
    cmd->add_option("--id", flags->ids, "Only these seqs (repeatable)");
    cmd->add_flag("--json", flags->json, "Print JSON");
    if (name == "list") {
      cmd->add_option("--limit", flags->limit, "At most this many (default 100, max 1000)");
    }
    if (name == "purge") cmd->add_flag("--all", flags->all, "Purge every dead event");
    cmd->callback([flags, run, name] { *run = [flags, name] { return RunDlq(name, *flags); }; });
  }
}

void AddMigrateCommand(CLI::App* app, CliAction* run) {
  auto flags = std::make_shared<StoreFlags>();
  CLI::App* cmd = app->add_subcommand("migrate", "Create or upgrade the store schema, then exit");
  AddStoreFlags(cmd, flags.get());
  cmd->callback([flags, run] {
    *run = [flags]() -> int {
      // Opening a store creates and migrates its schema.
      Result<StorePtr> store = OpenStoreFor("migrate", *flags);
      if (!store.ok()) return 1;
      std::printf("store ready: %s schema current for sluice %s\n", (*store)->kind(),
                  kSluiceVersion);
      return 0;
    };
  });
}

}  // namespace sluice
