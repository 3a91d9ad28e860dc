// `sluice bench ingest`: an HTTP load generator for POST /v1/events.
//
// C keep-alive connections on Boost.Asio each send requests of B native
// events with unique insert_ids (a random run prefix + a counter), an optional
// fraction re-using an earlier id (duplicates the server must drop). Request
// bodies are built from a per-connection template whose id digits are patched
// in place, so the timed path does no JSON work; with gzip every body is
// compressed before the clock starts. Thread-compatible: one run at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/status.h"

namespace sluice {

struct IngestBenchOptions {
  std::string url = "http://127.0.0.1:8080/v1/events";  // http only; path defaults to /v1/events
  int64_t events = 100000;    // total events to send (rounded up to whole batches), > 0
  int32_t batch = 100;        // events per request, 1..1000
  int32_t connections = 64;   // concurrent keep-alive connections, >= 1
  int32_t event_bytes = 300;  // approximate size of one event's JSON
  double dup_frac = 0;        // fraction of events re-using an earlier insert_id, 0..1
  bool random_ids = false;    // insert_ids spread like random ones (default: counter order)
  bool gzip = false;          // Content-Encoding: gzip (bodies compressed up front)
  std::string write_key;      // sent as "Authorization: Bearer KEY" when non-empty
  double rate = 0;            // target events/s (open loop); 0 = as fast as possible
  int32_t threads = 1;        // client I/O threads
  int64_t users = 10000;      // distinct user ids in the generated events
  double window_s = 0;        // > 0: also report ack latency per window of this many seconds
};

// The requests sent (scheduled, with a rate) in one window of the run.
struct IngestWindow {
  double start_s = 0;        // window start, seconds after the first send
  int64_t events_ok = 0;     // events in 200-answered requests sent in the window
  LatencySummary latency;    // their ack latency
};

struct IngestBenchResult {
  int64_t requests_ok = 0;      // 200 answers
  int64_t requests_failed = 0;  // non-200 answers and transport errors
  int64_t events_ok = 0;        // events in 200-answered requests
  int64_t accepted = 0;         // sum of "accepted" in the answers
  int64_t duplicates = 0;       // sum of "duplicates" in the answers
  double seconds = 0;           // first send to last answer
  double client_cpu_s = 0;      // CPU the load generator used meanwhile (user + system)
  double events_per_s = 0;      // events_ok / seconds
  double requests_per_s = 0;
  int64_t body_bytes = 0;                 // bytes of one request body (uncompressed)
  LatencySummary latency;                 // ack latency; from the scheduled send time when rate > 0
  std::map<std::string, int64_t> errors;  // "HTTP 503", "connect: ...", ... -> count
  std::vector<IngestWindow> windows;      // with window_s > 0, in time order

  std::string ToJson(const IngestBenchOptions& o) const;
  std::string ToText(const IngestBenchOptions& o) const;
};

// Runs the load. Fails only on bad options or when no connection could be
// made at all; per-request failures are counted in the result.
Result<IngestBenchResult> RunIngestBench(const IngestBenchOptions& options);

}  // namespace sluice
