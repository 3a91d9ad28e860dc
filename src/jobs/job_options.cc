#include "jobs/job_options.h"

namespace sluice {
namespace {

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
    if (!ok) return false;
  }
  return true;
}

Status Bad(const std::string& base, const char* key, const std::string& why) {
  return Status::InvalidArgument("config key " + base + "." + key + ": " + why);
}

}  // namespace

Status ValidateJobOptions(const std::string& base, JobOptions* job) {
  if (!ValidName(job->name)) return Bad(base, "name", "required, 1-64 of [a-z0-9_-]");
  if (job->bit < 0 || job->bit > 62) return Bad(base, "bit", "required, 0..62");
  if (job->key == "user") {
    job->key_kind = JobKeyKind::kUser;
  } else if (job->key == "project") {
    job->key_kind = JobKeyKind::kProject;
  } else if (job->key.rfind("property:", 0) == 0 && job->key.size() > 9 &&
             job->key.size() <= 9 + 256) {
    job->key_kind = JobKeyKind::kProperty;
    job->key_property = job->key.substr(9);
  } else {
    return Bad(base, "key", "expected \"user\", \"project\" or \"property:NAME\"");
  }
  if (job->delay_ms < 0) return Bad(base, "delay", "must be >= 0");
  if (job->max_delay_ms < job->delay_ms) return Bad(base, "max_delay", "must be >= delay");
  if (job->url.rfind("http://", 0) != 0 && job->url.rfind("https://", 0) != 0) {
    return Bad(base, "url", "required, http:// or https://");
  }
  if (job->timeout_ms <= 0) return Bad(base, "timeout", "must be > 0");
  if (job->backoff.max_attempts < 1) return Bad(base, "max_attempts", "must be >= 1");
  if (job->backoff.cap_ms < job->backoff.base_ms) {
    return Bad(base, "backoff_cap", "must be >= backoff_base");
  }
  return Status::Ok();
}

}  // namespace sluice
