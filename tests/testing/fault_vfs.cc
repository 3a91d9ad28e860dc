#include "testing/fault_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

namespace sluice::testing {
namespace {

// What one write or truncate since the last sync overwrote: putting `old`
// back at `offset` and cutting the file to `old_size` undoes it.
struct Undo {
  int64_t offset = 0;
  std::string old;
  int64_t old_size = 0;
};

struct FileState {
  std::vector<Undo> undo;  // since the file's last xSync, oldest first
  // The data of the last change when it was a write (for kTearLastWrite).
  std::string last_write;
  int64_t last_write_offset = -1;
  int open = 0;  // handles open now
};

struct Global {
  std::mutex mu;
  sqlite3_vfs* base = nullptr;
  sqlite3_vfs vfs{};
  // Never erased: open handles point into it (a deleted file keeps an entry).
  std::map<std::string, FileState> files;  // GUARDED_BY(mu)
  bool powered_off = false;                // GUARDED_BY(mu)
  int64_t write_calls = 0;                 // GUARDED_BY(mu), refused ones included
  int64_t fail_at = 0;                     // GUARDED_BY(mu), 0 = disk not full
  std::atomic<int64_t> writes{0}, syncs{0}, full{0}, open{0};
};

Global& G() {
  static Global* g = new Global();  // never destroyed: SQLite may use it at exit
  return *g;
}

struct FaultFile {
  sqlite3_file base;   // base.pMethods = &kMethods once open
  sqlite3_file* real;  // the wrapped file, stored right after this struct
  FileState* state;    // null for files without a name (temp files)
};

// Where the wrapped file lives inside our allocation.
constexpr size_t kRealOffset = (sizeof(FaultFile) + 15) / 16 * 16;

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }
FileState* State(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->state; }

int64_t RealSize(sqlite3_file* real) {
  sqlite3_int64 size = 0;
  if (real->pMethods->xFileSize(real, &size) != SQLITE_OK) return -1;
  return size;
}

// Bytes [offset, offset + n) of `real` that exist (the part below `size`).
std::string ReadExisting(sqlite3_file* real, int64_t offset, int64_t n, int64_t size) {
  const int64_t have = std::min<int64_t>(n, size - offset);
  if (have <= 0) return {};
  std::string out(static_cast<size_t>(have), '\0');
  if (real->pMethods->xRead(real, out.data(), static_cast<int>(have), offset) != SQLITE_OK) {
    return {};
  }
  return out;
}

// ---- io methods ----

int Close(sqlite3_file* f) {
  sqlite3_file* real = Real(f);
  const int rc = real->pMethods != nullptr ? real->pMethods->xClose(real) : SQLITE_OK;
  Global& g = G();
  std::lock_guard<std::mutex> lock(g.mu);
  if (FileState* s = State(f)) --s->open;
  --g.open;
  return rc;
}

int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}

int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  Global& g = G();
  std::lock_guard<std::mutex> lock(g.mu);
  if (g.powered_off) return SQLITE_IOERR_WRITE;
  ++g.write_calls;
  if (g.fail_at > 0 && g.write_calls >= g.fail_at) {
    ++g.full;
    return SQLITE_FULL;
  }
  sqlite3_file* real = Real(f);
  if (FileState* s = State(f)) {
    const int64_t size = RealSize(real);
    if (size < 0) return SQLITE_IOERR_FSTAT;
    s->undo.push_back(Undo{off, ReadExisting(real, off, n, size), size});
    s->last_write.assign(static_cast<const char*>(buf), static_cast<size_t>(n));
    s->last_write_offset = off;
  }
  ++g.writes;
  return real->pMethods->xWrite(real, buf, n, off);
}

int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  Global& g = G();
  std::lock_guard<std::mutex> lock(g.mu);
  if (g.powered_off) return SQLITE_IOERR_TRUNCATE;
  sqlite3_file* real = Real(f);
  if (FileState* s = State(f)) {
    const int64_t cur = RealSize(real);
    if (cur < 0) return SQLITE_IOERR_FSTAT;
    if (size < cur) {
      s->undo.push_back(Undo{size, ReadExisting(real, size, cur - size, cur), cur});
      s->last_write.clear();
      s->last_write_offset = -1;
    }
  }
  return real->pMethods->xTruncate(real, size);
}

int Sync(sqlite3_file* f, int /*flags*/) {
  Global& g = G();
  std::lock_guard<std::mutex> lock(g.mu);
  if (g.powered_off) return SQLITE_IOERR_FSYNC;
  ++g.syncs;
  // fsync flushes the file, whichever handle asks: everything written so far
  // is durable. The real fsync would only cost time; the model decides.
  if (FileState* s = State(f)) {
    s->undo.clear();
    s->last_write.clear();
    s->last_write_offset = -1;
  }
  return SQLITE_OK;
}

int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return Real(f)->pMethods->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** pp) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, pp);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return Real(f)->pMethods->xShmUnmap(Real(f), delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) {
  return Real(f)->pMethods->xFetch(Real(f), off, n, pp);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), off, p);
}

// Version 3 (shared memory and memory-mapped I/O forwarded): the unix VFS's.
const sqlite3_io_methods kMethods = {
    3,        Close,     Read,      Write,    Truncate, Sync,   FileSize, Lock,
    Unlock,   CheckReservedLock,    FileControl,        SectorSize,       DeviceCharacteristics,
    ShmMap,   ShmLock,   ShmBarrier, ShmUnmap, Fetch,   Unfetch};

// ---- vfs methods ----

int Open(sqlite3_vfs* /*vfs*/, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  Global& g = G();
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->base.pMethods = nullptr;
  ff->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kRealOffset);
  ff->state = nullptr;
  const int rc = g.base->xOpen(g.base, name, ff->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // SQLite calls xClose only when pMethods is set; close what the base opened.
    if (ff->real->pMethods != nullptr) ff->real->pMethods->xClose(ff->real);
    return rc;
  }
  std::lock_guard<std::mutex> lock(g.mu);
  if (name != nullptr && (flags & SQLITE_OPEN_DELETEONCLOSE) == 0) {
    ff->state = &g.files[name];
    ++ff->state->open;
  }
  ++g.open;
  ff->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int Delete(sqlite3_vfs* /*vfs*/, const char* name, int sync_dir) {
  Global& g = G();
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.powered_off) return SQLITE_IOERR_DELETE;
    if (auto it = g.files.find(name); it != g.files.end()) {
      it->second.undo.clear();
      it->second.last_write.clear();
      it->second.last_write_offset = -1;
    }
  }
  return g.base->xDelete(g.base, name, sync_dir);
}

int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return G().base->xAccess(G().base, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return G().base->xFullPathname(G().base, name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) { return G().base->xDlOpen(G().base, name); }
void DlError(sqlite3_vfs*, int n, char* out) { G().base->xDlError(G().base, n, out); }
void (*DlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return G().base->xDlSym(G().base, h, sym);
}
void DlClose(sqlite3_vfs*, void* h) { G().base->xDlClose(G().base, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return G().base->xRandomness(G().base, n, out); }
int Sleep(sqlite3_vfs*, int us) { return G().base->xSleep(G().base, us); }
int CurrentTime(sqlite3_vfs*, double* out) { return G().base->xCurrentTime(G().base, out); }
int GetLastError(sqlite3_vfs*, int n, char* out) {
  return G().base->xGetLastError(G().base, n, out);
}
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return G().base->xCurrentTimeInt64(G().base, out);
}
int SetSystemCall(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr p) {
  return G().base->xSetSystemCall(G().base, name, p);
}
sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs*, const char* name) {
  return G().base->xGetSystemCall(G().base, name);
}
const char* NextSystemCall(sqlite3_vfs*, const char* name) {
  return G().base->xNextSystemCall(G().base, name);
}

}  // namespace

FaultVfs& FaultVfs::Install() {
  static FaultVfs* vfs = [] {
    Global& g = G();
    g.base = sqlite3_vfs_find(nullptr);
    sqlite3_vfs& v = g.vfs;
    v.iVersion = 3;
    v.szOsFile = static_cast<int>(kRealOffset) + g.base->szOsFile;
    v.mxPathname = g.base->mxPathname;
    v.zName = "sluice-fault";
    v.xOpen = Open;
    v.xDelete = Delete;
    v.xAccess = Access;
    v.xFullPathname = FullPathname;
    v.xDlOpen = DlOpen;
    v.xDlError = DlError;
    v.xDlSym = DlSym;
    v.xDlClose = DlClose;
    v.xRandomness = Randomness;
    v.xSleep = Sleep;
    v.xCurrentTime = CurrentTime;
    v.xGetLastError = GetLastError;
    v.xCurrentTimeInt64 = CurrentTimeInt64;
    v.xSetSystemCall = SetSystemCall;
    v.xGetSystemCall = GetSystemCall;
    v.xNextSystemCall = NextSystemCall;
    sqlite3_vfs_register(&v, /*makeDflt=*/1);
    return new FaultVfs();
  }();
  return *vfs;
}

void FaultVfs::PowerCut() {
  std::lock_guard<std::mutex> lock(G().mu);
  G().powered_off = true;
}

namespace {
int64_t UnsyncedLocked(const Global& g, const std::string& suffix) {
  int64_t n = 0;
  for (const auto& [path, s] : g.files) {
    if (path.ends_with(suffix)) n += static_cast<int64_t>(s.undo.size());
  }
  return n;
}
}  // namespace

bool FaultVfs::PowerCutIfUnsynced(int64_t at_least, const std::string& suffix) {
  std::lock_guard<std::mutex> lock(G().mu);
  if (UnsyncedLocked(G(), suffix) < at_least) return false;
  G().powered_off = true;
  return true;
}

int64_t FaultVfs::unsynced_writes() const {
  std::lock_guard<std::mutex> lock(G().mu);
  return UnsyncedLocked(G(), "");
}

PowerLossReport FaultVfs::RestoreAfterPowerCut(PowerLossMode mode) {
  Global& g = G();
  std::lock_guard<std::mutex> lock(g.mu);
  PowerLossReport report;
  if (!g.powered_off) {
    report.error = "RestoreAfterPowerCut without PowerCut";
    return report;
  }
  for (const auto& [path, s] : g.files) {
    if (s.open > 0) {
      report.error = path + " is still open (" + std::to_string(s.open) + " handles)";
      return report;
    }
  }
  for (auto& [path, s] : g.files) {
    if (s.undo.empty()) continue;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      // Deleted since: nothing of it to put back.
      s.undo.clear();
      continue;
    }
    ++report.files;
    bool ok = true;
    for (auto it = s.undo.rbegin(); it != s.undo.rend() && ok; ++it) {
      if (!it->old.empty()) {
        ok = ::pwrite(fd, it->old.data(), it->old.size(), it->offset) ==
             static_cast<ssize_t>(it->old.size());
      }
      ok = ok && ::ftruncate(fd, it->old_size) == 0;
      ++report.writes_lost;
      report.bytes_restored += static_cast<int64_t>(it->old.size());
    }
    if (ok && mode == PowerLossMode::kTearLastWrite && s.last_write_offset >= 0) {
      // The last write was under way when the power went: only its first
      // half reached the disk.
      const size_t half = (s.last_write.size() + 1) / 2;
      ok = ::pwrite(fd, s.last_write.data(), half, s.last_write_offset) ==
           static_cast<ssize_t>(half);
      ++report.torn_writes;
      --report.writes_lost;
    }
    ::close(fd);
    if (!ok) {
      report.error = "restoring " + path + ": " + std::strerror(errno);
      return report;
    }
    s.undo.clear();
    s.last_write.clear();
    s.last_write_offset = -1;
  }
  g.powered_off = false;
  return report;
}

void FaultVfs::FailWritesFrom(int64_t n) {
  std::lock_guard<std::mutex> lock(G().mu);
  G().fail_at = G().write_calls + std::max<int64_t>(1, n);
}

void FaultVfs::SpaceReturns() {
  std::lock_guard<std::mutex> lock(G().mu);
  G().fail_at = 0;
}

int64_t FaultVfs::writes() const { return G().writes.load(); }
int64_t FaultVfs::syncs() const { return G().syncs.load(); }
int64_t FaultVfs::full_refusals() const { return G().full.load(); }
int64_t FaultVfs::open_files() const { return G().open.load(); }

}  // namespace sluice::testing
