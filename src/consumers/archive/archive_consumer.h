// ArchiveConsumer (`type = "archive"`): writes events as zstd-compressed NDJSON
// objects, one object per delivered batch and (project, hour) partition, to a
// directory or to S3-compatible storage (SigV4).
//
// Object key (deterministic, so a redelivered batch overwrites its object):
//   [prefix]project=P/dt=YYYY-MM-DD/hour=HH/<first seq>-<last seq>.ndjson.zst
// P is the project, percent-encoded except A-Za-z0-9-_.~; the hour is UTC, of
// the event's receive time (partition_time = "received", default) or of its
// own time ("event"). Each line is the stored event with its queue columns in
// front: {"project":..,"insert_id":..,"seq":N,"event":..,"time":..,...}.
// Thread-safe: Deliver may run concurrently for different batches.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "consumers/api/consumer.h"
#include "http_client/http_client.h"
#include "http_client/s3_client.h"

namespace sluice {

struct ArchiveOptions {
  // Exactly one target: `dir` (local directory, created if missing) or
  // `s3.endpoint` (+ bucket, region, credentials; see S3Options).
  std::string dir;
  S3Options s3;
  std::string prefix;                    // prepended to every key, e.g. "events/"; default ""
  int32_t zstd_level = 3;                // 1..19; default 3
  bool partition_by_event_time = false;  // hour of the event's own time instead of receipt
  bool fsync = true;       // dir target: fsync file + directories before Deliver returns
  HttpClientOptions http;  // S3 target: timeouts, TLS
};

// Parses `[[consumer]] type = "archive"` options: dir, endpoint, bucket, region,
// path_style, access_key, secret_key, prefix, zstd_level, partition_time
// ("received" | "event"), fsync, timeout, connect_timeout, verify_tls.
Result<ArchiveOptions> ParseArchiveOptions(const ConsumerConfig& config);

// Registry factory.
Result<ConsumerPtr> MakeArchiveConsumer(const ConsumerConfig& config, uint64_t bit,
                                        Metrics* metrics);

class ArchiveConsumer final : public Consumer {
 public:
  // `metrics` may be null.
  static Result<std::unique_ptr<ArchiveConsumer>> Create(std::string name, uint64_t bit,
                                                         ArchiveOptions options, Metrics* metrics);
  ~ArchiveConsumer() override;

  bool in_store() const override { return false; }
  Status Deliver(const Delivery& delivery) override;

  // The key of the object holding seqs first..last of `project` in the hour
  // starting at `hour_epoch_ms`, whose uncompressed content is `lines`
  // (exposed for tests and tools). The key ends in a hash of the content:
  // the same events give the same key (a redelivery overwrites its object),
  // two different sets with the same first and last seq never share one.
  std::string ObjectKey(const std::string& project, int64_t hour_epoch_ms, int64_t first_seq,
                        int64_t last_seq, std::string_view lines) const;

 private:
  class Sink;
  class DirSink;
  class S3Sink;
  ArchiveConsumer(std::string name, uint64_t bit, ArchiveOptions options, Metrics* metrics);

  // Constant after construction.
  const ArchiveOptions options_;
  std::unique_ptr<Metrics> own_metrics_;  // when none was given
  std::unique_ptr<HttpClient> http_;      // S3 target only
  std::unique_ptr<Sink> sink_;
  Counter& objects_;
  Counter& bytes_;
  Counter& events_;
};

// zstd helpers (one frame). Decompress refuses output over `max_bytes`.
Result<std::string> ZstdCompress(std::string_view data, int level);
Result<std::string> ZstdDecompress(std::string_view frame, size_t max_bytes = 1u << 30);

}  // namespace sluice
