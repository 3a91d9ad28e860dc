#include "testing/decoded.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace sluice::testing {

const Event* ParsedBody(std::string_view body) {
  static std::mutex mu;
  static auto* parsed = new std::map<std::string, std::unique_ptr<Event>, std::less<>>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = parsed->find(body);
  if (it == parsed->end()) {
    auto e = std::make_unique<Event>();
    if (!ParseBody(body, e.get()).ok()) e.reset();
    it = parsed->emplace(std::string(body), std::move(e)).first;
  }
  return it->second.get();
}

std::vector<DecodedEvent> Decoded(std::span<const ClaimedEvent> rows) {
  std::vector<DecodedEvent> out;
  out.reserve(rows.size());
  for (const ClaimedEvent& row : rows) out.push_back({&row, ParsedBody(row.body)});
  return out;
}

std::vector<DecodedEvent> Decoded(std::span<const ClaimedEvent* const> rows) {
  std::vector<DecodedEvent> out;
  out.reserve(rows.size());
  for (const ClaimedEvent* row : rows) out.push_back({row, ParsedBody(row->body)});
  return out;
}

}  // namespace sluice::testing
