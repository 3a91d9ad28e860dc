// The test binary's hooks (app/app_hooks.h): what sluice-testkit adds to the
// shipped binary's commands. Its test-only settings, in a config file or as
// `bench ... --test-only KEY=VALUE`:
//
//   [store]  claim_strategy = "naive"   the two-step claim (NaiveClaimStore)
//            fencing = false            writes ignore the token (UnfencedStore)
//   [ingest] fail_first_requests = N    the first N requests fail (IngestFaultStore)
//            fail_after_commit = true   ... after their commit
//   [[consumer]] type = "test"          a FlakyConsumer (testkit/flaky_consumer.h)
//
// Tests start this binary (SLUICE_TESTKIT_BINARY) when they need one of them,
// the shipped one (SLUICE_BINARY) otherwise.
#pragma once

#include "app/app_hooks.h"

namespace sluice {

// The hooks of sluice-testkit.
AppHooks TestkitHooks();

// Wraps `store` as `settings` say (see above); kInvalidArgument on an unknown
// key or value.
Result<StorePtr> ApplyTestOnlySettings(StorePtr store, const StoreOptions& options,
                                       const TestOnlySettings& settings);

}  // namespace sluice
