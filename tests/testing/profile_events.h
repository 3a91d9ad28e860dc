// Random event sets for the per-person profile proofs (docs/users.md): the
// store property test (tests/queue/profile_store_test.cc) and the system test
// (tests/system/profiles_test.cc). Pure; thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/event.h"

namespace sluice::testing {

struct ProfileEventsOptions {
  int events = 300;    // how many events
  int users = 5;       // user ids u0.. (each also sends anonymous events)
  int anonymous = 10;  // anonymous ids a0..
  int keys = 4;        // property names k0..
  int times = 40;      // distinct event times (kT0 + i * 1000): equal times collide
  int64_t t0_ms = 1'700'000'000'000;
};

// Events of project `project` with insert ids "e<i>": tracks of a user or
// an anonymous id, identifies (user_id with anonymous_id), aliases
// (previous_id -> user_id; some between two users, so some merges are
// refused), carrying conflicting $set / $set_once / $unset / $add (integers
// and decimals) on a few keys at colliding times.
std::vector<Event> RandomProfileEvents(uint64_t seed, const std::string& project,
                                       const ProfileEventsOptions& o = {});

// Every id the events name (user, anonymous and previous ids), sorted.
std::vector<std::string> IdsOf(const std::vector<Event>& events);

// id -> the JSON of its person (ops' UserProfileJson) computed by the
// profile library from all the events at once: what every store must answer
// for GET /v1/users/{id}, whatever the order and batching.
std::map<std::string, std::string> ModelProfiles(const std::string& project,
                                                 const std::vector<Event>& events);

// The behaviour before per-property state (the control): each batch's $set
// merged in (event time, insert_id) order over the stored object, the batch
// applied last winning; $set_once filling absent keys; $unset and $add
// ignored; no identity merge. distinct id -> properties JSON object.
std::map<std::string, std::string> LastBatchWinsProperties(
    const std::vector<std::vector<Event>>& batches_in_apply_order);

}  // namespace sluice::testing
