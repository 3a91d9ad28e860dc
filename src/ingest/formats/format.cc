#include "ingest/formats/format.h"

#include <cstdio>
#include <random>

namespace sluice {

int32_t RetryAfterFor(const IngestOutcome& outcome) {
  if (!HttpRetryLater(outcome.status.code())) return 0;
  return outcome.retry_after_s > 0 ? outcome.retry_after_s : 1;
}

IngestReply NativeReply(const IngestOutcome& outcome, HttpDialect dialect) {
  IngestReply reply;
  reply.status = HttpStatusFor(outcome.status.code(), dialect);
  if (outcome.status.ok()) {
    reply.body = "{\"accepted\":" + std::to_string(outcome.accepted) +
                 ",\"duplicates\":" + std::to_string(outcome.duplicates) + "}";
    return reply;
  }
  reply.body = "{\"error\":";
  AppendJsonString(outcome.status.message(), &reply.body);
  if (outcome.index >= 0) {
    reply.body += ",\"index\":" + std::to_string(outcome.index);
  }
  if (!outcome.field.empty()) {
    reply.body += ",\"field\":";
    AppendJsonString(outcome.field, &reply.body);
  }
  reply.body.push_back('}');
  reply.retry_after_s = RetryAfterFor(outcome);
  return reply;
}

std::string RandomInsertId() {
  // Per-thread engine seeded from the OS: ids must not collide across
  // replicas, threads or restarts (they are dedup keys).
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  uint64_t hi = rng(), lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

}  // namespace sluice
