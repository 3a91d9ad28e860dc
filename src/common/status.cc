#include "common/status.h"

namespace sluice {

std::string_view CodeName(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kTooLarge: return "TOO_LARGE";
    case Code::kUnauthorized: return "UNAUTHORIZED";
    case Code::kForbidden: return "FORBIDDEN";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kBusy: return "BUSY";
    case Code::kLeaseLost: return "LEASE_LOST";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kIoError: return "IO_ERROR";
    case Code::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace sluice
