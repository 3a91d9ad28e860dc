// Checks of a chaos round beyond the archive and the aggregates (chaos_harness.h),
// and the store inspection the fault schedule needs. Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "chaos/chaos_harness.h"
#include "testing/dispatch_receiver.h"

namespace sluice::testing {

// (kind, what) pairs, for the report's violations.
using Violations = std::vector<std::pair<std::string, std::string>>;

// Rows held (state 'leased', lease not expired) by lease owners matching
// `owner_like` (SQL LIKE), read from the store directly; -1 when the store
// cannot be read. (Expired leases of an earlier incarnation of the replica
// may still carry its name until someone claims them: they do not count.)
int64_t HeldLeases(const std::string& store_url, const std::string& owner_like);

// True when another connection holds the SQLite write lock for a whole second
// (a replica stopped inside a write transaction).
bool SqliteWriteLocked(const std::string& store_url);

// The webhook receiver's independent count: every stored event ("project/
// insert_id" keys of `stored`) received, every repeat explained by a fault of
// `windows` between its two deliveries. Fills the receiver fields of `report`.
Violations CheckReceiver(const ChaosOptions& o, const DispatchReceiver& receiver,
                         const std::vector<FaultWindow>& windows,
                         const std::map<std::string, std::set<int64_t>>& stored,
                         int64_t hook_metric, ChaosReport* report);

// Each fault `o` names must have been exercised: a kill that caught leases, a
// pause that made a zombie, PostgreSQL stops inside the load, hangs past the
// lease and past the timeout. Fills report->faults_not_exercised.
Violations CheckFaultsExercised(const ChaosOptions& o, ChaosReport* report);

}  // namespace sluice::testing
