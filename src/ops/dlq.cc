#include "ops/dlq.h"

#include <simdjson.h>

#include <charconv>
#include <cstdio>

#include "common/event.h"
#include "common/time.h"
#include "http/http_util.h"

namespace sluice {
namespace {

bool ParseInt64(std::string_view s, int64_t* out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

Status AddSeqList(std::string_view list, DeadFilter* f) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    int64_t seq = 0;
    if (!ParseInt64(list.substr(pos, comma - pos), &seq) || seq <= 0) {
      return Status::InvalidArgument("seqs: expected positive integers separated by commas");
    }
    f->seqs.push_back(seq);
    if (f->seqs.size() > kMaxDeadSeqs) return Status::TooLarge("seqs: too many");
    pos = comma + 1;
  }
  return Status::Ok();
}

Status ParseBody(std::string_view body, DeadFilter* f, bool* all) {
  namespace od = simdjson::ondemand;
  od::parser parser;
  simdjson::padded_string padded(body);
  od::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) {
    return Status::InvalidArgument("body: malformed JSON");
  }
  od::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS) {
    return Status::InvalidArgument("body: expected a JSON object");
  }
  for (auto field_result : obj) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) != simdjson::SUCCESS ||
        field.unescaped_key().get(key) != simdjson::SUCCESS) {
      return Status::InvalidArgument("body: malformed JSON");
    }
    od::value v = field.value();
    if (key == "seqs") {
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return Status::InvalidArgument("seqs: expected an array of integers");
      }
      for (auto el : arr) {
        int64_t seq = 0;
        if (el.get_int64().get(seq) != simdjson::SUCCESS || seq <= 0) {
          return Status::InvalidArgument("seqs: expected an array of positive integers");
        }
        f->seqs.push_back(seq);
        if (f->seqs.size() > kMaxDeadSeqs) return Status::TooLarge("seqs: too many");
      }
    } else if (key == "project" || key == "consumer" || key == "error") {
      std::string_view s;
      if (v.get_string().get(s) != simdjson::SUCCESS) {
        return Status::InvalidArgument(std::string(key) + ": expected a string");
      }
      (key == "project" ? f->project : key == "consumer" ? f->consumer : f->error) =
          std::string(s);
    } else if (key == "all") {
      bool b = false;
      if (v.get_bool().get(b) != simdjson::SUCCESS) {
        return Status::InvalidArgument("all: expected true or false");
      }
      *all = b;
    } else if (key == "limit") {
      int64_t n = 0;
      if (v.get_int64().get(n) != simdjson::SUCCESS || n < 0) {
        return Status::InvalidArgument("limit: expected a non-negative integer");
      }
      f->limit = static_cast<int32_t>(std::min<int64_t>(n, kMaxDeadList));
    } else {
      return Status::InvalidArgument("body: unknown field \"" + std::string(key) + "\"");
    }
  }
  return Status::Ok();
}

}  // namespace

bool DeadFilterIsEmpty(const DeadFilter& f) {
  return f.seqs.empty() && f.project.empty() && f.consumer.empty() && f.error.empty();
}

Status ParseDeadFilter(const HttpRequest& req, DeadFilter* f, bool* all) {
  *all = false;
  std::string_view body = req.body;
  while (!body.empty() && (body.front() == ' ' || body.front() == '\n' || body.front() == '\r' ||
                           body.front() == '\t')) {
    body.remove_prefix(1);
  }
  if (!body.empty()) {
    SLUICE_RETURN_IF_ERROR(ParseBody(body, f, all));
  }
  // Query params add to (or stand in for) the body.
  for (const std::string& list : QueryValues(req.query, "seqs")) {
    SLUICE_RETURN_IF_ERROR(AddSeqList(list, f));
  }
  for (const std::string& one : QueryValues(req.query, "seq")) {
    SLUICE_RETURN_IF_ERROR(AddSeqList(one, f));
  }
  for (const std::string& one : QueryValues(req.query, "id")) {
    SLUICE_RETURN_IF_ERROR(AddSeqList(one, f));
  }
  if (auto p = QueryValue(req.query, "project")) f->project = *p;
  if (auto c = QueryValue(req.query, "consumer")) f->consumer = *c;
  if (auto e = QueryValue(req.query, "error")) f->error = *e;
  if (f->error.size() > kMaxDeadErrorFilterBytes) {
    return Status::InvalidArgument("error: at most " + std::to_string(kMaxDeadErrorFilterBytes) +
                                   " bytes");
  }
  if (auto a = QueryValue(req.query, "all")) *all = (*a == "true" || *a == "1");
  if (auto l = QueryValue(req.query, "limit")) {
    int64_t n = 0;
    if (!ParseInt64(*l, &n) || n < 0) {
      return Status::InvalidArgument("limit: expected a non-negative integer");
    }
    f->limit = static_cast<int32_t>(std::min<int64_t>(n, kMaxDeadList));
  }
  return Status::Ok();
}

std::string RenderDeadJson(const std::vector<DeadEvent>& dead) {
  std::string out = "{\"dead\":[";
  bool first = true;
  for (const DeadEvent& d : dead) {
    if (!first) out.push_back(',');
    first = false;
    out += "{\"seq\":" + std::to_string(d.seq) + ",\"project\":";
    AppendJsonString(d.project, &out);
    out += ",\"insert_id\":";
    AppendJsonString(d.insert_id, &out);
    out += ",\"attempts\":" + std::to_string(d.attempts) +
           ",\"done_mask\":" + std::to_string(d.done_mask) + ",\"last_error\":";
    AppendJsonString(d.last_error, &out);
    out += ",\"died_at\":";
    AppendJsonString(FormatIso8601Ms(d.died_at_ms), &out);
    // The body is the normalized event as stored: already minified JSON.
    out += ",\"body\":";
    out += d.body.empty() ? "null" : d.body;
    out += "}";
  }
  out += "],\"count\":" + std::to_string(dead.size()) + "}";
  return out;
}

std::string RenderDeadText(const std::vector<DeadEvent>& dead) {
  std::string out;
  char line[1024];
  std::snprintf(line, sizeof line, "%-10s %-16s %-36s %8s %-24s %s\n", "SEQ", "PROJECT",
                "INSERT_ID", "ATTEMPTS", "DIED_AT", "LAST_ERROR");
  out += line;
  for (const DeadEvent& d : dead) {
    std::snprintf(line, sizeof line, "%-10lld %-16s %-36s %8d %-24s %s\n",
                  static_cast<long long>(d.seq), d.project.c_str(), d.insert_id.c_str(), d.attempts,
                  FormatIso8601Ms(d.died_at_ms).c_str(), d.last_error.substr(0, 200).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "%zu dead event(s)\n", dead.size());
  out += line;
  return out;
}

}  // namespace sluice
