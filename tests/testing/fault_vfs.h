// FaultVfs: a SQLite VFS for the durability tests, in the manner of SQLite's
// own test suite (src/test6.c, the "crash" VFS; src/test_vfs.c). Installed as
// the process's DEFAULT VFS, so every connection a store opens (with no VFS
// named) goes through it without any production change; it forwards every
// call to the VFS that was the default before (unix) and adds two faults:
//
//  - power loss. Writes reach the real file at once (the OS page cache), but
//    for each file the VFS remembers what every write and truncate since that
//    file's last xSync overwrote. PowerCut() turns the machine off: from then
//    on every write, sync, truncate and delete fails with SQLITE_IOERR.
//    Once every connection opened before the cut is closed,
//    RestoreAfterPowerCut() puts the files back as a power loss leaves them:
//      kDropUnsynced   every write and truncate since the file's last sync is lost;
//      kTearLastWrite  the same, except the last write of each file, whose first
//                      half reaches the disk over the synced content (a torn page).
//    Directory entries are not modelled (a created or deleted file stays so),
//    and xSync is not passed on: the model alone decides what survives.
//  - disk full. FailWritesFrom(n): the n-th xWrite from now (1 = the next)
//    and every later one return SQLITE_FULL, as the unix VFS does on ENOSPC,
//    until SpaceReturns().
//
// Thread-safe. One per process: SQLite's VFS list is global.
#pragma once

#include <cstdint>
#include <string>

namespace sluice::testing {

enum class PowerLossMode { kDropUnsynced, kTearLastWrite };

struct PowerLossReport {
  int64_t files = 0;           // files that had unsynced changes
  int64_t writes_lost = 0;     // writes and truncates undone
  int64_t bytes_restored = 0;  // bytes put back as they were at the last sync
  int64_t torn_writes = 0;     // kTearLastWrite: half-written last writes
  std::string error;           // "" on success
};

class FaultVfs {
 public:
  // Registers the VFS as the default (the first call); returns it.
  static FaultVfs& Install();

  // The power goes off: every later write, sync, truncate or delete fails.
  void PowerCut();
  // PowerCut() at a moment when at least `at_least` writes or truncates are
  // not synced yet in the files whose path ends with `suffix` ("" = all;
  // "-wal": SQLite's write-ahead logs); false, and nothing done, when fewer are.
  bool PowerCutIfUnsynced(int64_t at_least, const std::string& suffix = "");
  // Puts the files back as `mode` says and turns the power on again.
  // REQUIRES: PowerCut() was called and every file opened before it is
  // closed (report.error says which is not).
  PowerLossReport RestoreAfterPowerCut(PowerLossMode mode);

  // The n-th xWrite from now (n >= 1) and every later one fail with SQLITE_FULL.
  void FailWritesFrom(int64_t n);
  // Writes succeed again.
  void SpaceReturns();

  // Counters since Install().
  int64_t writes() const;          // xWrite calls that reached the file
  int64_t syncs() const;           // xSync calls (each makes its file's writes durable)
  int64_t full_refusals() const;   // xWrite calls answered SQLITE_FULL
  int64_t open_files() const;      // files open through this VFS now
  int64_t unsynced_writes() const; // writes and truncates not synced yet, all files

 private:
  FaultVfs() = default;
};

}  // namespace sluice::testing
