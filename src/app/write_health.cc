#include "app/write_health.h"

namespace sluice {

Result<std::vector<EnqueueResult>> WriteHealthStore::Enqueue(
    std::span<const EnqueueBatch> batches) {
  Result<std::vector<EnqueueResult>> r = StoreWrapper::Enqueue(batches);
  Record(r.status());
  return r;
}

Status WriteHealthStore::RegisterReplica(const ReplicaInfo& info) {
  Status st = StoreWrapper::RegisterReplica(info);
  Record(st);
  return st;
}

Status WriteHealthStore::HeartbeatReplica(const std::string& id) {
  Status st = StoreWrapper::HeartbeatReplica(id);
  Record(st);
  return st;
}

Status WriteHealthStore::WriteStatus() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void WriteHealthStore::Record(const Status& st) {
  // Only a write that reached the disk and failed there says something about
  // the disk; a busy lock or an unreachable server says nothing either way.
  if (!st.ok() && st.code() != Code::kIoError) return;
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = st;
}

}  // namespace sluice
