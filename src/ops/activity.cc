#include "ops/activity.h"

#include <simdjson.h>

#include <algorithm>

#include "common/event.h"

namespace sluice {
namespace {

int64_t BucketIndex(int64_t ms) { return ms >= 0 ? ms / kActivityBucketMs : 0; }

void AppendArray(const std::vector<int64_t>& v, std::string* out) {
  out->push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out->push_back(',');
    *out += std::to_string(v[i]);
  }
  out->push_back(']');
}

bool ReadArray(simdjson::ondemand::value v, std::vector<int64_t>* out) {
  simdjson::ondemand::array arr;
  if (v.get_array().get(arr) != simdjson::SUCCESS) return false;
  for (auto el : arr) {
    int64_t n = 0;
    if (el.get_int64().get(n) != simdjson::SUCCESS) return false;
    if (out->size() >= static_cast<size_t>(4 * kActivityBuckets)) return false;
    out->push_back(n);
  }
  return true;
}

}  // namespace

CompletionCountingStore::CompletionCountingStore(StorePtr inner, Metrics* metrics)
    : StoreWrapper(std::move(inner)),
      completed_(&metrics->GetCounter(
          "sluice_completed_events_total",
          "Events this replica finished (every consumer done) and removed from the queue.")) {}

Result<CompleteResult> CompletionCountingStore::Complete(const CompleteRequest& req) {
  Result<CompleteResult> r = inner()->Complete(req);
  if (r.ok()) completed_->Inc(static_cast<int64_t>(r->deleted.size()));
  return r;
}

ReplicaActivity::ReplicaActivity(Metrics* metrics, std::vector<LocalConsumer> consumers,
                                 int32_t loops)
    : consumers_(std::move(consumers)), loops_(loops), ring_(kActivityBuckets + 1) {
  // The same series the ingest service, the store wrapper and the watcher
  // count into (Metrics returns the existing one).
  ingested_ = &metrics->GetCounter("sluice_ingest_events_total", "Ingested events by result.",
                                   Labels({{"result", "accepted"}}));
  processed_ = &metrics->GetCounter(
      "sluice_completed_events_total",
      "Events this replica finished (every consumer done) and removed from the queue.");
  in_flight_ = &metrics->GetGauge("sluice_watcher_in_flight", "Leases being processed.");
  for (const LocalConsumer& c : consumers_) {
    const std::string labels = Labels({{"consumer", c.spec.name}});
    delivered_.push_back(
        &metrics->GetCounter("sluice_deliveries_total", "Events handed to each consumer.", labels));
    failed_.push_back(&metrics->GetCounter("sluice_failures_total",
                                           "Events a consumer failed to process.", labels));
  }
}

ReplicaActivity::Totals ReplicaActivity::ReadTotals() const {
  Totals t;
  t.ingested = ingested_->value();
  t.processed = processed_->value();
  for (size_t i = 0; i < consumers_.size(); ++i) {
    t.delivered.push_back(delivered_[i]->value());
    t.failed.push_back(failed_[i]->value());
  }
  return t;
}

size_t ReplicaActivity::SlotLocked(int64_t index) {
  const size_t slot = static_cast<size_t>(index % static_cast<int64_t>(ring_.size()));
  Bucket& b = ring_[slot];
  if (b.index != index) {
    b = Bucket{};
    b.index = index;
    b.delivered.assign(consumers_.size(), 0);
    b.failed.assign(consumers_.size(), 0);
  }
  return slot;
}

void ReplicaActivity::Sample(int64_t now_ms) {
  const Totals now = ReadTotals();
  std::lock_guard<std::mutex> lock(mu_);
  if (last_) {
    Bucket& b = ring_[SlotLocked(BucketIndex(now_ms))];
    // Counters only grow; max() guards against a reordering of the reads.
    b.ingested += std::max<int64_t>(0, now.ingested - last_->ingested);
    b.processed += std::max<int64_t>(0, now.processed - last_->processed);
    for (size_t i = 0; i < consumers_.size(); ++i) {
      b.delivered[i] += std::max<int64_t>(0, now.delivered[i] - last_->delivered[i]);
      b.failed[i] += std::max<int64_t>(0, now.failed[i] - last_->failed[i]);
    }
  }
  last_ = now;
}

ReplicaStats ReplicaActivity::Snapshot(int64_t now_ms) const {
  ReplicaStats s;
  s.loops = loops_;
  s.busy = static_cast<int32_t>(std::clamp<int64_t>(in_flight_->value(), 0, loops_));
  s.bucket_ms = kActivityBucketMs;
  const int64_t current = BucketIndex(now_ms);
  s.end_ms = current * kActivityBucketMs;
  s.ingested.assign(kActivityBuckets, 0);
  s.processed.assign(kActivityBuckets, 0);
  std::vector<int64_t> delivered(consumers_.size(), 0);
  std::vector<int64_t> failed(consumers_.size(), 0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Bucket& b : ring_) {
      // Complete buckets of the window: current - kActivityBuckets .. current - 1.
      const int64_t age = current - b.index;
      if (b.index < 0 || age < 1 || age > kActivityBuckets) continue;
      const size_t at = static_cast<size_t>(kActivityBuckets - age);
      s.ingested[at] = b.ingested;
      s.processed[at] = b.processed;
      for (size_t i = 0; i < consumers_.size(); ++i) {
        delivered[i] += b.delivered[i];
        failed[i] += b.failed[i];
      }
    }
  }
  for (size_t i = 0; i < consumers_.size(); ++i) {
    ConsumerActivity a;
    a.spec = consumers_[i].spec;
    a.delivered = delivered[i];
    a.failed = failed[i];
    a.retry_after_ms = consumers_[i].retry_after_ms ? consumers_[i].retry_after_ms() : 0;
    s.consumers.push_back(std::move(a));
  }
  return s;
}

std::string ReplicaActivity::StatsJson(int64_t now_ms) const {
  return RenderReplicaStats(Snapshot(now_ms));
}

std::vector<ConsumerSpec> ReplicaActivity::consumer_specs() const {
  std::vector<ConsumerSpec> out;
  for (const LocalConsumer& c : consumers_) out.push_back(c.spec);
  return out;
}

std::string RenderReplicaStats(const ReplicaStats& s) {
  std::string out = "{\"v\":1,\"loops\":" + std::to_string(s.loops) +
                    ",\"busy\":" + std::to_string(s.busy) +
                    ",\"bucket_ms\":" + std::to_string(s.bucket_ms) +
                    ",\"end_ms\":" + std::to_string(s.end_ms) + ",\"ingested\":";
  AppendArray(s.ingested, &out);
  out += ",\"processed\":";
  AppendArray(s.processed, &out);
  out += ",\"consumers\":[";
  for (size_t i = 0; i < s.consumers.size(); ++i) {
    const ConsumerActivity& c = s.consumers[i];
    if (i > 0) out.push_back(',');
    out += "{\"name\":";
    AppendJsonString(c.spec.name, &out);
    out += ",\"bit\":" + std::to_string(c.spec.bit) +
           ",\"in_store\":" + (c.spec.in_store ? "true" : "false") +
           ",\"delivered\":" + std::to_string(c.delivered) +
           ",\"failed\":" + std::to_string(c.failed) +
           ",\"retry_after_ms\":" + std::to_string(c.retry_after_ms) + "}";
  }
  out += "]}";
  return out;
}

std::optional<ReplicaStats> ParseReplicaStats(std::string_view json) {
  if (json.empty() || json.size() > kMaxReplicaStatsBytes) return std::nullopt;
  namespace od = simdjson::ondemand;
  od::parser parser;
  simdjson::padded_string padded(json);
  od::document doc;
  od::object obj;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  ReplicaStats s;
  int64_t version = 0;
  for (auto field_result : obj) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) != simdjson::SUCCESS ||
        field.unescaped_key().get(key) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    od::value v = field.value();
    int64_t n = 0;
    if (key == "v") {
      if (v.get_int64().get(version) != simdjson::SUCCESS) return std::nullopt;
    } else if (key == "loops" || key == "busy") {
      if (v.get_int64().get(n) != simdjson::SUCCESS) return std::nullopt;
      (key == "loops" ? s.loops : s.busy) = static_cast<int32_t>(n);
    } else if (key == "bucket_ms") {
      if (v.get_int64().get(s.bucket_ms) != simdjson::SUCCESS || s.bucket_ms <= 0) {
        return std::nullopt;
      }
    } else if (key == "end_ms") {
      if (v.get_int64().get(s.end_ms) != simdjson::SUCCESS) return std::nullopt;
    } else if (key == "ingested" || key == "processed") {
      if (!ReadArray(v, key == "ingested" ? &s.ingested : &s.processed)) return std::nullopt;
    } else if (key == "consumers") {
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS) return std::nullopt;
      for (auto el : arr) {
        od::object c;
        if (el.get_object().get(c) != simdjson::SUCCESS) return std::nullopt;
        ConsumerActivity a;
        for (auto cf_result : c) {
          od::field cf;
          std::string_view ck;
          if (std::move(cf_result).get(cf) != simdjson::SUCCESS ||
              cf.unescaped_key().get(ck) != simdjson::SUCCESS) {
            return std::nullopt;
          }
          od::value cv = cf.value();
          std::string_view str;
          bool b = false;
          uint64_t u = 0;
          if (ck == "name") {
            if (cv.get_string().get(str) != simdjson::SUCCESS) return std::nullopt;
            a.spec.name = std::string(str);
          } else if (ck == "bit") {
            if (cv.get_uint64().get(u) != simdjson::SUCCESS) return std::nullopt;
            a.spec.bit = u;
          } else if (ck == "in_store") {
            if (cv.get_bool().get(b) != simdjson::SUCCESS) return std::nullopt;
            a.spec.in_store = b;
          } else if (ck == "delivered" || ck == "failed" || ck == "retry_after_ms") {
            if (cv.get_int64().get(n) != simdjson::SUCCESS) return std::nullopt;
            (ck == "delivered" ? a.delivered : ck == "failed" ? a.failed : a.retry_after_ms) = n;
          }  // unknown keys: a newer replica; ignore
        }
        if (a.spec.name.empty() || s.consumers.size() >= 64) return std::nullopt;
        s.consumers.push_back(std::move(a));
      }
    }  // unknown keys: a newer replica; ignore
  }
  if (version != 1) return std::nullopt;
  return s;
}

}  // namespace sluice
