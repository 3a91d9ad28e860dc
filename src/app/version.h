// The version sluice reports (--version, replicas table, build info metric).
#pragma once

namespace sluice {

inline constexpr const char* kSluiceVersion = "0.1.0";

}  // namespace sluice
