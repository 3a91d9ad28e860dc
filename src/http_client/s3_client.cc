#include "http_client/s3_client.h"

#include <cstdlib>

namespace sluice {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string XmlUnescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out.push_back(s[i]);
      continue;
    }
    static constexpr std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (const auto& [ent, ch] : kEntities) {
      if (s.substr(i).starts_with(ent)) {
        out.push_back(ch);
        i += ent.size() - 1;
        done = true;
        break;
      }
    }
    if (!done) out.push_back('&');
  }
  return out;
}

// All texts of <tag>...</tag> in `xml` (S3 list answers are flat enough).
std::vector<std::string> XmlTexts(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    pos += open.size();
    const size_t end = xml.find(close, pos);
    if (end == std::string_view::npos) break;
    out.push_back(XmlUnescape(xml.substr(pos, end - pos)));
    pos = end + close.size();
  }
  return out;
}

}  // namespace

Status StatusFromHttp(const std::string& what, const ClientResponse& resp) {
  if (resp.status >= 200 && resp.status < 300) return Status::Ok();
  std::string msg = what + ": HTTP " + std::to_string(resp.status);
  if (!resp.body.empty()) msg += ": " + resp.body.substr(0, 512);
  if (resp.status == 429 || resp.status == 408 || resp.status >= 500) {
    return Status::Unavailable(std::move(msg));
  }
  return Status::IoError(std::move(msg));
}

Result<std::unique_ptr<S3Client>> S3Client::Create(S3Options o, HttpClient* http) {
  if (o.endpoint.empty()) return Status::InvalidArgument("s3: endpoint is required");
  if (!o.endpoint.starts_with("http://") && !o.endpoint.starts_with("https://")) {
    return Status::InvalidArgument("s3: endpoint must start with http:// or https://");
  }
  while (o.endpoint.ends_with('/')) o.endpoint.pop_back();
  if (o.bucket.empty()) return Status::InvalidArgument("s3: bucket is required");
  if (o.region.empty()) o.region = Env("AWS_REGION");
  if (o.region.empty()) o.region = Env("AWS_DEFAULT_REGION");
  if (o.region.empty()) o.region = "us-east-1";
  if (o.access_key.empty()) o.access_key = Env("AWS_ACCESS_KEY_ID");
  if (o.secret_key.empty()) o.secret_key = Env("AWS_SECRET_ACCESS_KEY");
  if (o.access_key.empty() || o.secret_key.empty()) {
    return Status::InvalidArgument(
        "s3: credentials missing (access_key/secret_key or AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY)");
  }
  return std::unique_ptr<S3Client>(new S3Client(std::move(o), http));
}

std::string S3Client::Url(const std::string& encoded_path, const std::string& query) const {
  std::string url;
  if (options_.path_style) {
    url = options_.endpoint + "/" + UriEncodePath(options_.bucket);
  } else {
    const size_t scheme_end = options_.endpoint.find("://") + 3;
    url = options_.endpoint.substr(0, scheme_end) + options_.bucket + "." +
          options_.endpoint.substr(scheme_end);
  }
  if (!encoded_path.empty()) url += "/" + encoded_path;
  if (!query.empty()) url += "?" + query;
  return url;
}

ClientRequest S3Client::Request(std::string method, std::string url) const {
  ClientRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.sigv4 = SigV4{options_.region, "s3", options_.access_key, options_.secret_key};
  return r;
}

Status S3Client::Put(const std::string& key, std::string_view body, const std::string& content_type,
                     int64_t deadline_mono_ms) {
  ClientRequest r = Request("PUT", Url(UriEncodePath(key), ""));
  r.body = body;
  r.headers.emplace_back("Content-Type", content_type);
  r.deadline_mono_ms = deadline_mono_ms;
  SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_->Send(r));
  return StatusFromHttp("s3 PUT " + key, resp);
}

Result<std::string> S3Client::Get(const std::string& key, int64_t deadline_mono_ms) {
  ClientRequest r = Request("GET", Url(UriEncodePath(key), ""));
  r.deadline_mono_ms = deadline_mono_ms;
  SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_->Send(r));
  if (resp.status == 404) return Status::NotFound("s3 GET " + key + ": not found");
  SLUICE_RETURN_IF_ERROR(StatusFromHttp("s3 GET " + key, resp));
  if (resp.truncated) return Status::TooLarge("s3 GET " + key + ": object over the body limit");
  return std::move(resp.body);
}

Status S3Client::CreateBucket() {
  ClientRequest r = Request("PUT", Url("", ""));
  r.headers.emplace_back("Content-Type", "application/xml");
  SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_->Send(r));
  if (resp.status == 409 && resp.body.find("BucketAlreadyOwnedByYou") != std::string::npos) {
    return Status::Ok();
  }
  if (resp.status == 409 && resp.body.find("BucketAlreadyExists") != std::string::npos) {
    return Status::Ok();  // s3rver says this for its own buckets too
  }
  return StatusFromHttp("s3 create bucket " + options_.bucket, resp);
}

Result<std::vector<std::string>> S3Client::List(const std::string& prefix) {
  std::vector<std::string> keys;
  std::string token;
  for (int page = 0; page < 100000; ++page) {
    // 7.88 signs the query as written: parameters sorted by name, values encoded.
    std::string q;
    if (!token.empty()) q += "continuation-token=" + UriEncode(token) + "&";
    q += "list-type=2&prefix=" + UriEncode(prefix);
    SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_->Send(Request("GET", Url("", q))));
    SLUICE_RETURN_IF_ERROR(StatusFromHttp("s3 LIST " + prefix, resp));
    if (resp.truncated) return Status::TooLarge("s3 LIST: answer over the body limit");
    for (auto& k : XmlTexts(resp.body, "Key")) keys.push_back(std::move(k));
    const auto truncated = XmlTexts(resp.body, "IsTruncated");
    const auto next = XmlTexts(resp.body, "NextContinuationToken");
    if (truncated.empty() || truncated[0] != "true" || next.empty()) break;
    token = next[0];
  }
  return keys;
}

}  // namespace sluice
