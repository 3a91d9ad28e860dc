#include "testkit/testkit.h"

#include <cstdlib>
#include <string>
#include <utility>

#include "testkit/broken_stores.h"
#include "testkit/flaky_consumer.h"

namespace sluice {
namespace {

Status BadValue(const std::string& key, const std::string& value, const char* want) {
  return Status::InvalidArgument("test-only setting " + key + " = \"" + value + "\": expected " +
                                 want);
}

Status ParseBool(const std::string& key, const std::string& value, bool* out) {
  if (value == "true" || value == "false") {
    *out = value == "true";
    return Status::Ok();
  }
  return BadValue(key, value, "true or false");
}

}  // namespace

Result<StorePtr> ApplyTestOnlySettings(StorePtr store, const StoreOptions& options,
                                       const TestOnlySettings& settings) {
  bool naive = false;
  bool fencing = true;
  IngestFaultOptions faults;
  for (const auto& [key, value] : settings) {
    if (key == "store.claim_strategy") {
      if (value != "atomic" && value != "naive") return BadValue(key, value, "atomic or naive");
      naive = value == "naive";
    } else if (key == "store.fencing") {
      SLUICE_RETURN_IF_ERROR(ParseBool(key, value, &fencing));
    } else if (key == "ingest.fail_first_requests") {
      char* end = nullptr;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 0) return BadValue(key, value, "an integer >= 0");
      faults.fail_first_requests = static_cast<int32_t>(n);
    } else if (key == "ingest.fail_after_commit") {
      SLUICE_RETURN_IF_ERROR(ParseBool(key, value, &faults.fail_after_commit));
    } else if (key.rfind("consumer[", 0) == 0 && key.ends_with("].type")) {
      // The consumer type itself is registered (TestkitHooks().consumer_types).
    } else {
      return Status::InvalidArgument("unknown test-only setting " + key);
    }
  }
  if (naive) {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<RawSql> sql, RawSql::Open(options));
    store = std::make_unique<NaiveClaimStore>(std::move(store), std::move(sql));
  }
  if (!fencing) {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<RawSql> sql, RawSql::Open(options));
    store = std::make_unique<UnfencedStore>(std::move(store), std::move(sql));
  }
  if (faults.fail_first_requests > 0) {
    store = std::make_unique<IngestFaultStore>(std::move(store), faults);
  }
  return store;
}

AppHooks TestkitHooks() {
  AppHooks hooks;
  hooks.binary = "sluice-testkit";
  hooks.consumer_types = kTestConsumerTypes;
  hooks.wrap_store = &ApplyTestOnlySettings;
  return hooks;
}

}  // namespace sluice
