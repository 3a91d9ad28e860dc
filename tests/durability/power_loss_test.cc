// Power loss on the embedded store, simulated the way SQLite's own test suite
// does it (testing/fault_vfs.h: a VFS wrapping the default one remembers what
// every write since the last sync overwrote). A replica (the composition of
// `sluice serve`, in this process) ingests over HTTP and processes events; in
// the middle of the load the power goes off; the replica is shut down, the
// files are put back as the power loss leaves them — every unsynced write
// dropped, or dropped but for a torn last write per file — and the store is
// opened again by a new replica, which drains the queue.
//
// store.sync = true (the default) must keep its promise (README: "with
// store.sync = true the events survive a power loss"): PRAGMA integrity_check
// passes, every event acknowledged (HTTP 200) before the cut is stored, and
// once the queue is drained every stored event is counted exactly once.
//
// store.sync = false promises less, and this is what it loses: commits do not
// wait for the WAL's fsync (synchronous=NORMAL), so a power loss takes every
// commit since the WAL was last synced — by a checkpoint, which the store's
// checkpointer runs every second and whenever the WAL passes 4,000 pages —
// acknowledged or not: up to about a second of acknowledged events. What is
// lost is a tail: no event survives that was sent after a lost one was
// acknowledged. The file stays consistent and nothing is counted twice.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>

#include "durability/durability_util.h"
#include "testing/dispatch_receiver.h"
#include "testing/fault_vfs.h"
#include "testing/testing.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

const char* ModeName(PowerLossMode m) {
  return m == PowerLossMode::kDropUnsynced ? "drop unsynced writes" : "tear the last write";
}

int64_t Claimed(Replica& r) {
  return r.metrics()->GetCounter("sluice_claimed_events_total", "", "").value();
}

// Makes everything committed so far durable: a checkpoint syncs the WAL
// (and then the database file) whatever store.sync says.
void Checkpoint(const std::string& db_path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, "PRAGMA wal_checkpoint(PASSIVE)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
}

struct CutResult {
  int64_t acked = 0;         // events acknowledged in all
  int64_t acked_phase1 = 0;  // before the checkpoint
  int64_t stored = 0;        // |S|, the dedup table after recovery
  int64_t lost = 0;          // acknowledged, not stored
  int64_t lost_phase1 = 0;
  int64_t phantom = 0;       // stored, never sent
  bool tail_only = true;     // no stored event was sent after a lost one was acknowledged
  std::string integrity;
  std::string aggregates;    // "" when every stored event is counted once
  PowerLossReport vfs;
};

// Phase 1: events acknowledged, then a checkpoint makes them durable. Phase 2:
// the load goes on, and the power goes off while it runs.
CutResult RunPowerCut(bool sync, PowerLossMode mode) {
  FaultVfs& vfs = FaultVfs::Install();
  TempDir dir;
  const std::string db = dir.File("sluice.db");
  const std::string config = DurabilityConfig(db, sync);
  CutResult out;
  std::vector<ClientEvent> sent;
  {
    Result<std::unique_ptr<Replica>> replica = StartReplica(config);
    EXPECT_TRUE(replica.ok()) << replica.status().ToString();
    if (!replica.ok()) return out;
    Replica& r = **replica;
    const std::string url = "http://127.0.0.1:" + std::to_string(r.port());
    {
      Ingester phase1(url, "a", 2, 20, /*retry=*/true);
      EXPECT_TRUE(WaitUntil([&] { return phase1.acked() >= 600; }, milliseconds(60000)));
      phase1.Stop();
      sent = phase1.events();
    }
    Checkpoint(db);
    Ingester phase2(url, "b", 3, 20, /*retry=*/false);
    const int64_t claimed = Claimed(r);
    // Mid-load: acknowledgements coming in and the watcher claiming.
    EXPECT_TRUE(WaitUntil([&] { return phase2.acked() >= 1000 && Claimed(r) > claimed + 200; },
                          milliseconds(60000)));
    // The power goes off at a moment when writes to the WAL are not synced
    // yet: with sync = true lease writes (which do not wait for the fsync),
    // with sync = false a few commits' worth since the last checkpoint.
    EXPECT_TRUE(WaitUntil([&] { return vfs.PowerCutIfUnsynced(sync ? 1 : 200, "-wal"); },
                          milliseconds(10000), milliseconds(1)));
    vfs.PowerCut();  // in any case, from here on
    const int64_t answers = phase2.answers();
    WaitUntil([&] { return phase2.answers() >= answers + 6; }, milliseconds(5000));
    phase2.Stop();
    const std::vector<ClientEvent> more = phase2.events();
    sent.insert(sent.end(), more.begin(), more.end());
    r.Shutdown();
  }
  EXPECT_EQ(vfs.open_files(), 0) << "every connection of the first replica is closed";
  out.vfs = vfs.RestoreAfterPowerCut(mode);
  EXPECT_EQ(out.vfs.error, "");

  out.integrity = IntegrityCheck(db);
  const std::set<std::string> stored = StoredIds(db, sent);
  out.stored = static_cast<int64_t>(stored.size());
  std::set<std::string> ids;
  std::vector<const ClientEvent*> stored_events;
  int64_t min_lost_ack = INT64_MAX, max_stored_sent = 0;
  for (const ClientEvent& e : sent) {
    ids.insert(e.insert_id);
    const bool phase1 = e.insert_id[0] == 'a';
    if (e.acked_ms > 0) {
      ++out.acked;
      out.acked_phase1 += phase1 ? 1 : 0;
    }
    if (stored.count(e.insert_id)) {
      stored_events.push_back(&e);
      max_stored_sent = std::max(max_stored_sent, e.sent_ms);
    } else if (e.acked_ms > 0) {
      ++out.lost;
      out.lost_phase1 += phase1 ? 1 : 0;
      min_lost_ack = std::min(min_lost_ack, e.acked_ms);
    }
  }
  for (const std::string& id : stored) out.phantom += ids.count(id) ? 0 : 1;
  out.tail_only = out.lost == 0 || max_stored_sent < min_lost_ack;

  // A new replica on the restored file: it finds the interrupted leases
  // expired, claims them again and drains the queue.
  Result<std::unique_ptr<Replica>> again = StartReplica(config);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  if (!again.ok()) return out;
  EXPECT_TRUE(WaitQueueEmpty(*(*again)->store(), 60000)) << "queue not drained after restart";
  out.aggregates = CheckAggregates(*(*again)->store(), stored_events);
  (*again)->Shutdown();
  std::printf(
      "power cut, sync=%s, %s: %lld acknowledged (%lld before the checkpoint), %lld stored, "
      "%lld lost (%lld of them before the checkpoint), %lld phantom, integrity_check %s; "
      "vfs: %lld files, %lld unsynced writes undone, %lld bytes restored, %lld torn\n",
      sync ? "true" : "false", ModeName(mode), static_cast<long long>(out.acked),
      static_cast<long long>(out.acked_phase1), static_cast<long long>(out.stored),
      static_cast<long long>(out.lost), static_cast<long long>(out.lost_phase1),
      static_cast<long long>(out.phantom), out.integrity.c_str(),
      static_cast<long long>(out.vfs.files), static_cast<long long>(out.vfs.writes_lost),
      static_cast<long long>(out.vfs.bytes_restored), static_cast<long long>(out.vfs.torn_writes));
  return out;
}

class PowerLossTest : public ::testing::TestWithParam<PowerLossMode> {};

TEST_P(PowerLossTest, WithSyncEveryAcknowledgedEventSurvivesAndIsCountedOnce) {
  const CutResult r = RunPowerCut(/*sync=*/true, GetParam());
  EXPECT_EQ(r.integrity, "ok");
  EXPECT_GT(r.acked, 1000);
  EXPECT_GT(r.vfs.writes_lost + r.vfs.torn_writes, 0) << "the cut must have caught unsynced writes";
  EXPECT_EQ(r.lost, 0) << "acknowledged events lost to a power cut with store.sync = true";
  EXPECT_EQ(r.phantom, 0);
  EXPECT_EQ(r.aggregates, "");
}

TEST_P(PowerLossTest, WithoutSyncTheUnsyncedTailIsLostButTheFileStaysConsistent) {
  const CutResult r = RunPowerCut(/*sync=*/false, GetParam());
  EXPECT_EQ(r.integrity, "ok");
  // What sync = false gives up: the acknowledged commits since the last WAL
  // sync (the power went off with at least 200 writes unsynced).
  EXPECT_GT(r.lost, 0) << "sync = false was expected to lose the unsynced commits";
  EXPECT_EQ(r.lost_phase1, 0) << "commits before the last WAL sync must survive";
  EXPECT_TRUE(r.tail_only) << "a stored event was sent after a lost one was acknowledged";
  EXPECT_EQ(r.phantom, 0);
  EXPECT_EQ(r.aggregates, "");
}

INSTANTIATE_TEST_SUITE_P(Modes, PowerLossTest,
                         ::testing::Values(PowerLossMode::kDropUnsynced,
                                           PowerLossMode::kTearLastWrite),
                         [](const ::testing::TestParamInfo<PowerLossMode>& i) {
                           return i.param == PowerLossMode::kDropUnsynced ? "DropUnsynced"
                                                                          : "TearLastWrite";
                         });

}  // namespace
}  // namespace sluice::testing
