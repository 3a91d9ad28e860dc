// `sluice bench ...`: the load generator and benchmark drivers.
#pragma once

#include <CLI/CLI.hpp>

namespace sluice {

// Adds the `bench` subcommand tree to `app`. When a bench subcommand was
// parsed, RunBenchCommand runs it and returns the process exit code.
void AddBenchCommands(CLI::App* app);
// Returns -1 when no bench subcommand was selected.
int RunBenchCommand();

}  // namespace sluice
