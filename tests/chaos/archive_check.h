// The chaos checker's view of the archive directory (tests/chaos): what is
// stored (ReadArchive) and what was erased while the round ran (ArchiveWatch).
// Reads objects written by the archive consumer: <prefix>project=P/dt=D/
// hour=H/<first_seq>-<last_seq>-<content hash>.ndjson.zst, one JSON line per event with
// "project", "insert_id" and "seq". Thread-compatible.
#pragma once

#include <simdjson.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace sluice::testing {

// Every (project, insert_id) in the archive directory ("project/insert_id"),
// with the queue seqs it was stored under (one, unless it was stored twice).
// Unreadable objects or lines set `error` (the last one).
std::map<std::string, std::set<int64_t>> ReadArchive(const std::string& dir, std::string* error);

// Watches the archive directory during the round: each object is read when it
// appears and again when it is replaced (a new inode under the same key: two
// deliveries wrote one object key). A replacement that lacks a seq the
// replaced object held has erased archived events — the final ReadArchive
// cannot see that, it only sees the last version.
class ArchiveWatch {
 public:
  explicit ArchiveWatch(std::string dir) : dir_(std::move(dir)) {}

  // An event a replacement dropped from an object.
  struct Erased {
    std::string key;     // "project/insert_id"
    std::string object;  // the object's key, relative to the archive directory
  };

  // One pass; appends a description of each lossy replacement to `lossy`.
  void Poll(std::vector<std::string>* lossy);

  int64_t rewrites() const { return rewrites_; }  // objects replaced
  int64_t lossy() const { return lossy_; }        // replacements that dropped events
  // Every event some replacement dropped, by seq. Whether that erased its only
  // archive copy is for the caller to tell (against the final ReadArchive).
  const std::map<int64_t, Erased>& erased() const { return erased_; }

 private:
  struct Object {
    ino_t ino = 0;
    std::map<int64_t, std::string> events;  // seq -> "project/insert_id"
  };
  const std::string dir_;
  simdjson::dom::parser parser_;
  std::map<std::string, Object> objects_;
  std::map<int64_t, Erased> erased_;
  int64_t rewrites_ = 0;
  int64_t lossy_ = 0;
};

}  // namespace sluice::testing
