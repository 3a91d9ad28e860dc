// AuthOptions: who may write events and who may use the admin endpoints.
// Shared by ingest (write keys -> project) and ops (admin token, reads).
// Thread-compatible value type.
#pragma once

#include <map>
#include <string>

namespace sluice {

struct AuthOptions {
  std::string admin_token;                        // "" = admin endpoints open only on loopback
  std::map<std::string, std::string> write_keys;  // key -> project; empty = no auth
  bool enabled() const { return !write_keys.empty(); }
};

}  // namespace sluice
