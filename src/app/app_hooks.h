// AppHooks: what a binary built on the app adds to it.
//
// The shipped `sluice` (src/main.cc) passes AppHooks{}: the built-in consumer
// types only, stores used as opened, and a config or flag that names a
// test-only setting (Config::test_only) refused at start-up with an error
// naming the key. The test binary sluice-testkit (tests/testkit) passes its
// test hooks: the "test" consumer type and a StoreDecorator that builds the
// deliberately broken and fault-injecting stores those settings select.
#pragma once

#include <span>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "consumers/registry/registry.h"
#include "queue/store_wrapper.h"

namespace sluice {

struct AppHooks {
  std::string binary = "sluice";                // for messages and --version
  std::span<const ConsumerType> consumer_types;  // besides the built-in ones
  StoreDecorator wrap_store;                     // null: test-only settings are refused
};

// Ok when `settings` is empty or `hooks` take test-only settings; else
// InvalidArgument naming the first key.
Status CheckTestOnly(const TestOnlySettings& settings, const AppHooks& hooks);

// Opens the store of `options` and applies hooks.wrap_store with `settings`.
Result<StorePtr> OpenStoreWithHooks(const StoreOptions& options, const TestOnlySettings& settings,
                                    const AppHooks& hooks);

}  // namespace sluice
