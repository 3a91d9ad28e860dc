// Small string helpers shared by every layer. Pure functions; thread-safe.
#pragma once

#include <string>

namespace sluice {

// "postgres://user:secret@host/db" -> "postgres://user:***@host/db"; also
// masks password=... parameters. For logs and messages.
std::string RedactUrl(const std::string& url);

}  // namespace sluice
