#include "consumers/clickhouse/clickhouse_consumer.h"

#include <algorithm>
#include <cctype>

#include "common/event.h"
#include "consumers/api/option_reader.h"
#include "http_client/s3_client.h"

namespace sluice {
namespace {

bool IsIdentifier(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// DateTime is UInt32 seconds in 18.16 (no DateTime64): clamp into its range.
int64_t DateTimeSeconds(int64_t ms) { return std::clamp<int64_t>(ms / 1000, 0, 4294967295LL); }

void AppendJsonText(const std::string& json, std::string* out) {
  // A JSON object stored as a String column: ClickHouse 18.16 has no JSON type.
  AppendJsonString(json, out);
}

}  // namespace

Result<ClickHouseOptions> ParseClickHouseOptions(const ConsumerConfig& config) {
  ClickHouseOptions o;
  OptionReader r(config.options, "consumer " + config.name);
  r.String("url", &o.url);
  r.String("database", &o.database);
  r.String("table", &o.table);
  r.String("user", &o.user);
  r.String("password", &o.password);
  r.Bool("create_table", &o.create_table);
  r.DurationMs("timeout", &o.http.timeout_ms);
  r.DurationMs("connect_timeout", &o.http.connect_timeout_ms);
  r.Bool("verify_tls", &o.http.verify_tls);
  SLUICE_RETURN_IF_ERROR(r.Finish());
  if (!o.url.starts_with("http://") && !o.url.starts_with("https://")) {
    return r.Error("url must start with http:// or https://");
  }
  if (o.url.find('?') != std::string::npos) return r.Error("url must not have a query string");
  if (!IsIdentifier(o.database) || !IsIdentifier(o.table)) {
    return r.Error("database and table must match [A-Za-z0-9_]+");
  }
  return o;
}

Result<ConsumerPtr> MakeClickHouseConsumer(const ConsumerConfig& config, uint64_t bit,
                                           Metrics* metrics) {
  SLUICE_ASSIGN_OR_RETURN(ClickHouseOptions o, ParseClickHouseOptions(config));
  return ConsumerPtr(std::make_unique<ClickHouseConsumer>(config.name, bit, std::move(o), metrics));
}

ClickHouseConsumer::ClickHouseConsumer(std::string name, uint64_t bit, ClickHouseOptions options,
                                       Metrics* metrics)
    : Consumer(std::move(name), bit),
      options_(std::move(options)),
      http_(options_.http, metrics, this->name()) {
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<Metrics>();
    metrics = own_metrics_.get();
  }
  const std::string l = Labels({{"consumer", this->name()}});
  rows_ = &metrics->GetCounter("sluice_clickhouse_rows_inserted_total",
                               "Rows sent to ClickHouse (redeliveries included)", l);
  inserts_ = &metrics->GetCounter("sluice_clickhouse_inserts_total",
                                  "Successful INSERT statements sent to ClickHouse", l);
}

std::string ClickHouseConsumer::BaseUrl() const {
  std::string url = options_.url;
  if (!url.ends_with('/')) url.push_back('/');
  return url + "?database=" + UriEncode(options_.database);
}

Result<std::string> ClickHouseConsumer::Query(const std::string& sql, int64_t deadline_mono_ms) {
  ClientRequest r;
  r.method = "POST";  // GET is read-only in ClickHouse
  r.url = BaseUrl();
  r.body = sql;
  r.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  r.user = options_.user;
  r.password = options_.password;
  r.deadline_mono_ms = deadline_mono_ms;
  SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_.Send(r));
  SLUICE_RETURN_IF_ERROR(StatusFromHttp("clickhouse " + sql.substr(0, 60), resp));
  return std::move(resp.body);
}

Status ClickHouseConsumer::SetupOnce(int64_t deadline) {
  if (ready_.load()) return Status::Ok();
  std::lock_guard<std::mutex> lock(setup_mu_);
  if (ready_.load()) return Status::Ok();
  // Feature detection by name, not by version number: 18.16 answers "Unknown
  // setting" to insert_deduplication_token, and forks/backports vary.
  SLUICE_ASSIGN_OR_RETURN(
      std::string settings,
      Query("SELECT name FROM system.settings WHERE name = 'insert_deduplication_token' "
            "FORMAT TabSeparated",
            deadline));
  const bool token = settings.find("insert_deduplication_token") != std::string::npos;
  bool window = false;
  if (token) {
    Result<std::string> mt = Query(
        "SELECT name FROM system.merge_tree_settings WHERE name = "
        "'non_replicated_deduplication_window' FORMAT TabSeparated",
        deadline);
    window = mt.ok() && mt->find("non_replicated_deduplication_window") != std::string::npos;
  }
  if (options_.create_table) {
    std::string ddl = "CREATE TABLE IF NOT EXISTS `" + options_.database + "`.`" + options_.table +
                      "` (\n"
                      "  insert_id String,\n"
                      "  project String,\n"
                      "  seq UInt64,\n"
                      "  event String,\n"
                      "  user_id String,\n"
                      "  anonymous_id String,\n"
                      "  type String,\n"
                      "  time DateTime,\n"
                      "  time_ms Int64,\n"
                      "  received DateTime,\n"
                      "  properties String,\n"
                      "  user_set String,\n"
                      "  user_set_once String\n"
                      ") ENGINE = ReplacingMergeTree()\n"
                      "PARTITION BY toYYYYMM(time)\n"
                      "ORDER BY (project, insert_id)";
    if (window) ddl += "\nSETTINGS non_replicated_deduplication_window = 1000";
    SLUICE_RETURN_IF_ERROR(Query(ddl, deadline).status());
  }
  dedup_token_.store(token);
  ready_.store(true);
  return Status::Ok();
}

Status ClickHouseConsumer::Deliver(const Delivery& delivery) {
  if (delivery.events.empty()) return Status::Ok();
  SLUICE_RETURN_IF_ERROR(SetupOnce(delivery.deadline_mono_ms));
  std::string rows;
  std::string ids;  // for the dedup token
  for (const DecodedEvent& e : delivery.events) {
    const ClaimedEvent* row = e.row;
    if (e.event == nullptr) {
      return Status::Internal("clickhouse: event seq " + std::to_string(row->seq) +
                              ": body does not parse");
    }
    const Event& ev = *e.event;
    rows.append("{\"insert_id\":");
    AppendJsonString(row->insert_id, &rows);
    rows.append(",\"project\":");
    AppendJsonString(row->project, &rows);
    rows.append(",\"seq\":").append(std::to_string(row->seq));
    rows.append(",\"event\":");
    AppendJsonString(ev.event, &rows);
    rows.append(",\"user_id\":");
    AppendJsonString(ev.user_id, &rows);
    rows.append(",\"anonymous_id\":");
    AppendJsonString(ev.anonymous_id, &rows);
    rows.append(",\"type\":");
    AppendJsonString(ev.type, &rows);
    // Integer seconds: DateTime parses them without date_time_input_format.
    rows.append(",\"time\":").append(std::to_string(DateTimeSeconds(ev.time_ms)));
    rows.append(",\"time_ms\":").append(std::to_string(ev.time_ms));
    rows.append(",\"received\":").append(std::to_string(DateTimeSeconds(ev.received_ms)));
    rows.append(",\"properties\":");
    AppendJsonText(ev.properties, &rows);
    rows.append(",\"user_set\":");
    AppendJsonText(ev.set, &rows);
    rows.append(",\"user_set_once\":");
    AppendJsonText(ev.set_once, &rows);
    rows.append("}\n");
    ids.append(row->project).push_back('\0');
    ids.append(row->insert_id).push_back('\n');
  }
  ClientRequest r;
  r.method = "POST";
  r.url = BaseUrl() + "&input_format_skip_unknown_fields=1";
  if (dedup_token_.load()) r.url += "&insert_deduplication_token=" + Sha256Hex(ids);
  r.url += "&query=" + UriEncode("INSERT INTO `" + options_.table + "` FORMAT JSONEachRow");
  r.body = rows;
  r.headers.emplace_back("Content-Type", "application/x-ndjson");
  r.user = options_.user;
  r.password = options_.password;
  r.deadline_mono_ms = delivery.deadline_mono_ms;
  SLUICE_ASSIGN_OR_RETURN(ClientResponse resp, http_.Send(r));
  if (resp.status == 400 && resp.body.find("Unknown setting") != std::string::npos &&
      dedup_token_.load()) {
    // The server changed under us (downgrade): re-detect on the next call.
    ready_.store(false);
    return Status::Unavailable("clickhouse: server no longer knows insert_deduplication_token");
  }
  SLUICE_RETURN_IF_ERROR(StatusFromHttp("clickhouse INSERT", resp));
  inserts_->Inc();
  rows_->Inc(static_cast<int64_t>(delivery.events.size()));
  return Status::Ok();
}

}  // namespace sluice
