// ArchiveConsumer against a real directory and a real S3 server (s3rver with
// the strict SigV4 wrapper, tests/s3, started by scripts/s3rver-start.sh).
#include "consumers/archive/archive_consumer.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/time.h"
#include "consumers/registry/registry.h"
#include "testing/decoded.h"
#include "testing/sink_servers.h"

namespace sluice {
namespace {

using testing::Decoded;
using testing::MakeEvents;

// 2024-05-01T10:59:50Z: a batch of 20 events received one second apart spans
// hours 10 and 11.
const int64_t kBase = *ParseIso8601Ms("2024-05-01T10:59:50Z");

// Splits "project=P/dt=YYYY-MM-DD/hour=HH/F-L-H.ndjson.zst" into {P, date, HH, F, L}
// (H: 16 hex digits of content hash; no std::regex: GCC 12 warns inside
// <regex> under ASan with -Werror).
bool ParseKey(const std::string& key, std::vector<std::string>* parts) {
  parts->clear();
  size_t pos = 0;
  for (const char* field : {"project=", "dt=", "hour="}) {
    if (key.compare(pos, std::strlen(field), field) != 0) return false;
    pos += std::strlen(field);
    const size_t slash = key.find('/', pos);
    if (slash == std::string::npos) return false;
    parts->push_back(key.substr(pos, slash - pos));
    pos = slash + 1;
  }
  const std::string file = key.substr(pos);
  const size_t dash = file.find('-');
  const size_t dash2 = dash == std::string::npos ? dash : file.find('-', dash + 1);
  const size_t dot = file.find(".ndjson.zst");
  if (dash2 == std::string::npos || dot == std::string::npos || dot + 11 != file.size() ||
      dot != dash2 + 17) {
    return false;
  }
  parts->push_back(file.substr(0, dash));
  parts->push_back(file.substr(dash + 1, dash2 - dash - 1));
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  const std::string hash = file.substr(dash2 + 1, 16);
  return (*parts)[1].size() == 10 && (*parts)[2].size() == 2 && digits((*parts)[2]) &&
         digits((*parts)[3]) && digits((*parts)[4]) &&
         hash.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The key without its content hash: ".../F-L.ndjson.zst".
std::string WithoutHash(const std::string& key) {
  const size_t dot = key.rfind(".ndjson.zst");
  if (dot == std::string::npos || dot < 17) return key;
  return key.substr(0, dot - 17) + key.substr(dot);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// insert_id -> times seen, from every object; checks each line against its key.
void Collect(const std::string& key, const std::string& zst, std::map<std::string, int>* seen) {
  std::vector<std::string> m;
  ASSERT_TRUE(ParseKey(key, &m)) << key;
  Result<std::string> ndjson = ZstdDecompress(zst);
  ASSERT_TRUE(ndjson.ok()) << key << ": " << ndjson.status().ToString();
  simdjson::dom::parser parser;
  std::istringstream lines(*ndjson);
  std::string line;
  int64_t min_seq = INT64_MAX, max_seq = 0;
  while (std::getline(lines, line)) {
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    std::string_view project, insert_id, event;
    int64_t seq = 0, received = 0;
    ASSERT_EQ(doc["project"].get(project), simdjson::SUCCESS);
    ASSERT_EQ(doc["insert_id"].get(insert_id), simdjson::SUCCESS);
    ASSERT_EQ(doc["seq"].get(seq), simdjson::SUCCESS);
    ASSERT_EQ(doc["event"].get(event), simdjson::SUCCESS);
    ASSERT_EQ(doc["received"].get(received), simdjson::SUCCESS);
    EXPECT_EQ(UriEncode(std::string(project)), m[0]);
    const std::string iso = FormatIso8601Ms(received);
    EXPECT_EQ(iso.substr(0, 10), m[1]) << line;
    EXPECT_EQ(iso.substr(11, 2), m[2]) << line;
    min_seq = std::min(min_seq, seq);
    max_seq = std::max(max_seq, seq);
    (*seen)[std::string(insert_id)]++;
  }
  EXPECT_EQ(std::to_string(min_seq), m[3]);
  EXPECT_EQ(std::to_string(max_seq), m[4]);
}

// Relative paths of all regular files under `dir`.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      out[std::filesystem::relative(e.path(), dir).string()] = ReadFile(e.path().string());
    }
  }
  return out;
}

Delivery Deliv(const std::vector<DecodedEvent>& ptrs) {
  Delivery d;
  d.events = ptrs;
  return d;
}

TEST(ArchiveDir, EveryEventLandsInItsProjectHourObject) {
  testing::TempDir tmp;
  ArchiveOptions o;
  o.dir = tmp.File("archive");
  auto c = ArchiveConsumer::Create("archive", 1 << 5, o, nullptr);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto a = MakeEvents(1, 20, "shop", kBase);
  auto b = MakeEvents(21, 5, "blog/x y", kBase);
  std::vector<DecodedEvent> ptrs = Decoded(a);
  for (const auto& p : Decoded(b)) ptrs.push_back(p);
  ASSERT_TRUE((*c)->Deliver(Deliv(ptrs)).ok());

  const auto files = Files(o.dir);
  std::set<std::string> keys;
  for (const auto& [k, v] : files) keys.insert(WithoutHash(k));
  EXPECT_EQ(keys,
            (std::set<std::string>{"project=shop/dt=2024-05-01/hour=10/1-9.ndjson.zst",
                                   "project=shop/dt=2024-05-01/hour=11/10-20.ndjson.zst",
                                   "project=blog%2Fx%20y/dt=2024-05-01/hour=11/21-25.ndjson.zst"}));
  std::map<std::string, int> seen;
  for (const auto& [k, v] : files) Collect(k, v, &seen);
  EXPECT_EQ(seen.size(), 25u);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
}

TEST(ArchiveDir, RedeliveredBatchOverwritesItsObjects) {
  testing::TempDir tmp;
  ArchiveOptions o;
  o.dir = tmp.File("archive") + "/";  // a trailing slash changes nothing
  o.zstd_level = 19;
  auto c = ArchiveConsumer::Create("archive", 1 << 5, o, nullptr);
  ASSERT_TRUE(c.ok());
  auto events = MakeEvents(100, 30, "p", kBase);
  ASSERT_TRUE((*c)->Deliver(Deliv(Decoded(events))).ok());
  const auto first = Files(o.dir);
  ASSERT_TRUE((*c)->Deliver(Deliv(Decoded(events))).ok());
  const auto second = Files(o.dir);
  EXPECT_EQ(first, second);  // same keys, same bytes, no temp files left behind
  // A later, different batch with some of the same events adds objects: every
  // event is still present at least once.
  const std::vector<DecodedEvent> all = Decoded(events);
  std::vector<DecodedEvent> tail(all.begin() + 20, all.end());
  auto more = MakeEvents(130, 3, "p", kBase);
  for (const auto& p : Decoded(more)) tail.push_back(p);
  ASSERT_TRUE((*c)->Deliver(Deliv(tail)).ok());
  std::map<std::string, int> seen;
  for (const auto& [k, v] : Files(o.dir)) Collect(k, v, &seen);
  EXPECT_EQ(seen.size(), 33u);
}

TEST(ArchiveDir, RegistryBuildsArchiveWithExplicitBitOnly) {
  testing::TempDir tmp;
  Metrics m;
  ConsumerConfig cfg;
  cfg.type = "archive";
  cfg.options["dir"] = tmp.File("a");
  EXPECT_EQ(MakeConsumers({cfg}, &m).status().code(), Code::kInvalidArgument);  // no bit
  cfg.bit = 7;
  cfg.options["zstd_level"] = "25";
  EXPECT_EQ(MakeConsumers({cfg}, &m).status().code(), Code::kInvalidArgument);
  cfg.options["zstd_level"] = "9";
  cfg.options["bogus"] = "1";
  auto bad = MakeConsumers({cfg}, &m);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bogus"), std::string::npos);
  cfg.options.erase("bogus");
  auto r = MakeConsumers({cfg}, &m);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)[0]->bit(), uint64_t{1} << 7);
  EXPECT_FALSE((*r)[0]->in_store());
}

class ArchiveS3 : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<testing::ScriptServer>(
        "s3rver", "S3_BUCKETS=archive S3_PORT=" + std::to_string(testing::FreePort()));
    ASSERT_TRUE(server_->ok()) << server_->error();
    endpoint_ = server_->var("S3_ENDPOINT");
  }
  ArchiveOptions Options() const {
    ArchiveOptions o;
    o.s3.endpoint = endpoint_;
    o.s3.bucket = "archive";
    o.s3.region = "us-east-1";
    o.s3.access_key = "test-access-key";
    o.s3.secret_key = "test-secret-key";
    o.prefix = "events/";
    return o;
  }
  std::unique_ptr<testing::ScriptServer> server_;
  std::string endpoint_;
};

// A late write of one grouping must not replace another grouping's object
// that shares its first and last seq (it could hold the only copy of an
// event); the same events again do overwrite their own object.
TEST(ArchiveDir, DifferentSetsWithTheSameFirstAndLastSeqKeepBothObjects) {
  testing::TempDir tmp;
  ArchiveOptions o;
  o.dir = tmp.File("archive");
  auto c = ArchiveConsumer::Create("archive", 1 << 5, o, nullptr);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto events = MakeEvents(1, 3, "shop", kBase);  // seqs 1, 2, 3 in one hour
  std::vector<DecodedEvent> all = Decoded(events);
  std::vector<DecodedEvent> ends = {all[0], all[2]};
  ASSERT_TRUE((*c)->Deliver(Deliv(all)).ok());
  ASSERT_TRUE((*c)->Deliver(Deliv(ends)).ok());
  ASSERT_TRUE((*c)->Deliver(Deliv(all)).ok());  // a redelivery: same object
  const auto files = Files(o.dir);
  ASSERT_EQ(files.size(), 2u);
  std::map<std::string, int> seen;
  for (const auto& [k, v] : files) Collect(k, v, &seen);
  EXPECT_EQ(seen.size(), 3u);  // event 2 survived the second write
}

TEST_F(ArchiveS3, SignedPutsStoreEveryEventAndRedeliveryOverwrites) {
  auto c = ArchiveConsumer::Create("archive", 1 << 5, Options(), nullptr);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto a = MakeEvents(1, 20, "shop", kBase);
  auto b = MakeEvents(21, 4, "odd name+=$", kBase);
  std::vector<DecodedEvent> ptrs = Decoded(a);
  for (const auto& p : Decoded(b)) ptrs.push_back(p);
  Status st = (*c)->Deliver(Deliv(ptrs));
  ASSERT_TRUE(st.ok()) << st.ToString();

  HttpClient http(HttpClientOptions{}, nullptr, "test");
  auto s3 = S3Client::Create(Options().s3, &http);
  ASSERT_TRUE(s3.ok());
  auto keys = (*s3)->List("events/");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  std::set<std::string> plain;
  for (const std::string& k : *keys) plain.insert(WithoutHash(k));
  EXPECT_EQ(plain,
            (std::set<std::string>{
                "events/project=shop/dt=2024-05-01/hour=10/1-9.ndjson.zst",
                "events/project=shop/dt=2024-05-01/hour=11/10-20.ndjson.zst",
                "events/project=odd%20name%2B%3D%24/dt=2024-05-01/hour=11/21-24.ndjson.zst"}));
  std::map<std::string, int> seen;
  std::map<std::string, std::string> before;
  for (const std::string& k : *keys) {
    auto body = (*s3)->Get(k);
    ASSERT_TRUE(body.ok()) << k << ": " << body.status().ToString();
    before[k] = *body;
    Collect(k.substr(7), *body, &seen);
  }
  EXPECT_EQ(seen.size(), 24u);

  st = (*c)->Deliver(Deliv(ptrs));  // redelivery: same keys, overwritten
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto again = (*s3)->List("events/");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *keys);
  for (const std::string& k : *again) EXPECT_EQ(*(*s3)->Get(k), before[k]);
}

TEST_F(ArchiveS3, WrongSecretIsRefusedByTheServer) {
  ArchiveOptions o = Options();
  o.s3.secret_key = "not-the-secret";
  auto c = ArchiveConsumer::Create("archive", 1 << 5, o, nullptr);
  ASSERT_TRUE(c.ok());
  auto events = MakeEvents(1, 3, "p", kBase);
  Status st = (*c)->Deliver(Deliv(Decoded(events)));
  EXPECT_EQ(st.code(), Code::kIoError) << st.ToString();
  EXPECT_NE(st.message().find("SignatureDoesNotMatch"), std::string::npos) << st.message();
}

TEST_F(ArchiveS3, CredentialsAndRegionComeFromTheAwsEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "test-access-key", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key", 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  Metrics m;
  ConsumerConfig cfg;
  cfg.type = "archive";
  cfg.name = "s3";
  cfg.bit = 4;
  cfg.options = {{"endpoint", endpoint_}, {"bucket", "archive"}, {"path_style", "true"}};
  auto r = MakeConsumers({cfg}, &m);
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_REGION");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto events = MakeEvents(7, 2, "p", kBase);
  Status st = (*r)[0]->Deliver(Deliv(Decoded(events)));
  ASSERT_TRUE(st.ok()) << st.ToString();
  HttpClient http(HttpClientOptions{}, nullptr, "test");
  auto s3 = S3Client::Create(Options().s3, &http);
  auto keys = (*s3)->List("project=p/");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ(WithoutHash((*keys)[0]), "project=p/dt=2024-05-01/hour=10/7-8.ndjson.zst");
}

}  // namespace
}  // namespace sluice
