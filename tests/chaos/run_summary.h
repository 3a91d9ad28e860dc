// Run summaries of the chaos rounds, the source of RELIABILITY.md's tables.
// With CHAOS_RESULTS_DIR set (scripts/chaos.sh sets it to
// tests/chaos/results/<UTC date>), each round writes <dir>/<round>.json: the
// commit and whether the code (src, tests, scripts, build files) had
// uncommitted changes, the command
// (CHAOS_COMMAND), the date, the load average before and after, the build, the
// round's options and every figure of its ChaosReport. scripts/chaos-table.py
// renders the tables from them. Without CHAOS_RESULTS_DIR nothing is written.
#pragma once

#include <string>

#include "chaos/chaos_harness.h"

namespace sluice::testing {

// /proc/loadavg's 1-minute figure, for the summary.
double LoadAverage();

// Writes the summary of round `round` (a file name: letters, digits, '-').
// Returns the path written, "" when CHAOS_RESULTS_DIR is unset or on error
// (printed to stderr).
std::string WriteRunSummary(const std::string& round, const ChaosOptions& o,
                            const ChaosReport& r, double load_before);

}  // namespace sluice::testing
