// Helpers for the SDK wire-format decoder tests: build an IngestRequest, gzip,
// base64, and pick a format the way the service routes.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "common/time.h"
#include "ingest/formats/format.h"
#include "ingest/formats/gzip.h"
#include "ingest/formats/registry.h"

namespace sluice::testing {

// Receive time used by every decode in these tests: 2026-11-27T07:00:00Z.
inline constexpr int64_t kNowMs = 1795762800000;

struct TestRequest {
  std::string method = "POST";
  std::string path;
  std::string query;
  std::string content_type = "application/json";
  std::string body;
  std::string basic_user;
};

inline DecodeResult DecodeWith(const Format& format, const TestRequest& t,
                               const DecodeLimits& limits = DecodeLimits()) {
  IngestRequest req;
  req.method = t.method;
  req.path = t.path;
  req.query = t.query;
  req.content_type = t.content_type;
  req.body = t.body;
  req.basic_user = t.basic_user;
  req.now_ms = kNowMs;
  return format.Decode(req, limits);
}

// The format the service would route (method, path) to, nullptr when none.
// The formats live as long as the process (tests only).
inline const Format* RouteFor(std::string_view method, std::string_view path) {
  static const std::vector<FormatPtr>* formats = new std::vector<FormatPtr>(AllFormats());
  for (const auto& f : *formats) {
    if (f->Matches(method, path)) return f.get();
  }
  return nullptr;
}

inline const Format& FormatNamed(std::string_view name) {
  static const std::vector<FormatPtr>* formats = new std::vector<FormatPtr>(AllFormats());
  for (const auto& f : *formats) {
    if (f->name() == name) return *f;
  }
  ADD_FAILURE() << "no format " << name;
  std::abort();
}

inline std::string Gzip(std::string_view in) {
  Result<std::string> out = Compress(in, Compression::kGzip, 1);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? std::move(out).value() : std::string();
}

inline std::string Base64(std::string_view in) {
  static const char* kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.append("==");
  } else if (i + 2 == in.size()) {
    const uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

// Percent-encodes everything but unreserved characters (what Node's
// querystring.stringify does to the base64 in Mixpanel's GET URLs).
inline std::string PercentEncode(std::string_view in) {
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out.append(buf);
    }
  }
  return out;
}

inline int64_t Ms(std::string_view iso) { return ParseIso8601Ms(iso).value_or(-1); }

inline IngestOutcome Outcome(Status st, int64_t events = 0, std::string context = "") {
  IngestOutcome o;
  o.status = std::move(st);
  o.events = events;
  o.accepted = events;
  o.now_ms = kNowMs;
  o.body_bytes = 1234;
  o.reply_context = std::move(context);
  if (o.status.code() == Code::kBusy || o.status.code() == Code::kUnavailable) {
    o.retry_after_s = 5;
  }
  return o;
}

}  // namespace sluice::testing
