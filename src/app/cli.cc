#include "app/cli.h"

#include "bench/bench_cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "app/logging.h"
#include "app/replica.h"
#include "app/version.h"
#include "config/config.h"

namespace sluice {
namespace {

struct ServeFlags {
  std::string config;
  std::string listen;
  std::string store;
  std::string replica_id;
};

int RunServe(const ServeFlags& f, const AppHooks& hooks) {
  // Flags win over the environment, which wins over the file.
  Result<Config> config = LoadConfig(f.config);
  if (!config.ok()) {
    std::fprintf(stderr, "sluice serve: %s\n", config.status().message().c_str());
    return 2;
  }
  if (!f.listen.empty()) config->server.listen = f.listen;
  if (!f.store.empty()) config->store.url = f.store;
  if (!f.replica_id.empty()) config->replica_id = f.replica_id;
  Status st = ValidateConfig(&config.value());
  if (st.ok()) st = CheckTestOnly(config->test_only, hooks);
  if (!st.ok()) {
    std::fprintf(stderr, "%s serve: %s\n", hooks.binary.c_str(), st.message().c_str());
    return 2;
  }
  SetupLogging(config->log_level, config->log_format);
  return Serve(*config, hooks);
}

}  // namespace

void AddServeCommand(CLI::App* app, CliAction* run, const AppHooks* hooks) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* cmd = app->add_subcommand("serve", "Run a replica: ingest, claim loops, ops API");
  cmd->add_option("--config", flags->config, "TOML config file");
  cmd->add_option("--listen", flags->listen, "HOST:PORT (default 127.0.0.1:8080; port 0 = any)");
  cmd->add_option("--store", flags->store, "sqlite:PATH or postgres://... ");
  cmd->add_option("--replica-id", flags->replica_id, "Replica id (default host-pid-random)");
  cmd->callback([flags, run, hooks] { *run = [flags, hooks] { return RunServe(*flags, *hooks); }; });
}

int RunCli(int argc, char** argv, const AppHooks& hooks) {
  CLI::App app{hooks.binary + ": telemetry ingestion and processing"};
  app.set_version_flag("--version", hooks.binary + " " + kSluiceVersion);
  app.require_subcommand(1);
  CliAction run;
  AddServeCommand(&app, &run, &hooks);
  AddStatusCommand(&app, &run);
  AddDlqCommand(&app, &run);
  AddJobsCommand(&app, &run);
  AddMigrateCommand(&app, &run);
  AddUsersCommand(&app, &run);
  AddSendCommand(&app, &run);
  AddBenchCommands(&app, hooks.wrap_store, hooks.consumer_types);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help/--version exit 0; every usage error exits 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (const int rc = RunBenchCommand(); rc >= 0) return rc;
  if (!run) return 2;
  return run();
}

}  // namespace sluice
