// The `sluice` command line: serve, status, dlq, send, migrate, bench.
// RunCli parses argv and runs one subcommand; main() only calls it.
#pragma once

#include <functional>
#include <string>

#include "app/app_hooks.h"

namespace CLI {
class App;
}

namespace sluice {

// Returns the process exit code: 0 ok, 1 failure, 2 usage error. `hooks`:
// what the binary adds (app/app_hooks.h); the shipped binary passes none.
int RunCli(int argc, char** argv, const AppHooks& hooks = AppHooks{});

// Each Add*Command registers a subcommand on `app`; when it is the one parsed,
// its callback stores the action to run in *run.
using CliAction = std::function<int()>;
void AddServeCommand(CLI::App* app, CliAction* run, const AppHooks* hooks);
void AddStatusCommand(CLI::App* app, CliAction* run);
void AddDlqCommand(CLI::App* app, CliAction* run);
// `sluice jobs list|show|requeue|purge` (cli_jobs.cc).
void AddJobsCommand(CLI::App* app, CliAction* run);
void AddMigrateCommand(CLI::App* app, CliAction* run);
void AddUsersCommand(CLI::App* app, CliAction* run);  // `sluice users show ID`
void AddSendCommand(CLI::App* app, CliAction* run);

}  // namespace sluice
