// Store: the durable queue, its claim protocol, and the in-store aggregates.
//
// Start here. Everything outside src/queue/ talks to the queue only through
// this interface; nothing outside the store layer knows which store is in use.
// Implementations: queue/sqlite (embedded default), queue/postgres.
// Both pass one conformance suite (tests/queue/store_conformance_test.cc).
//
// Invariants (DESIGN §1, §3; docs/architecture.md has the SQL):
//  1. Claim is one atomic statement/transaction: it moves the lowest-seq
//     claimable rows to `leased`, stamps owner, a new token and a deadline,
//     and increments attempts. Claimable means: state = pending and
//     visible_at <= now, OR state = leased and lease_until < now (an expired
//     lease: its owner died or stalled). There is no other recovery path.
//  2. Tokens are globally monotonic: every claim gets a token greater than any
//     token issued before, by any replica.
//  3. "now" is the store's clock, never a replica's.
//  4. Every write about claimed rows (Extend, MarkDone, Complete, Fail) is
//     fenced: it touches only rows whose lease_token equals the caller's token
//     AND whose lease has not expired. A worker whose lease expired or was
//     taken over changes nothing and gets kLeaseLost.
//  5. In-store effects are applied in the same transaction that sets their
//     consumer's done bit, only for rows whose bit that transaction set:
//     exactly-once effect, also across lease loss. Effects arrive as data,
//     built by the caller for given masks; the store checks those masks under
//     the fence and refuses (stale) rather than apply effects built for other
//     rows. No caller code runs inside a store transaction.
//  6. An event is deleted only when every configured consumer bit is set.
//  7. Enqueue stores a batch whole or not at all, deduplicated by
//     (project, insert_id): a key is refused as a duplicate for at least
//     dedup_window after it was first accepted, and at most window + one
//     bucket width + two maintenance intervals (queue/dedup_window.h); a key
//     seen again after its bucket was dropped is accepted as new. Keys are
//     stored as 128-bit hashes (a collision, ~n^2/2^129, refuses a new key).
//  8. Job runs (queue/jobs.h) follow 1-4 on their own table: one atomic
//     claim of due or expired runs, a token from the same counter, a lease
//     on the store clock, every later write fenced. A run's content is
//     frozen at its first claim; a job delta applied meanwhile schedules the
//     next run, due when this one completes.
//
// Thread-safe: every method may be called from any thread concurrently; a
// store keeps its own connection pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/dedup_window.h"
#include "queue/effects.h"
#include "queue/jobs.h"

namespace sluice {

// One event to enqueue. `body` is the normalized event (common/event.h).
struct NewEvent {
  std::string project;
  std::string insert_id;
  std::string body;
};

// One request's events; a group commit enqueues several in one transaction.
struct EnqueueBatch {
  std::span<const NewEvent> events;
};

struct EnqueueResult {
  int64_t accepted = 0;    // rows inserted into the queue
  int64_t duplicates = 0;  // (project, insert_id) already seen within the window
};

struct ClaimedEvent {
  int64_t seq = 0;
  std::string project;
  std::string insert_id;
  std::string body;
  uint64_t done_mask = 0;  // consumers that already finished this event
  int32_t attempts = 0;    // claims so far, this one included
  bool reclaimed = false;  // this claim took over an expired lease
};

struct ClaimRequest {
  std::string owner;           // replica id (+ loop), REQUIRES: non-empty
  int32_t max_events = 500;    // REQUIRES: > 0
  int64_t lease_ttl_ms = 30000;  // REQUIRES: > 0
};

struct Lease {
  int64_t token = 0;          // fencing token; 0 when nothing was claimed
  int64_t lease_until_ms = 0; // store clock, epoch ms
  std::vector<ClaimedEvent> events;  // ascending seq; empty when idle
};

struct BackoffPolicy {
  int64_t base_ms = 1000;    // delay after the first failed attempt
  int64_t cap_ms = 300000;   // delays never exceed this (before jitter)
  int32_t max_attempts = 10; // a row whose attempts reached this goes dead
  // Delay = min(cap, base * 2^(attempts-1)) scaled by a uniform factor in
  // [1 - jitter, 1]. REQUIRES: 0 <= jitter <= 1.
  double jitter = 0.5;
  // Floor of the delay after jitter, ms (a receiver's Retry-After); default 0.
  int64_t min_delay_ms = 0;
};

// A row a fenced write found held under its token, with its done bits as
// they are in the store now.
struct HeldRow {
  int64_t seq = 0;
  uint64_t done_mask = 0;
  bool operator==(const HeldRow&) const = default;
};

// MarkDone and Complete take data, never code: the caller builds each in-store
// consumer's effects beforehand (InStoreEffects) for the rows of `events` that
// lack its bit in `events[i].done_mask` (the masks seen at claim, or in the
// last stale answer). The store applies them only if, under the fence, every
// row they were built for is still held and still lacks the bit (and rows that
// had it still have it); otherwise it writes nothing and answers `stale` with
// the rows' current masks, and the caller rebuilds and retries.
struct MarkDoneRequest {
  int64_t token = 0;
  std::span<const ClaimedEvent> events;  // rows of this lease to mark; masks as the caller saw them
  uint64_t external_bits = 0;  // bits of external consumers that succeeded for all `events`
  std::vector<InStoreEffects> in_store;  // in-store consumers to apply and mark; distinct bits
};

struct MarkDoneResult {
  // Rows (seq) on which this call set at least one bit.
  std::vector<int64_t> marked;
  // True: some in_store effects were built for masks that no longer hold
  // (a row they cover is no longer held, or already has the bit). Nothing
  // was written; `held` gives the rows of `events` still held, ascending
  // seq, with their current masks, to rebuild the effects from.
  bool stale = false;
  std::vector<HeldRow> held;  // filled only when stale
};

struct CompleteRequest {
  int64_t token = 0;
  std::span<const ClaimedEvent> events;  // rows of this lease; masks as in MarkDone
  uint64_t all_bits = 0;       // every configured consumer's bit
  uint64_t external_bits = 0;  // as in MarkDone, applied first in the same transaction
  std::vector<InStoreEffects> in_store;  // as in MarkDone, applied first
};

struct CompleteResult {
  std::vector<int64_t> deleted;   // rows whose every bit was set, now gone
  std::vector<int64_t> remaining; // rows still held (some consumer not done)
  // As in MarkDoneResult: nothing was written, nothing deleted.
  bool stale = false;
  std::vector<HeldRow> held;  // filled only when stale
};

struct FailRequest {
  int64_t token = 0;
  std::span<const int64_t> seqs;
  std::string error;  // "consumer NAME: message"; stored in last_error
  BackoffPolicy backoff;
};

struct FailResult {
  int64_t retried = 0;  // back to pending with a backoff
  int64_t dead = 0;     // reached max_attempts
};

struct QueueStats {
  int64_t pending = 0;
  int64_t leased = 0;
  int64_t dead = 0;
  int64_t oldest_pending_age_ms = 0;  // store clock; 0 when none pending
  // Identity merges (profile::CountLinks summed over every stored id, kept
  // up to date by the users effects' transactions: a read of one row).
  int64_t identity_links_applied = 0;  // ids merged into another person
  int64_t identity_links_refused = 0;  // links that would merge two persons
};

struct DeadEvent {
  int64_t seq = 0;
  std::string project;
  std::string insert_id;
  std::string body;
  int32_t attempts = 0;
  uint64_t done_mask = 0;
  std::string last_error;
  int64_t died_at_ms = 0;
};

// Selects dead events for requeue/purge. Empty fields match everything.
struct DeadFilter {
  std::vector<int64_t> seqs;
  std::string project;
  // Matches rows whose last_error names this consumer: "consumer NAME:" at
  // its start or after "; " (LastErrorNamesConsumer, queue/lease_logic.h).
  std::string consumer;
  int32_t limit = 0;     // list only; 0 = default (100)
  std::string error{};   // last_error contains this text (ASCII case-insensitive); "" = any
};

struct ReplicaInfo {
  std::string id;
  std::string host;
  int64_t pid = 0;
  std::string version;
  int64_t started_ms = 0;
  int64_t heartbeat_ms = 0;   // store clock
  int64_t leases_held = 0;    // events this replica holds leased now (filled by ListReplicas)
  std::string stats{};        // JSON the replica last published (PublishReplicaStats); "" = none
};

// A person (docs/users.md): its root id and every id merged into it.
struct UserProfile {
  std::string project;
  std::string user_id;           // the person's root id
  std::vector<std::string> ids;  // every id merged into the person, sorted (user_id included)
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  int64_t events = 0;
  std::vector<std::pair<std::string, int64_t>> event_counts;  // by name
  std::string properties;  // effective values, minified JSON object, keys sorted
  std::vector<RefusedMerge> merges_refused;  // sorted
};

// The person `root` from the id rows a store read for it (the root's, the
// rows whose earliest link targets it, the sources of links to it; each with
// its event counts, parsed properties and every link): AssemblePerson, then
// the fields above. Store-agnostic, so both stores answer byte-identically.
UserProfile MakeUserProfile(const std::string& project, const std::string& root,
                            const std::vector<IdRow>& rows);

struct CounterQuery {
  std::string project;  // "" = all projects, summed (users summed too)
  std::string event;    // REQUIRES: non-empty
  Granularity granularity = Granularity::kHour;
  int64_t from_ms = 0;  // inclusive, bucket start
  int64_t to_ms = 0;    // exclusive
};

struct CounterPoint {
  int64_t bucket_ms = 0;
  int64_t count = 0;
  int64_t users = 0;
};

// ---- console reads (Store::ScanBacklog) ----

// Live or dead rows that share one done_mask, within a bounded scan.
struct MaskGroup {
  uint64_t done_mask = 0;
  int64_t events = 0;
  int64_t leased = 0;              // of which state = leased
  int64_t waiting = 0;             // of which pending with visible_at > now (retry backoff)
  int64_t oldest_ms = 0;           // live: min enqueued_at; dead: min died_at (store clock)
  int64_t oldest_pending_ms = 0;   // live: min enqueued_at of the pending ones; 0 = none
  int64_t next_visible_ms = 0;     // live: min visible_at of the waiting ones; 0 = none
};

struct BacklogScanRequest {
  int64_t max_live = 20000;   // live rows scanned from the head of the queue; REQUIRES: > 0
  int64_t max_dead = 20000;   // dead rows scanned, oldest first; REQUIRES: > 0
  int64_t samples = 1000;     // probes of the seq range beyond the head scan; REQUIRES: > 0
};

// What a bounded read of the queue saw. The scan reads the `max_live`
// lowest-seq live rows and the `max_dead` oldest dead rows; when live rows
// remain beyond the head scan, it probes `samples` seqs spread evenly over
// (last_scanned_seq, max_seq] by primary key (a hit is a live row with that
// seq). Its cost does not grow with the queue.
struct BacklogScan {
  int64_t now_ms = 0;          // store clock
  int64_t live_scanned = 0;    // live rows read (<= max_live)
  bool live_complete = false;  // every live row was read: the live groups are exact
  int64_t first_live_seq = 0;  // lowest live seq; 0 when none
  int64_t last_scanned_seq = 0;  // highest seq the live scan read; 0 when none
  int64_t max_seq = 0;         // highest seq in the queue, any state; 0 when empty
  int64_t leased_total = 0;    // every leased row (exact: the leased rows' index)
  std::vector<MaskGroup> live;
  // The probes beyond the head scan: their hits grouped like `live`. When
  // sample_span <= samples every seq of the span was probed (exact).
  int64_t sample_span = 0;   // max_seq - last_scanned_seq when probed, else 0
  int64_t samples_taken = 0;
  std::vector<MaskGroup> sampled;
  int64_t dead_scanned = 0;
  bool dead_complete = false;  // every dead row was read: the dead groups are exact
  std::vector<MaskGroup> dead;
};

// PublishReplicaStats refuses larger documents.
inline constexpr size_t kMaxReplicaStatsBytes = 64 * 1024;

struct StoreOptions {
  // "sqlite:PATH" | "postgres://..." | "postgresql://...".
  std::string url = "sqlite:./sluice-data/sluice.db";
  // Durability of an acknowledged enqueue. true: survives power loss (SQLite
  // synchronous=FULL, PostgreSQL synchronous_commit=on). false: survives a
  // process crash, may lose the last commits on power loss.
  bool sync = true;
  int32_t pool_size = 8;              // connections, >= 1
  int64_t busy_timeout_ms = 10000;    // SQLite lock wait / PG statement timeout
  int64_t dedup_window_ms = 24LL * 3600 * 1000;  // default 24 h, > 0
  // Buckets the window is split into (queue/dedup_window.h), in
  // [kMinDedupBuckets, kMaxDedupBuckets]: more = less disk beyond the window,
  // one more index probe per event each.
  int32_t dedup_buckets = 4;
};

class Store {
 public:
  virtual ~Store() = default;

  // ---- ingest ----
  // Dedup + insert of every batch in one transaction; per-batch results in
  // batch order. All or nothing: on error nothing of any batch is stored.
  virtual Result<std::vector<EnqueueResult>> Enqueue(std::span<const EnqueueBatch> batches) = 0;

  // ---- the claim protocol ----
  virtual Result<Lease> Claim(const ClaimRequest& req) = 0;
  // Pushes the deadline of every row held under `token` to now + ttl.
  // Returns the new deadline; kLeaseLost if no row is held any more.
  virtual Result<int64_t> Extend(int64_t token, int64_t lease_ttl_ms) = 0;
  // Fenced. kLeaseLost when no row of `events` is held under token (nothing
  // changed). Sets the bits on the held rows of `events` and applies the
  // in-store effects, in one transaction; or, when the effects are stale (see
  // MarkDoneRequest), changes nothing and answers stale.
  virtual Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) = 0;
  // Fenced. MarkDone of the given bits/effects, then deletes the held rows
  // whose every bit in all_bits is set; one transaction. Stale as MarkDone.
  virtual Result<CompleteResult> Complete(const CompleteRequest& req) = 0;
  // Fenced. Held rows go back to pending at now + backoff(attempts), or dead
  // when attempts >= max_attempts; last_error records why.
  virtual Result<FailResult> Fail(const FailRequest& req) = 0;

  // ---- dead letters ----
  virtual Result<std::vector<DeadEvent>> ListDead(const DeadFilter& filter) = 0;
  // Dead rows back to pending, visible now, attempts reset to 0, done bits
  // kept (consumers that finished are not called again). Returns the number
  // requeued.
  virtual Result<int64_t> RequeueDead(const DeadFilter& filter) = 0;
  virtual Result<int64_t> PurgeDead(const DeadFilter& filter) = 0;

  // ---- singleton duties and housekeeping ----
  // Takes or renews the named lease for owner. Returns its fencing token when
  // held by owner now; kBusy when another owner holds an unexpired lease.
  virtual Result<int64_t> AcquireNamedLease(const std::string& name, const std::string& owner,
                                            int64_t ttl_ms) = 0;
  virtual Status ReleaseNamedLease(const std::string& name, int64_t token) = 0;
  // Rotates and expires the dedup window (PlanDedupMaintenance on the store
  // clock): creates the newest bucket when due, drops every bucket whose
  // entries are all older than the window. Fenced by a named-lease token:
  // kLeaseLost (nothing changed) when it holds no live named lease.
  virtual Result<DedupMaintenance> MaintainDedup(int64_t named_lease_token) = 0;

  // ---- replicas and status ----
  virtual Status RegisterReplica(const ReplicaInfo& info) = 0;  // upsert + heartbeat
  virtual Status HeartbeatReplica(const std::string& id) = 0;
  virtual Status RemoveReplica(const std::string& id) = 0;
  // Replicas with a heartbeat within `alive_within_ms`, with leases_held.
  virtual Result<std::vector<ReplicaInfo>> ListReplicas(int64_t alive_within_ms) = 0;
  // Exact counts (every live row is read: seconds at 10 M rows); for status.
  virtual Result<QueueStats> Stats() = 0;
  // Pending + leased events for a poll of backpressure, exact where a bound
  // is: when the depth is above `exact_above` it returns min(depth, limit);
  // otherwise any value in [depth, exact_above]. The store first takes an
  // O(1) upper bound (last seq issued - lowest live seq + 1) and counts rows,
  // at most `limit`, only when that bound is above `exact_above`.
  // REQUIRES: 0 <= exact_above < limit.
  virtual Result<int64_t> PollDepth(int64_t exact_above, int64_t limit) = 0;
  // The store clock, epoch ms.
  virtual Result<int64_t> NowMs() = 0;

  // ---- read API of the in-store aggregates ----
  // The person `user_id` (any of its ids) belongs to, read in one snapshot.
  // kNotFound when no event named the id yet. project "" = "default".
  virtual Result<UserProfile> GetUser(const std::string& project, const std::string& user_id) = 0;
  virtual Result<std::vector<CounterPoint>> QueryCounters(const CounterQuery& q) = 0;

  // Kind of store, "sqlite" or "postgres", for logs and metrics only.
  virtual const char* kind() const = 0;

  // ---- the console (ops/overview.h) ----
  // Heartbeat plus the replica's own figures (a small JSON object: loops,
  // rates, per-consumer counts), so every replica and `sluice status` can show
  // them. kNotFound when the replica is not registered; kTooLarge above
  // kMaxReplicaStatsBytes.
  virtual Status PublishReplicaStats(const std::string& id, const std::string& stats_json) = 0;
  // The queue's head rows grouped by done_mask, and the dead rows likewise,
  // each bounded by `req` (BacklogScan). Read-only.
  virtual Result<BacklogScan> ScanBacklog(const BacklogScanRequest& req) = 0;

  // ---- keyed jobs (queue/jobs.h, docs/jobs.md) ----
  // Leases the due runs (pending with a due time <= now) and the runs whose
  // lease expired, of the named jobs, earliest due first, in one atomic
  // statement, under one fresh token. A run claimed for the first time takes
  // the pending events as its frozen content.
  virtual Result<RunLease> ClaimJobRuns(const JobClaimRequest& req) = 0;
  // Pushes the deadline of every run held under `token` to now + ttl.
  // Returns it; kLeaseLost when no run is held any more.
  virtual Result<int64_t> ExtendJobRuns(int64_t token, int64_t lease_ttl_ms) = 0;
  // Fenced. The run is done: the row goes idle, or, when events arrived
  // since the claim, on to the next run (due at max(now, its due time)).
  // kLeaseLost when the run is not held under token (nothing changed).
  virtual Status CompleteJobRun(int64_t token, const JobRef& ref) = 0;
  // Fenced. Back to pending at now + backoff(attempts), content kept; or,
  // at max_attempts, the run is moved to the dead runs and the row goes on
  // as after a completion. kLeaseLost as CompleteJobRun. The result counts
  // one run, retried or dead.
  virtual Result<FailResult> FailJobRun(int64_t token, const JobRef& ref, const std::string& error,
                                        const BackoffPolicy& backoff) = 0;
  // Job rows, by (job, project, key); `limit` as DeadFilter's.
  virtual Result<std::vector<JobRow>> ListJobs(const JobFilter& filter) = 0;
  // One entry per job name that has rows or dead runs, by name.
  virtual Result<std::vector<JobStats>> JobStatsByName() = 0;
  virtual Result<std::vector<DeadRun>> ListDeadRuns(const JobFilter& filter) = 0;
  // Each dead run's events go back to its row, due now (they join the
  // pending events; a leased row runs them next). Returns runs requeued.
  virtual Result<int64_t> RequeueDeadRuns(const JobFilter& filter) = 0;
  virtual Result<int64_t> PurgeDeadRuns(const JobFilter& filter) = 0;

  // ---- cross-replica wake-ups ----
  // Registers `cb`, called (from a store thread, possibly often; keep it
  // cheap, e.g. Watcher::Wake) whenever another replica may have enqueued
  // work. PostgreSQL: LISTEN/NOTIFY, so a replica on another host wakes at
  // once. Default: no-op (SQLite replicas poll). Call once, before work
  // starts; an empty cb stops the calls.
  virtual void SetWakeCallback(std::function<void()> /*cb*/) {}
};

using StorePtr = std::unique_ptr<Store>;

}  // namespace sluice
