// IngestService: the write path. For every ingest route of every Format:
// CORS -> size limits -> bounded gunzip -> decode -> auth (write key ->
// project) -> backpressure -> group commit (Store::Enqueue) -> reply after
// commit. Error statuses come from the table of common/http_status.h, in the
// format's dialect. Thread-safe.
#pragma once

#include <functional>
#include <memory>

#include "common/clock.h"
#include "common/metrics.h"
#include "http/auth.h"
#include "http/http_server.h"
#include "ingest/formats/format.h"
#include "ingest/group_commit.h"
#include "ingest/ingest_options.h"
#include "queue/store.h"

namespace sluice {

class IngestService {
 public:
  // REQUIRES: store, metrics and clock outlive the service. `on_commit` runs
  // after every successful group commit (the watcher's Wake), on the
  // committer thread. `on_committed` (may be empty) gets the committed events
  // there, after their requests were answered (the console's live tail); keep
  // it cheap. `clock` gives the receive time (WallMs) and paces the
  // queue-depth refresh and the group commit's waits.
  IngestService(Store* store, IngestOptions limits, AuthOptions auth, Metrics* metrics,
                std::vector<FormatPtr> formats, std::function<void()> on_commit,
                GroupCommitter::Committed on_committed = {}, Clock* clock = &Clock::Real());
  ~IngestService();

  // Registers every format's routes on `server` (as the server fallback).
  // REQUIRES: `server` is stopped (HttpServer::Stop) before this service is
  // destroyed. Shutdown order: server.Stop(grace), then Stop() here.
  void RegisterRoutes(HttpServer* server);
  // Commits what is queued, answers it, and stops the committer thread.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
