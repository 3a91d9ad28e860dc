// Store test fixtures: open a fresh store of a given kind in a test's temp dir.
// Thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "queue/store.h"
#include "testing/testing.h"

namespace sluice::testing {

// A fresh store URL of `kind` ("sqlite" or "postgres"): a new file in `dir`,
// or a new PostgreSQL database (SLUICE_TEST_PG_URL). Adds a test failure and
// returns "" when it cannot.
std::string FreshStoreUrl(const std::string& kind, const TempDir& dir);

// Opens a store of `kind` with `overrides`. When overrides.url is empty or the
// default, a fresh URL (FreshStoreUrl) is used; pass an explicit url to open a
// second handle (another "replica") on the same database. Adds a test
// failure (never skips) and returns nullptr when the store cannot be opened.
StorePtr OpenTestStore(const std::string& kind, const TempDir& dir, StoreOptions overrides = {});

// Makes the database at `url` refuse to insert a queue row whose insert_id is
// `insert_id` (a trigger), to prove that Enqueue is all-or-nothing.
// "" on success, else the error.
std::string InjectEnqueueFailure(const std::string& kind, const std::string& url,
                                 const std::string& insert_id);

// `n` events named "open" of project "p" at `time_ms`, users u0..u4 in
// turn, insert ids "id-<i>", enqueued in one batch. "" or the error.
std::string EnqueueOpenEvents(Store& store, int n, int64_t time_ms);
// "" when the users u0..u4 of project "p" and the hourly counter "open" at
// `time_ms` count exactly `n` events (each event of EnqueueOpenEvents once),
// else what differs.
std::string OpenEventsCountedOnce(Store& store, int n, int64_t time_ms);

}  // namespace sluice::testing
