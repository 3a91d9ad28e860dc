// `sluice bench ...`: the load generator and benchmark drivers.
#pragma once

#include <CLI/CLI.hpp>
#include <span>

#include "consumers/registry/registry.h"
#include "queue/store_wrapper.h"

namespace sluice {

// Adds the `bench` subcommand tree to `app`. When a bench subcommand was
// parsed, RunBenchCommand runs it and returns the process exit code.
// `wrap_store` and `consumer_types` are the binary's hooks (app/app_hooks.h):
// with a wrap_store, claim and process take `--test-only KEY=VALUE` settings
// for it (the test binary only); the shipped binary passes none.
void AddBenchCommands(CLI::App* app, StoreDecorator wrap_store = nullptr,
                      std::span<const ConsumerType> consumer_types = {});
// Returns -1 when no bench subcommand was selected.
int RunBenchCommand();

}  // namespace sluice
