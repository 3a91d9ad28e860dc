#include "chaos/archive_check.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "common/status.h"
#include "consumers/archive/archive_consumer.h"

namespace sluice::testing {
namespace {

constexpr std::string_view kArchiveSuffix = ".ndjson.zst";

// Calls fn(project, insert_id, seq) for every line of one archive object; false
// (with `error` set) when the object cannot be read.
template <typename Fn>
bool ReadArchiveObject(const std::string& path, simdjson::dom::parser& parser, std::string* error,
                       Fn fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "archive object " + path + ": cannot open";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  Result<std::string> text = ZstdDecompress(ss.str());
  if (!text.ok()) {
    *error = "archive object " + path + ": " + text.status().ToString();
    return false;
  }
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    simdjson::dom::element el;
    std::string_view project, id;
    int64_t seq = 0;
    if (parser.parse(line).get(el) != simdjson::SUCCESS ||
        el["project"].get_string().get(project) != simdjson::SUCCESS ||
        el["insert_id"].get_string().get(id) != simdjson::SUCCESS ||
        el["seq"].get_int64().get(seq) != simdjson::SUCCESS) {
      *error = "archive object " + path + ": bad line";
      continue;
    }
    fn(project, id, seq);
  }
  return true;
}

}  // namespace

std::map<std::string, std::set<int64_t>> ReadArchive(const std::string& dir, std::string* error) {
  std::map<std::string, std::set<int64_t>> seen;
  std::error_code ec;
  if (!std::filesystem::exists(dir)) return seen;
  simdjson::dom::parser parser;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string path = it->path().string();
    if (!it->is_regular_file() || !std::string_view(path).ends_with(kArchiveSuffix)) continue;
    ReadArchiveObject(path, parser, error,
                      [&](std::string_view project, std::string_view id, int64_t seq) {
                        seen[std::string(project) + "/" + std::string(id)].insert(seq);
                      });
  }
  return seen;
}

void ArchiveWatch::Poll(std::vector<std::string>* lossy) {
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return;
  for (auto it = std::filesystem::recursive_directory_iterator(dir_, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string path = it->path().string();
    if (!std::string_view(path).ends_with(kArchiveSuffix)) continue;
    struct stat before {};
    if (::stat(path.c_str(), &before) != 0 || !S_ISREG(before.st_mode)) continue;
    auto found = objects_.find(path);
    if (found != objects_.end() && found->second.ino == before.st_ino) continue;
    std::map<int64_t, std::string> events;
    std::string error;
    if (!ReadArchiveObject(path, parser_, &error,
                           [&](std::string_view project, std::string_view id, int64_t seq) {
                             events[seq] = std::string(project) + "/" + std::string(id);
                           })) {
      continue;
    }
    struct stat after {};
    if (::stat(path.c_str(), &after) != 0 || after.st_ino != before.st_ino) continue;  // next pass
    if (found != objects_.end()) {
      ++rewrites_;
      const std::string object = path.substr(dir_.size());
      std::vector<int64_t> erased;
      for (const auto& [seq, key] : found->second.events) {
        if (events.count(seq)) continue;
        erased.push_back(seq);
        erased_[seq] = Erased{key, object};
      }
      if (!erased.empty()) {
        ++lossy_;
        std::string what = object + " was replaced by a version without " +
                           std::to_string(erased.size()) + " of its events (seq";
        for (size_t i = 0; i < erased.size() && i < 5; ++i) what += " " + std::to_string(erased[i]);
        lossy->push_back(what + ")");
      }
    }
    objects_[path] = Object{before.st_ino, std::move(events)};
  }
}

}  // namespace sluice::testing
