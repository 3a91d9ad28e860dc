#include "common/status.h"

namespace sluice {

std::string_view CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kTooLarge: return "TOO_LARGE";
    case Code::kUnauthorized: return "UNAUTHORIZED";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kBusy: return "BUSY";
    case Code::kLeaseLost: return "LEASE_LOST";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kIoError: return "IO_ERROR";
    case Code::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kTooLarge:
      return 413;
    case Code::kUnauthorized:
      return 401;
    case Code::kNotFound:
      return 404;
    case Code::kBusy:
      return 503;
    case Code::kUnavailable:
      return 503;
    case Code::kLeaseLost:
      return 409;
    case Code::kIoError:
      return 500;
    case Code::kInternal:
      return 500;
  }
  return 500;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace sluice
