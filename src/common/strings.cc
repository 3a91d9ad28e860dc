#include "common/strings.h"

namespace sluice {

std::string RedactUrl(const std::string& url) {
  std::string out = url;
  // user:password@ in the authority.
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    const size_t at = out.find('@', scheme + 3);
    const size_t colon = out.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      out = out.substr(0, colon + 1) + "***" + out.substr(at);
    }
  }
  // password=... as a query or keyword parameter.
  for (size_t pos = out.find("password="); pos != std::string::npos;
       pos = out.find("password=", pos + 1)) {
    const size_t start = pos + 9;
    size_t end = out.find_first_of("& ", start);
    if (end == std::string::npos) end = out.size();
    out = out.substr(0, start) + "***" + out.substr(end);
  }
  return out;
}

}  // namespace sluice
