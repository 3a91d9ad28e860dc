// Time helpers: parsing client timestamps and formatting ISO-8601.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

// Wall-clock now in epoch milliseconds (system_clock). Used for event
// receive times and bucket defaults, never for leases (the store's clock).
int64_t WallNowMs();

// Parses ISO-8601 / RFC 3339 ("2024-05-01T10:00:00Z", "...00.123+02:00",
// "2024-05-01 10:00:00", "2024-05-01") into epoch ms. nullopt when malformed.
std::optional<int64_t> ParseIso8601Ms(std::string_view s);

// Parses epoch milliseconds given as a decimal string, or ISO-8601.
std::optional<int64_t> ParseTimeMs(std::string_view s);

// Parses "30s", "250ms", "5m", "24h", "2d" or a bare integer of milliseconds.
std::optional<int64_t> ParseDurationMs(const std::string& s);

// "2024-05-01T10:00:00.123Z".
std::string FormatIso8601Ms(int64_t epoch_ms);

}  // namespace sluice
