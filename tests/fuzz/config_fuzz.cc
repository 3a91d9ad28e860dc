// libFuzzer target: the TOML config parser and validator (ParseConfig) on
// arbitrary text with an empty environment. Checks: no crash, no sanitizer
// report, no exception escaping (toml++ throws; ParseConfig must turn that
// into a Status), every refusal says why, and an accepted config has its
// default consumers and validates again. Seeds: tests/fuzz/corpus/config_fuzz/.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const sluice::EnvLookup no_env = [](const char*) -> const char* { return nullptr; };
  sluice::Result<sluice::Config> c = sluice::ParseConfig(text, no_env);
  if (!c.ok()) {
    if (c.status().message().empty()) __builtin_trap();
    return 0;
  }
  if (c->consumers.empty()) __builtin_trap();  // users + counters by default
  sluice::Config again = *c;
  if (!sluice::ValidateConfig(&again).ok()) __builtin_trap();
  return 0;
}
