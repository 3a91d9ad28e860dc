// Small HTTP helpers for the handlers (ops, ingest): query strings, JSON
// answers, credentials, listen addresses. Handlers see only the
// request/response structs of http/http_server.h, never Beast. Pure
// functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_status.h"
#include "common/status.h"
#include "common/strings.h"
#include "http/http_server.h"

namespace sluice {

// How query strings are decoded: '+' is a space, malformed escapes stay literal.
inline constexpr PercentDecodeOptions kQueryDecoding{.plus_is_space = true, .strict = false};
// Every value of `key` in the raw query string, decoded (kQueryDecoding), in order.
std::vector<std::string> QueryValues(std::string_view query, std::string_view key);
// The first value of `key`, nullopt when absent.
std::optional<std::string> QueryValue(std::string_view query, std::string_view key);

// What an Authorization header carries. Scheme names are case-insensitive,
// spaces and tabs around the scheme and the value are ignored.
struct HttpCredentials {
  std::string basic_user;  // user part of Basic auth (the SDKs: key as user, empty password)
  std::string bearer;      // Bearer token
};
// "" fields when the header is absent, of another scheme, or not valid base64.
HttpCredentials ParseAuthorization(std::string_view header);

// The credential a request carries: its Bearer token, else its Basic user.
// "" when none.
std::string RequestCredential(const HttpRequest& req);

// Splits "HOST:PORT" / "[V6]:PORT". InvalidArgument when malformed.
Status SplitHostPort(const std::string& listen, std::string* host, int* port);
// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

HttpResponse JsonResponse(int status, std::string body);
// {"error":"message"} with the status of `code` (common/http_status.h).
HttpResponse JsonError(Code code, std::string_view message);
// {"error":"CODE: message"} with the status of the code.
HttpResponse StatusError(const Status& status);
// The body of JsonError: {"error":"message"}.
std::string JsonErrorBody(std::string_view message);

}  // namespace sluice
