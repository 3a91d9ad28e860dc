// S3Client: the few S3 calls sluice needs (PUT/GET object, create bucket,
// list keys) over HttpClient with AWS SigV4. Written for Debian 12's libcurl
// 7.88.1, whose SigV4 signs path and query exactly as given: keys are
// percent-encoded here (all but A-Za-z0-9-_.~/), query parameters are written
// sorted and RFC 3986-encoded, x-amz-content-sha256 is set by HttpClient,
// Content-Type is always explicit. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "http_client/http_client.h"

namespace sluice {

struct S3Options {
  std::string endpoint;    // "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:9000"
  std::string region;      // "" = $AWS_REGION, else $AWS_DEFAULT_REGION, else "us-east-1"
  std::string bucket;      // REQUIRES: non-empty
  bool path_style = true;  // endpoint/bucket/key (true) or bucket.endpoint/key
  std::string access_key;  // "" = $AWS_ACCESS_KEY_ID
  std::string secret_key;  // "" = $AWS_SECRET_ACCESS_KEY
};

class S3Client {
 public:
  // Fills region/credentials from the environment; InvalidArgument when
  // something required is missing.
  static Result<std::unique_ptr<S3Client>> Create(S3Options options, HttpClient* http);

  // PUT an object (overwrites). kUnavailable for transport errors and 5xx/429,
  // kIoError for other non-2xx answers (the S3 error body is in the message).
  Status Put(const std::string& key, std::string_view body, const std::string& content_type,
             int64_t deadline_mono_ms = 0);
  Result<std::string> Get(const std::string& key, int64_t deadline_mono_ms = 0);
  // PUT bucket; an existing bucket owned by us is not an error.
  Status CreateBucket();
  // ListObjectsV2 with `prefix`, following continuation tokens.
  Result<std::vector<std::string>> List(const std::string& prefix);

  const S3Options& options() const { return options_; }

 private:
  S3Client(S3Options options, HttpClient* http) : options_(std::move(options)), http_(http) {}
  std::string Url(const std::string& encoded_path, const std::string& query) const;
  ClientRequest Request(std::string method, std::string url) const;

  // Constant after construction.
  const S3Options options_;
  HttpClient* const http_;
};

// Maps an HTTP answer of a write to a Status (2xx ok; 429/5xx unavailable).
Status StatusFromHttp(const std::string& what, const ClientResponse& resp);

}  // namespace sluice
