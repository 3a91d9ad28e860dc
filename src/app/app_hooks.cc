#include "app/app_hooks.h"

#include "queue/open/open_store.h"

namespace sluice {

Status CheckTestOnly(const TestOnlySettings& settings, const AppHooks& hooks) {
  if (settings.empty() || hooks.wrap_store) return Status::Ok();
  const auto& [key, value] = settings.front();
  return Status::InvalidArgument(
      "config key " + key + " = \"" + value + "\": a test-only setting; " + hooks.binary +
      " refuses it (it exists only in the test binary sluice-testkit, built by the test "
      "build)");
}

Result<StorePtr> OpenStoreWithHooks(const StoreOptions& options, const TestOnlySettings& settings,
                                    const AppHooks& hooks) {
  SLUICE_RETURN_IF_ERROR(CheckTestOnly(settings, hooks));
  SLUICE_ASSIGN_OR_RETURN(StorePtr store, OpenStore(options));
  if (!hooks.wrap_store) return store;
  return hooks.wrap_store(std::move(store), options, settings);
}

}  // namespace sluice
