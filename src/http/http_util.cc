#include "http/http_util.h"

#include <charconv>

#include "common/event.h"

namespace sluice {

std::vector<std::string> QueryValues(std::string_view query, std::string_view key) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view part = query.substr(pos, amp - pos);
    const size_t eq = part.find('=');
    const std::string name = *PercentDecode(part.substr(0, eq), kQueryDecoding);
    if (!part.empty() && name == key) {
      out.push_back(eq == std::string_view::npos
                        ? std::string()
                        : *PercentDecode(part.substr(eq + 1), kQueryDecoding));
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

HttpCredentials ParseAuthorization(std::string_view header) {
  HttpCredentials out;
  const std::string_view authz = Trim(header);
  if (authz.size() > 6 && StartsWithNoCase(authz, "basic ")) {
    if (auto decoded = Base64Decode(Trim(authz.substr(6)))) {
      out.basic_user = decoded->substr(0, decoded->find(':'));
    }
  } else if (authz.size() > 7 && StartsWithNoCase(authz, "bearer ")) {
    out.bearer = std::string(Trim(authz.substr(7)));
  }
  return out;
}

std::string RequestCredential(const HttpRequest& req) {
  HttpCredentials c = ParseAuthorization(req.Header("authorization"));
  return c.bearer.empty() ? std::move(c.basic_user) : std::move(c.bearer);
}

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

std::string JsonErrorBody(std::string_view message) {
  std::string body = "{\"error\":";
  AppendJsonString(message, &body);
  body.push_back('}');
  return body;
}

HttpResponse JsonError(Code code, std::string_view message) {
  return JsonResponse(HttpStatusFor(code), JsonErrorBody(message));
}

HttpResponse StatusError(const Status& status) {
  return JsonError(status.code(), status.ToString());
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
