// The console's static files (src/ops/console/*), built into the binary by
// CMake (cmake/embed_assets.cmake writes console_assets.cc into the build
// directory). Immutable; thread-safe.
#pragma once

#include <span>
#include <string_view>

namespace sluice {

struct ConsoleAsset {
  std::string_view name;  // file name, e.g. "app.js"
  std::string_view content;
};

std::span<const ConsoleAsset> ConsoleAssets();

}  // namespace sluice
