// libFuzzer target: the TOML config parser and validator (ParseConfig) on
// arbitrary text with an empty environment. Properties checked: no crash, no
// sanitizer report, no exception escaping (toml++ throws; ParseConfig must
// turn that into a Status), and a config it accepts validates again.
// Corpus: tests/fuzz/corpus/config_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const sluice::EnvLookup no_env = [](const char*) -> const char* { return nullptr; };
  sluice::Result<sluice::Config> c = sluice::ParseConfig(text, no_env);
  if (!c.ok()) {
    if (c.status().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  if (c->consumers.empty()) std::abort();  // defaults fill users + counters
  sluice::Config again = *c;
  if (!sluice::ValidateConfig(&again).ok()) std::abort();  // accepted means valid
  return 0;
}
