// `sluice send`: posts events to a running sluice from the shell or an NDJSON
// file, in batches, over HTTP (POST /v1/events).
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "app/cli.h"
#include "common/event.h"
#include "common/http_status.h"
#include "common/time.h"
#include "http_client/simple_http.h"
#include "ingest/formats/native.h"

namespace sluice {
namespace {

// Events per POST: half the server's default limit of 1,000.
constexpr int32_t kMaxSendBatch = 500;
// Keeps a batch under the server's default 5 MiB body limit.
constexpr size_t kMaxSendBatchBytes = 4 << 20;

struct SendFlags {
  std::string url = "http://127.0.0.1:8080";
  std::string write_key;
  std::string file;
  std::string event;
  std::string user;
  std::string anonymous_id;
  std::string insert_id;
  std::string time;
  std::vector<std::string> props;
  int32_t count = 1;
  int32_t batch = kMaxSendBatch;
};

// A --prop value: JSON numbers, true/false/null and JSON objects/arrays stay
// as they are, everything else becomes a string.
std::string PropValueJson(const std::string& v) {
  simdjson::dom::parser parser;
  simdjson::dom::element el;
  if (!v.empty() && parser.parse(v).get(el) == simdjson::SUCCESS && !el.is_string()) return v;
  std::string out;
  AppendJsonString(v, &out);
  return out;
}

// The event of the flags (`index` of --count), in native JSON.
Result<std::string> BuildEvent(const SendFlags& f, int index) {
  if (f.event.empty()) return Status::InvalidArgument("--event is required without --file");
  if (f.user.empty() && f.anonymous_id.empty()) {
    return Status::InvalidArgument("--user or --anonymous-id is required");
  }
  Event e;
  e.event = f.event;
  e.user_id = f.user;
  e.anonymous_id = f.anonymous_id;
  if (!f.insert_id.empty()) {
    e.insert_id = f.count > 1 ? f.insert_id + "-" + std::to_string(index) : f.insert_id;
  }
  if (!f.time.empty()) {
    std::optional<int64_t> t = ParseTimeMs(f.time);
    if (!t || *t <= 0) {
      return Status::InvalidArgument("--time expects epoch milliseconds or ISO-8601, got \"" +
                                     f.time + "\"");
    }
    e.time_ms = *t;
  }
  if (!f.props.empty()) {
    e.properties = "{";
    for (size_t i = 0; i < f.props.size(); ++i) {
      const size_t eq = f.props[i].find('=');
      if (eq == std::string::npos || eq == 0) {
        return Status::InvalidArgument("--prop expects KEY=VALUE, got \"" + f.props[i] + "\"");
      }
      if (i > 0) e.properties += ",";
      AppendJsonString(f.props[i].substr(0, eq), &e.properties);
      e.properties += ":" + PropValueJson(f.props[i].substr(eq + 1));
    }
    e.properties += "}";
  }
  std::string out;
  EncodeNativeEvent(e, &out);
  return out;
}

struct SendTotals {
  int64_t sent = 0;
  int64_t accepted = 0;
  int64_t duplicates = 0;
};

Status PostBatch(const SendFlags& f, const std::vector<std::string>& events, SendTotals* totals) {
  NativeBodyBuilder body;
  for (const std::string& e : events) body.AddRaw(e);
  SimpleHttpRequest req;
  req.method = "POST";
  std::string base = f.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url = base + "/v1/events";
  req.body = body.Finish();
  req.headers.emplace_back("Content-Type", "application/json");
  if (!f.write_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + f.write_key);
  Result<SimpleHttpResponse> resp = SimpleHttp(req);
  if (!resp.ok()) return resp.status();
  if (resp->status != kHttpOk) {
    return Status::InvalidArgument("HTTP " + std::to_string(resp->status) + ": " +
                                   resp->body.substr(0, 2000));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  int64_t accepted = 0;
  int64_t duplicates = 0;
  if (parser.parse(resp->body).get(doc) == simdjson::SUCCESS) {
    if (doc["accepted"].get(accepted) != simdjson::SUCCESS) accepted = 0;
    if (doc["duplicates"].get(duplicates) != simdjson::SUCCESS) duplicates = 0;
  }
  totals->sent += static_cast<int64_t>(events.size());
  totals->accepted += accepted;
  totals->duplicates += duplicates;
  return Status::Ok();
}

int RunSend(const SendFlags& f) {
  if (f.batch < 1 || f.batch > kMaxSendBatch) {
    std::fprintf(stderr, "sluice send: --batch must be in 1..%d\n", kMaxSendBatch);
    return 2;
  }
  SendTotals totals;
  std::vector<std::string> batch;
  size_t batch_bytes = 0;
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    Status st = PostBatch(f, batch, &totals);
    batch.clear();
    batch_bytes = 0;
    if (!st.ok()) {
      std::fprintf(stderr, "sluice send: %s\n", st.message().c_str());
      return false;
    }
    return true;
  };
  auto add = [&](std::string event) -> bool {
    if (!batch.empty() && batch_bytes + event.size() > kMaxSendBatchBytes && !flush()) {
      return false;
    }
    batch_bytes += event.size() + 1;
    batch.push_back(std::move(event));
    return static_cast<int32_t>(batch.size()) < f.batch || flush();
  };

  if (!f.file.empty()) {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (f.file != "-") {
      file.open(f.file);
      if (!file) {
        std::fprintf(stderr, "sluice send: cannot read %s\n", f.file.c_str());
        return 1;
      }
      in = &file;
    }
    std::string line;
    int64_t line_no = 0;
    while (std::getline(*in, line)) {
      ++line_no;
      const size_t start = line.find_first_not_of(" \t\r");
      if (start == std::string::npos) continue;
      const size_t end = line.find_last_not_of(" \t\r");
      std::string event = line.substr(start, end - start + 1);
      if (event.front() != '{' || event.back() != '}') {
        std::fprintf(stderr, "sluice send: %s:%lld: expected one JSON object per line\n",
                     f.file.c_str(), static_cast<long long>(line_no));
        return 1;
      }
      if (!add(std::move(event))) return 1;
    }
  } else {
    for (int32_t i = 0; i < f.count; ++i) {
      Result<std::string> event = BuildEvent(f, i);
      if (!event.ok()) {
        std::fprintf(stderr, "sluice send: %s\n", event.status().message().c_str());
        return 2;
      }
      if (!add(std::move(event).value())) return 1;
    }
  }
  if (!flush()) return 1;
  std::printf("sent %lld event(s): accepted %lld, duplicates %lld\n",
              static_cast<long long>(totals.sent), static_cast<long long>(totals.accepted),
              static_cast<long long>(totals.duplicates));
  return 0;
}

}  // namespace

void AddSendCommand(CLI::App* app, CliAction* run) {
  auto f = std::make_shared<SendFlags>();
  CLI::App* cmd = app->add_subcommand("send", "Post events to a running sluice (POST /v1/events)");
  cmd->add_option("--url", f->url, "Base URL of sluice (default http://127.0.0.1:8080)");
  cmd->add_option("--write-key", f->write_key, "Write key (sent as Authorization: Bearer)");
  cmd->add_option("--file", f->file, "NDJSON file of events, one object per line ('-' = stdin)");
  cmd->add_option("--event", f->event, "Event name");
  cmd->add_option("--user", f->user, "user_id");
  cmd->add_option("--anonymous-id", f->anonymous_id, "anonymous_id");
  cmd->add_option("--insert-id", f->insert_id, "insert_id (dedup key; -N appended with --count)");
  cmd->add_option("--time", f->time, "Event time, epoch ms or ISO-8601 (default now)");
  cmd->add_option("--prop", f->props, "Property KEY=VALUE (repeatable)");
  cmd->add_option("--count", f->count, "Send the event this many times (default 1)");
  cmd->add_option("--batch", f->batch, "Events per request (default and max 500)");
  cmd->callback([f, run] { *run = [f] { return RunSend(*f); }; });
}

}  // namespace sluice
