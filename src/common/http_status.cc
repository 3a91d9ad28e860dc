#include "common/http_status.h"

namespace sluice {
namespace {

// Columns: default, segment, amplitude, posthog, mixpanel.
constexpr HttpStatusRow kTable[] = {
    {Code::kOk, false, {200, 200, 200, 200, 200}},
    {Code::kInvalidArgument, false, {400, 400, 400, 400, 400}},
    {Code::kTooLarge, false, {413, 413, 413, 413, 413}},
    // Amplitude's SDK drops a batch at once on a 400 whose error starts with
    // "Invalid API key" (the body is phrased by formats/amplitude.cc).
    {Code::kUnauthorized, false, {401, 401, 400, 401, 401}},
    {Code::kForbidden, false, {403, 403, 403, 403, 403}},
    {Code::kNotFound, false, {404, 404, 404, 404, 404}},
    // The SDKs wait out a 429's Retry-After (analytics-node without spending
    // a retry, Amplitude 30 s per attempt) and give up sooner on 503.
    {Code::kBusy, true, {503, 429, 429, 429, 429}},
    {Code::kLeaseLost, false, {409, 409, 409, 409, 409}},
    {Code::kUnavailable, true, {503, 503, 503, 503, 503}},
    {Code::kIoError, false, {500, 500, 500, 500, 500}},
    {Code::kInternal, false, {500, 500, 500, 500, 500}},
};

constexpr bool RowsInEnumOrder() {
  for (size_t i = 0; i < std::size(kTable); ++i) {
    if (static_cast<size_t>(kTable[i].code) != i) return false;
  }
  return static_cast<size_t>(Code::kInternal) + 1 == std::size(kTable);
}
static_assert(RowsInEnumOrder(), "one row per Code, in enum order");

const HttpStatusRow* RowFor(Code code) {
  const auto i = static_cast<size_t>(code);
  return i < std::size(kTable) ? &kTable[i] : nullptr;
}

}  // namespace

std::span<const HttpStatusRow> HttpStatusTable() { return kTable; }

int HttpStatusFor(Code code, HttpDialect dialect) {
  const HttpStatusRow* row = RowFor(code);
  const auto d = static_cast<size_t>(dialect);
  if (row == nullptr) row = RowFor(Code::kInternal);
  return d < kHttpDialectCount ? row->status[d] : row->status[0];
}

bool HttpRetryLater(Code code) {
  const HttpStatusRow* row = RowFor(code);
  return row != nullptr && row->retry_later;
}

}  // namespace sluice
