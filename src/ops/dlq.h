// Dead-letter helpers shared by the admin API and `sluice dlq`: rendering
// dead events and reading a DeadFilter from a request. Pure; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "http/http_server.h"
#include "queue/store.h"

namespace sluice {

// At most this many dead events per list call (limit= is clamped to it).
inline constexpr int32_t kMaxDeadList = 1000;
// At most this many seqs in one requeue/purge request.
inline constexpr size_t kMaxDeadSeqs = 100000;
// The error-text filter is at most this long.
inline constexpr size_t kMaxDeadErrorFilterBytes = 1024;

// {"dead":[{"seq","project","insert_id","attempts","done_mask","last_error",
//           "died_at","body":{...}}],"count":n}
std::string RenderDeadJson(const std::vector<DeadEvent>& dead);
std::string RenderDeadText(const std::vector<DeadEvent>& dead);

// Reads the filter from a JSON body {"seqs":[..],"project":..,"consumer":..,
// "error":..,"all":true} or, when the body is empty, from query params
// (seqs=1,2 or seq=1&seq=2, project=, consumer=, error=, all=true, limit=). `all` is set when the
// caller explicitly asked for every dead event.
Status ParseDeadFilter(const HttpRequest& req, DeadFilter* filter, bool* all);

bool DeadFilterIsEmpty(const DeadFilter& filter);

}  // namespace sluice
