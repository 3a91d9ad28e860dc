#include "http/http_util.h"

#include <algorithm>
#include <charconv>
#include <cctype>

#include "common/event.h"

namespace sluice {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Base64 decoding for Basic auth; nullopt when malformed.
std::optional<std::string> Base64Decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = val(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      const int hi = HexValue(s[i + 1]);
      const int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::vector<std::string> QueryValues(std::string_view query, std::string_view key) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view part = query.substr(pos, amp - pos);
    const size_t eq = part.find('=');
    const std::string name = PercentDecode(part.substr(0, eq), true);
    if (!part.empty() && name == key) {
      out.push_back(eq == std::string_view::npos ? std::string()
                                                 : PercentDecode(part.substr(eq + 1), true));
    }
    pos = amp + 1;
  }
  return out;
}

std::optional<std::string> QueryValue(std::string_view query, std::string_view key) {
  std::vector<std::string> all = QueryValues(query, key);
  if (all.empty()) return std::nullopt;
  return std::move(all.front());
}

std::string_view FindHeader(const HttpRequest& req, std::string_view lower_name) {
  for (const auto& [name, value] : req.headers) {
    if (name == lower_name) return value;
  }
  return {};
}

std::string RequestCredential(const HttpRequest& req) {
  std::string_view auth = FindHeader(req, "authorization");
  while (!auth.empty() && auth.back() == ' ') auth.remove_suffix(1);
  if (StartsWithNoCase(auth, "bearer ")) {
    std::string_view t = auth.substr(7);
    while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    return std::string(t);
  }
  if (StartsWithNoCase(auth, "basic ")) {
    std::optional<std::string> decoded = Base64Decode(auth.substr(6));
    if (!decoded) return {};
    return decoded->substr(0, decoded->find(':'));
  }
  return {};
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Fold every byte of the longer string so timing depends only on lengths.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0 && n > 0;
}


HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse JsonError(int status, std::string_view message) {
  std::string body = "{\"error\":";
  AppendJsonString(message, &body);
  body.push_back('}');
  return JsonResponse(status, std::move(body));
}

HttpResponse StatusError(const Status& status) {
  return JsonError(HttpStatusFor(status.code()), status.ToString());
}


Status SplitHostPort(const std::string& listen, std::string* host, int* port) {
  const std::string bad = "listen address \"" + listen + "\": expected HOST:PORT";
  size_t colon = std::string::npos;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return Status::InvalidArgument(bad);
    }
    *host = listen.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = listen.rfind(':');
    if (colon == std::string::npos) return Status::InvalidArgument(bad);
    *host = listen.substr(0, colon);
    if (host->find(':') != std::string::npos) return Status::InvalidArgument(bad);
  }
  if (host->empty()) return Status::InvalidArgument(bad);
  const std::string p = listen.substr(colon + 1);
  int v = -1;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (p.empty() || ec != std::errc() || ptr != p.data() + p.size() || v < 0 || v > 65535) {
    return Status::InvalidArgument(bad + " with PORT in 0..65535");
  }
  *port = v;
  return Status::Ok();
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  return host.rfind("127.", 0) == 0;
}

}  // namespace sluice
