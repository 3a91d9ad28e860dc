#include "consumers/registry/registry.h"

#include <map>
#include <set>
#include <string>
#include <utility>

#include "consumers/archive/archive_consumer.h"
#include "consumers/clickhouse/clickhouse_consumer.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/api/filter.h"
#include "consumers/users/users_consumer.h"
#include "consumers/webhook/webhook_consumer.h"

namespace sluice {
namespace {

using Factory = Result<ConsumerPtr> (*)(const ConsumerConfig& config, uint64_t bit,
                                        Metrics* metrics);

Counter* Unattributed(Metrics* metrics, const std::string& name) {
  if (metrics == nullptr) return nullptr;
  return &metrics->GetCounter("sluice_consumer_unattributed_total",
                              "Claimed events a consumer skipped because they name no user.",
                              Labels({{"consumer", name}}));
}

Result<ConsumerPtr> MakeUsers(const ConsumerConfig& c, uint64_t bit, Metrics* metrics) {
  if (!c.options.empty()) {
    return Status::InvalidArgument("consumer " + c.name + ": users takes no options");
  }
  return ConsumerPtr(std::make_unique<UsersConsumer>(c.name, bit, Unattributed(metrics, c.name)));
}

Result<ConsumerPtr> MakeCounters(const ConsumerConfig& c, uint64_t bit, Metrics* /*metrics*/) {
  if (!c.options.empty()) {
    return Status::InvalidArgument("consumer " + c.name + ": counters takes no options");
  }
  return ConsumerPtr(std::make_unique<CountersConsumer>(c.name, bit));
}

// To add a consumer type: include its header and add one row.
constexpr ConsumerType kTypes[] = {
    {"users", 0, &MakeUsers},
    {"counters", 1, &MakeCounters},
    {"archive", -1, &MakeArchiveConsumer},
    {"clickhouse", -1, &MakeClickHouseConsumer},
    {"webhook", -1, &MakeWebhookConsumer},
};

const ConsumerType* FindType(const std::string& type, std::span<const ConsumerType> extra) {
  for (const ConsumerType& t : kTypes) {
    if (type == t.type) return &t;
  }
  for (const ConsumerType& t : extra) {
    if (type == t.type) return &t;
  }
  return nullptr;
}

}  // namespace

Result<std::vector<ConsumerPtr>> MakeConsumers(const std::vector<ConsumerConfig>& configs,
                                               Metrics* metrics,
                                               std::span<const ConsumerType> extra_types) {
  std::vector<ConsumerConfig> effective = configs;
  if (effective.empty()) {
    for (const char* type : {"users", "counters"}) {
      ConsumerConfig c;
      c.type = type;
      effective.push_back(std::move(c));
    }
  }
  std::vector<ConsumerPtr> out;
  std::set<std::string> names;
  std::map<int, std::string> bits;
  for (ConsumerConfig c : effective) {
    const ConsumerType* t = FindType(c.type, extra_types);
    if (t == nullptr) {
      std::string known;
      for (const ConsumerType& k : kTypes) known += std::string(known.empty() ? "" : ", ") + k.type;
      for (const ConsumerType& k : extra_types) known += std::string(", ") + k.type;
      return Status::InvalidArgument("consumer type '" + c.type + "' is unknown (known: " +
                                     known + ")");
    }
    if (c.name.empty()) c.name = c.type;
    if (!names.insert(c.name).second) {
      return Status::InvalidArgument("consumer name '" + c.name + "' is used twice");
    }
    int bit = c.bit >= 0 ? c.bit : t->default_bit;
    if (bit < 0) {
      return Status::InvalidArgument("consumer " + c.name + ": `bit` (0..62) is required for type " +
                                     c.type);
    }
    if (bit > 62) {
      return Status::InvalidArgument("consumer " + c.name + ": bit " + std::to_string(bit) +
                                     " is out of range 0..62");
    }
    if (auto [it, inserted] = bits.emplace(bit, c.name); !inserted) {
      return Status::InvalidArgument("consumers " + it->second + " and " + c.name +
                                     " both use bit " + std::to_string(bit));
    }
    Result<ConsumerPtr> made = t->make(c, uint64_t{1} << bit, metrics);
    if (!made.ok()) return made.status();
    ConsumerPtr consumer = std::move(*made);
    if (!c.projects.empty() || !c.events.empty()) {
      consumer = std::make_unique<FilteredConsumer>(std::move(consumer), EventFilter::FromConfig(c));
    }
    out.push_back(std::move(consumer));
  }
  return out;
}

}  // namespace sluice
