#include "consumers/archive/archive_consumer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/event.h"
#include "consumers/api/option_reader.h"

namespace sluice {
namespace {

constexpr int64_t kHourMs = 3600 * 1000;

Metrics& PickMetrics(Metrics* given, std::unique_ptr<Metrics>* own) {
  if (given != nullptr) return *given;
  *own = std::make_unique<Metrics>();
  return **own;
}

Status Errno(const std::string& what) {
  return Status::IoError(what + ": " + std::strerror(errno));
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open dir " + dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("fsync dir " + dir);
  return Status::Ok();
}

// Key component for a project name: '/' and anything unusual percent-encoded,
// "." and ".." too, so a project can never escape its partition directory.
std::string EncodeProject(const std::string& project) {
  if (project.empty()) return "%00";
  if (project == ".") return "%2E";
  if (project == "..") return "%2E%2E";
  return UriEncode(project);
}

}  // namespace

Result<std::string> ZstdCompress(std::string_view data, int level) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) return Status::Internal(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<std::string> ZstdDecompress(std::string_view frame, size_t max_bytes) {
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return Status::Internal("zstd: out of memory");
  std::string out;
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  size_t last = 0;
  for (;;) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    last = ZSTD_decompressStream(dctx, &o, &in);
    if (ZSTD_isError(last)) {
      ZSTD_freeDCtx(dctx);
      return Status::InvalidArgument(std::string("zstd: ") + ZSTD_getErrorName(last));
    }
    out.append(buf.data(), o.pos);
    if (out.size() > max_bytes) {
      ZSTD_freeDCtx(dctx);
      return Status::TooLarge("zstd: decompressed size over the limit");
    }
    // Done when all input is consumed and the decoder had nothing more to flush.
    if (in.pos == in.size && o.pos < o.size) break;
  }
  ZSTD_freeDCtx(dctx);
  if (last != 0) return Status::InvalidArgument("zstd: truncated frame");
  return out;
}

class ArchiveConsumer::Sink {
 public:
  virtual ~Sink() = default;
  virtual Status Write(const std::string& key, std::string_view data, int64_t deadline) = 0;
};

// Local directory: temp file + fsync + rename, so a reader never sees a
// partial object and a crash leaves either the old or the new one.
class ArchiveConsumer::DirSink final : public Sink {
 public:
  DirSink(const std::string& dir, bool fsync) : dir_(Normal(dir)), fsync_(fsync) {}

  Status Write(const std::string& key, std::string_view data, int64_t /*deadline*/) override {
    const std::filesystem::path path = dir_ / key;
    const std::string parent = path.parent_path().string();
    std::error_code ec;
    const bool created = std::filesystem::create_directories(parent, ec);
    if (ec) return Status::IoError("mkdir " + parent + ": " + ec.message());
    const std::string tmp = path.string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                            std::to_string(tmp_seq_.fetch_add(1));
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("open " + tmp);
    Status st = WriteAll(fd, data, tmp);
    if (st.ok() && fsync_ && ::fsync(fd) != 0) st = Errno("fsync " + tmp);
    if (::close(fd) != 0 && st.ok()) st = Errno("close " + tmp);
    if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Errno("rename " + tmp);
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
    if (!fsync_) return Status::Ok();
    // The rename is durable once its directory is; new directories need
    // their own parents synced, up to the archive root.
    SLUICE_RETURN_IF_ERROR(FsyncDir(parent));
    if (created) {
      for (std::filesystem::path p = path.parent_path(); p.has_parent_path() && p != dir_;
           p = p.parent_path()) {
        SLUICE_RETURN_IF_ERROR(FsyncDir(p.parent_path().string()));
      }
    }
    return Status::Ok();
  }

 private:
  // "a/b/" and "a/./b" -> "a/b": the fsync walk up stops at exactly this path.
  static std::filesystem::path Normal(const std::string& dir) {
    std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
    if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
    return p;
  }

  const std::filesystem::path dir_;
  const bool fsync_;
  std::atomic<uint64_t> tmp_seq_{0};
};

class ArchiveConsumer::S3Sink final : public Sink {
 public:
  explicit S3Sink(std::unique_ptr<S3Client> s3) : s3_(std::move(s3)) {}
  Status Write(const std::string& key, std::string_view data, int64_t deadline) override {
    return s3_->Put(key, data, "application/zstd", deadline);
  }

 private:
  const std::unique_ptr<S3Client> s3_;
};

Result<ArchiveOptions> ParseArchiveOptions(const ConsumerConfig& config) {
  ArchiveOptions o;
  OptionReader r(config.options, "consumer " + config.name);
  r.String("dir", &o.dir);
  r.String("endpoint", &o.s3.endpoint);
  r.String("bucket", &o.s3.bucket);
  r.String("region", &o.s3.region);
  r.Bool("path_style", &o.s3.path_style);
  r.String("access_key", &o.s3.access_key);
  r.String("secret_key", &o.s3.secret_key);
  r.String("prefix", &o.prefix);
  int64_t level = o.zstd_level;
  r.Int("zstd_level", &level, 1, 19);
  o.zstd_level = static_cast<int32_t>(level);
  std::string partition_time = "received";
  r.String("partition_time", &partition_time);
  r.Bool("fsync", &o.fsync);
  r.DurationMs("timeout", &o.http.timeout_ms);
  r.DurationMs("connect_timeout", &o.http.connect_timeout_ms);
  r.Bool("verify_tls", &o.http.verify_tls);
  SLUICE_RETURN_IF_ERROR(r.Finish());
  if (partition_time != "received" && partition_time != "event") {
    return r.Error("partition_time must be \"received\" or \"event\"");
  }
  o.partition_by_event_time = partition_time == "event";
  if (o.dir.empty() == o.s3.endpoint.empty()) {
    return r.Error("archive needs exactly one of `dir` or `endpoint` (S3)");
  }
  return o;
}

Result<ConsumerPtr> MakeArchiveConsumer(const ConsumerConfig& config, uint64_t bit,
                                        Metrics* metrics) {
  SLUICE_ASSIGN_OR_RETURN(ArchiveOptions o, ParseArchiveOptions(config));
  SLUICE_ASSIGN_OR_RETURN(auto c, ArchiveConsumer::Create(config.name, bit, std::move(o), metrics));
  return ConsumerPtr(std::move(c));
}

ArchiveConsumer::ArchiveConsumer(std::string name, uint64_t bit, ArchiveOptions options,
                                 Metrics* metrics)
    : Consumer(std::move(name), bit),
      options_(std::move(options)),
      objects_(PickMetrics(metrics, &own_metrics_)
                   .GetCounter("sluice_archive_objects_written_total",
                               "Objects written by archive consumers",
                               Labels({{"consumer", this->name()}}))),
      bytes_((metrics ? *metrics : *own_metrics_)
                 .GetCounter("sluice_archive_bytes_written_total",
                             "Compressed bytes written by archive consumers",
                             Labels({{"consumer", this->name()}}))),
      events_((metrics ? *metrics : *own_metrics_)
                  .GetCounter("sluice_archive_events_written_total",
                              "Event lines written by archive consumers (redeliveries included)",
                              Labels({{"consumer", this->name()}}))) {}

ArchiveConsumer::~ArchiveConsumer() = default;

Result<std::unique_ptr<ArchiveConsumer>> ArchiveConsumer::Create(std::string name, uint64_t bit,
                                                                 ArchiveOptions options,
                                                                 Metrics* metrics) {
  if (options.zstd_level < 1 || options.zstd_level > 19) {
    return Status::InvalidArgument("archive: zstd_level must be 1..19");
  }
  std::unique_ptr<ArchiveConsumer> c(
      new ArchiveConsumer(std::move(name), bit, std::move(options), metrics));
  const ArchiveOptions& o = c->options_;
  if (!o.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.dir, ec);
    if (ec) return Status::IoError("archive: mkdir " + o.dir + ": " + ec.message());
    c->sink_ = std::make_unique<DirSink>(o.dir, o.fsync);
  } else {
    c->http_ = std::make_unique<HttpClient>(o.http, metrics, c->name());
    SLUICE_ASSIGN_OR_RETURN(auto s3, S3Client::Create(o.s3, c->http_.get()));
    c->sink_ = std::make_unique<S3Sink>(std::move(s3));
  }
  return c;
}

std::string ArchiveConsumer::ObjectKey(const std::string& project, int64_t hour_epoch_ms,
                                       int64_t first_seq, int64_t last_seq,
                                       std::string_view lines) const {
  const std::time_t t = static_cast<std::time_t>(hour_epoch_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char part[64];
  std::snprintf(part, sizeof part, "/dt=%04d-%02d-%02d/hour=%02d/", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
  // Two deliveries of different row sets can share their first and last seq
  // (a paused replica's late write of a batch another replica has since
  // delivered in a different grouping): with first-last alone the later write
  // replaced the other object and could erase the only copy of an event.
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(lines.data(), lines.size())));
  return options_.prefix + "project=" + EncodeProject(project) + part + std::to_string(first_seq) +
         "-" + std::to_string(last_seq) + "-" + hash + ".ndjson.zst";
}

Status ArchiveConsumer::Deliver(const Delivery& delivery) {
  // Partition the batch; within a partition events keep ascending seq order.
  struct Part {
    std::string lines;
    int64_t first = 0;
    int64_t last = 0;
  };
  std::map<std::pair<std::string, int64_t>, Part> parts;
  for (const DecodedEvent& e : delivery.events) {
    const ClaimedEvent* row = e.row;
    if (e.event == nullptr) {
      // Decoders store only bodies ToBody wrote; a bad one is a bug upstream.
      return Status::Internal("archive: event seq " + std::to_string(row->seq) +
                              ": body does not parse");
    }
    const Event& ev = *e.event;
    int64_t t = options_.partition_by_event_time ? ev.time_ms : ev.received_ms;
    if (t <= 0) t = options_.partition_by_event_time ? ev.received_ms : ev.time_ms;
    if (t < 0) t = 0;
    Part& p = parts[{row->project, t - t % kHourMs}];
    if (p.lines.empty()) p.first = row->seq;
    p.last = row->seq;
    p.lines.append("{\"project\":");
    AppendJsonString(row->project, &p.lines);
    p.lines.append(",\"insert_id\":");
    AppendJsonString(row->insert_id, &p.lines);
    p.lines.append(",\"seq\":");
    p.lines.append(std::to_string(row->seq));
    // The body is a JSON object: splice its members after ours.
    std::string_view body = row->body;
    if (body.size() > 2) {
      p.lines.push_back(',');
      p.lines.append(body.substr(1));
    } else {
      p.lines.push_back('}');
    }
    p.lines.push_back('\n');
  }
  for (const auto& [k, p] : parts) {
    SLUICE_ASSIGN_OR_RETURN(std::string zst, ZstdCompress(p.lines, options_.zstd_level));
    const std::string key = ObjectKey(k.first, k.second, p.first, p.last, p.lines);
    SLUICE_RETURN_IF_ERROR(sink_->Write(key, zst, delivery.deadline_mono_ms));
    objects_.Inc();
    bytes_.Inc(static_cast<int64_t>(zst.size()));
  }
  events_.Inc(static_cast<int64_t>(delivery.events.size()));
  return Status::Ok();
}

}  // namespace sluice
