// Small HTTP helpers for the ops handlers: query strings, headers, JSON
// answers, credentials. ops sees only the request/response structs of
// ingest/http_server.h, never Beast. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "http/http_server.h"

namespace sluice {

// Percent-decodes `s` ('+' as space when `plus_is_space`). Malformed escapes stay literal.
std::string PercentDecode(std::string_view s, bool plus_is_space);
// Every value of `key` in the raw query string, decoded, in order.
std::vector<std::string> QueryValues(std::string_view query, std::string_view key);
// The first value of `key`, nullopt when absent.
std::optional<std::string> QueryValue(std::string_view query, std::string_view key);
// First header named `lower_name` (names are lower-cased by the server), "" when absent.
std::string_view FindHeader(const HttpRequest& req, std::string_view lower_name);

// The credential a request carries: a Bearer token, or the user part of Basic
// auth (the convention of the Segment/Amplitude SDKs). "" when none.
std::string RequestCredential(const HttpRequest& req);

// Compares in time independent of where the strings differ (length still leaks).
bool ConstantTimeEquals(std::string_view a, std::string_view b);


// Splits "HOST:PORT" / "[V6]:PORT". InvalidArgument when malformed.
Status SplitHostPort(const std::string& listen, std::string* host, int* port);
// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

HttpResponse JsonResponse(int status, std::string body);
// {"error":"message"}
HttpResponse JsonError(int status, std::string_view message);
HttpResponse StatusError(const Status& status);

}  // namespace sluice
