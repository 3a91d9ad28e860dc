// Model-based randomized test of the SQLite store: random enqueue / claim /
// mark done / complete / fail / expire / extend / requeue steps, each checked
// against an in-memory model of the claim protocol, including stale in-store
// effects (built for masks that no longer hold) and their rebuilt retry. The seed is printed on
// failure; rerun with SLUICE_MODEL_SEED=<seed> to reproduce.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "queue/store.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"

namespace sluice {
namespace {

enum class RowState { kPending, kLeased, kDead };

struct ModelRow {
  std::string insert_id;
  RowState state = RowState::kPending;
  int attempts = 0;
  bool invisible = false;  // failed with a backoff longer than the test
  int64_t token = 0;
  uint64_t done = 0;
};

struct ModelLease {
  int64_t token = 0;
  bool expired = false;  // short TTL and the store clock has passed it
  std::vector<ClaimedEvent> events;
};

constexpr int kMaxAttempts = 4;
constexpr uint64_t kAllBits = 1 | 2 | 4;  // 1 = in-store counter, 2/4 = "external"

class StoreModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("SLUICE_MODEL_SEED");
    seed_ = env != nullptr ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    rng_.seed(seed_);
    store_ = testing::OpenTestStore("sqlite", dir_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    if (HasFailure()) {
      std::printf("store model test failed: rerun with SLUICE_MODEL_SEED=%llu\n",
                  static_cast<unsigned long long>(seed_));
    }
  }

  int Rand(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }

  bool Held(const ModelLease& l, int64_t seq) const {
    auto it = rows_.find(seq);
    return !l.expired && it != rows_.end() && it->second.state == RowState::kLeased &&
           it->second.token == l.token;
  }

  std::vector<ClaimedEvent> RandomSubset(const ModelLease& l) {
    std::vector<ClaimedEvent> out;
    for (const auto& e : l.events) {
      if (Rand(4) != 0) out.push_back(e);
    }
    if (out.empty() && !l.events.empty()) out.push_back(l.events[Rand(l.events.size())]);
    return out;
  }

  // The in-store counter's (bit 1) effects for the rows of `rows` lacking
  // bit 1 in the masks the rows carry, as the watcher builds them.
  static InStoreEffects CounterEffects(std::span<const ClaimedEvent> rows) {
    InStoreEffects part{.bit = 1, .effects = {}};
    for (const ClaimedEvent& e : rows) {
      if ((e.done_mask & 1) != 0) continue;
      part.effects.counters.push_back(
          CounterDelta{"p", "e", Granularity::kDay, 0, 1, {e.insert_id}});
    }
    return part;
  }

  void StepEnqueue() {
    const int n = 1 + Rand(6);
    std::vector<NewEvent> events;
    EnqueueResult want;
    std::set<std::string> in_batch;
    for (int i = 0; i < n; ++i) {
      // A small id space makes duplicates common, also within one batch.
      const std::string id = "id" + std::to_string(Rand(400));
      events.push_back({"p", id, R"({"event":"e"})"});
      if (seen_.count(id) != 0 || in_batch.count(id) != 0) {
        ++want.duplicates;
      } else {
        ++want.accepted;
        in_batch.insert(id);
      }
    }
    EnqueueBatch batch{events};
    auto r = store_->Enqueue(std::span<const EnqueueBatch>(&batch, 1));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ((*r)[0].accepted, want.accepted);
    ASSERT_EQ((*r)[0].duplicates, want.duplicates);
    // Seqs are assigned in order: learn them from the store as they are claimed.
    for (const auto& e : events) {
      if (in_batch.erase(e.insert_id) != 0) {
        seen_.insert(e.insert_id);
        pending_ids_.push_back(e.insert_id);
      }
    }
  }

  // Which rows the model says a claim of n returns: the lowest claimable seqs.
  // Rows not yet seen by any claim are in pending_ids_ (enqueue order), after
  // every known seq.
  void StepClaim(bool short_ttl) {
    const int n = 1 + Rand(8);
    std::vector<int64_t> want_known;
    for (const auto& [seq, row] : rows_) {
      if (static_cast<int>(want_known.size()) == n) break;
      bool claimable = (row.state == RowState::kPending && !row.invisible);
      if (row.state == RowState::kLeased) {
        for (const auto& l : leases_) {
          if (l.token == row.token && l.expired) claimable = true;
        }
      }
      if (claimable) want_known.push_back(seq);
    }
    const size_t want_new =
        std::min<size_t>(n - want_known.size(), pending_ids_.size() - next_new_);
    auto r = store_->Claim(ClaimRequest{"r/" + std::to_string(Rand(3)), n, short_ttl ? 1 : 60000});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->events.size(), want_known.size() + want_new);
    if (r->events.empty()) {
      ASSERT_EQ(r->token, 0);
      return;
    }
    ASSERT_GT(r->token, last_token_);
    last_token_ = r->token;
    for (size_t i = 0; i < want_known.size(); ++i) {
      const ClaimedEvent& e = r->events[i];
      ASSERT_EQ(e.seq, want_known[i]);
      ModelRow& row = rows_[e.seq];
      ASSERT_EQ(e.reclaimed, row.state == RowState::kLeased);
      ASSERT_EQ(e.insert_id, row.insert_id);
      ASSERT_EQ(e.done_mask, row.done);
      ASSERT_EQ(e.attempts, row.attempts + 1);
      row.state = RowState::kLeased;
      row.attempts++;
      row.token = r->token;
    }
    for (size_t i = want_known.size(); i < r->events.size(); ++i) {
      const ClaimedEvent& e = r->events[i];
      ASSERT_TRUE(rows_.empty() || e.seq > rows_.rbegin()->first);
      ASSERT_EQ(e.insert_id, pending_ids_[next_new_++]);
      ASSERT_EQ(e.attempts, 1);
      ASSERT_FALSE(e.reclaimed);
      ASSERT_EQ(e.done_mask, 0u);
      rows_[e.seq] = ModelRow{e.insert_id, RowState::kLeased, 1, false, r->token, 0};
    }
    ModelLease lease{r->token, false, r->events};
    if (short_ttl) {
      const int64_t until = r->lease_until_ms;
      ASSERT_TRUE(testing::WaitUntil([&] { return *store_->NowMs() > until; },
                                     std::chrono::seconds(5), std::chrono::milliseconds(1)));
      lease.expired = true;
    }
    leases_.push_back(std::move(lease));
    if (leases_.size() > 12) leases_.erase(leases_.begin());
  }

  void StepMarkOrComplete(bool complete) {
    if (leases_.empty()) return;
    const ModelLease& l = leases_[Rand(leases_.size())];
    std::vector<ClaimedEvent> subset = RandomSubset(l);
    // Mostly the masks seen at claim; sometimes the current ones (as after a
    // stale answer).
    if (Rand(3) == 0) {
      for (auto& e : subset) {
        if (Held(l, e.seq)) e.done_mask = rows_[e.seq].done;
      }
    }
    const uint64_t external = Rand(2) == 0 ? 0 : (Rand(2) == 0 ? 2 : 4 | 2);
    const bool with_counter = Rand(3) != 0;
    const bool stale = Send(l, subset, external, with_counter, complete);
    if (!stale || HasFailure()) return;
    // Rebuilt from the current masks of the held rows, the retry applies.
    std::vector<ClaimedEvent> current;
    for (const auto& e : subset) {
      if (!Held(l, e.seq)) continue;
      current.push_back(e);
      current.back().done_mask = rows_[e.seq].done;
    }
    ASSERT_FALSE(Send(l, current, external, with_counter, complete));
  }

  // One MarkDone/Complete of `rows` (with the counter's effects built from
  // their masks when with_counter), checked against the model. Returns true
  // when the store (and the model) found the effects stale.
  bool Send(const ModelLease& l, const std::vector<ClaimedEvent>& rows, uint64_t external,
            bool with_counter, bool complete) {
    const uint64_t bits = external | (with_counter ? 1 : 0);
    std::vector<InStoreEffects> in_store;
    if (with_counter) in_store.push_back(CounterEffects(rows));
    // The model's verdict first: lease lost, stale (some row the effects
    // cover is gone or has the bit; some row that had it lost it), or apply.
    bool held_any = false;
    bool stale = false;
    std::vector<HeldRow> want_held;
    for (const auto& e : rows) {
      const bool held = Held(l, e.seq);
      held_any = held_any || held;
      if (held) want_held.push_back(HeldRow{e.seq, rows_[e.seq].done});
      if (!with_counter) continue;
      const bool lacked = (e.done_mask & 1) == 0;
      const bool lacks = held && (rows_[e.seq].done & 1) == 0;
      if (lacked ? !lacks : (held && lacks)) stale = true;
    }
    std::sort(want_held.begin(), want_held.end(),
              [](const HeldRow& a, const HeldRow& b) { return a.seq < b.seq; });
    std::vector<int64_t> want_marked, want_deleted, want_remaining;
    if (held_any && !stale) {
      for (const auto& e : rows) {
        if (!Held(l, e.seq)) continue;
        ModelRow& row = rows_[e.seq];
        if ((row.done | bits) != row.done) want_marked.push_back(e.seq);
        if (with_counter && (row.done & 1) == 0) {
          ++counted_;
          distinct_.insert(row.insert_id);
        }
        row.done |= bits;
        if (complete) {
          if ((row.done & kAllBits) == kAllBits) {
            want_deleted.push_back(e.seq);
          } else {
            want_remaining.push_back(e.seq);
          }
        }
      }
    }
    if (complete) {
      auto r = store_->Complete(CompleteRequest{l.token, rows, kAllBits, external, in_store});
      if (!held_any) {
        EXPECT_EQ(r.status().code(), Code::kLeaseLost);
        return false;
      }
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return false;
      EXPECT_EQ(r->stale, stale);
      if (stale) {
        EXPECT_EQ(r->held, want_held);
        EXPECT_TRUE(r->deleted.empty() && r->remaining.empty());
        return true;
      }
      EXPECT_EQ(r->deleted, want_deleted);
      EXPECT_EQ(r->remaining, want_remaining);
      for (int64_t seq : want_deleted) rows_.erase(seq);
    } else {
      auto r = store_->MarkDone(MarkDoneRequest{l.token, rows, external, in_store});
      if (!held_any) {
        EXPECT_EQ(r.status().code(), Code::kLeaseLost);
        return false;
      }
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return false;
      EXPECT_EQ(r->stale, stale);
      if (stale) {
        EXPECT_EQ(r->held, want_held);
        EXPECT_TRUE(r->marked.empty());
        return true;
      }
      EXPECT_EQ(r->marked, want_marked);
    }
    return false;
  }

  void StepFail() {
    if (leases_.empty()) return;
    const ModelLease& l = leases_[Rand(leases_.size())];
    std::vector<int64_t> seqs;
    for (const auto& e : RandomSubset(l)) seqs.push_back(e.seq);
    const bool far = Rand(4) == 0;
    FailResult want;
    std::vector<int64_t> held;
    for (int64_t seq : seqs) {
      if (Held(l, seq)) held.push_back(seq);
    }
    auto r =
        store_->Fail(FailRequest{l.token, seqs, "consumer c: e",
                                 BackoffPolicy{far ? 3'600'000 : 0, 3'600'000, kMaxAttempts, 0.0, 0}});
    if (held.empty()) {
      ASSERT_EQ(r.status().code(), Code::kLeaseLost);
      return;
    }
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (int64_t seq : held) {
      ModelRow& row = rows_[seq];
      row.token = 0;
      if (row.attempts >= kMaxAttempts) {
        row.state = RowState::kDead;
        ++want.dead;
      } else {
        row.state = RowState::kPending;
        row.invisible = far;
        ++want.retried;
      }
    }
    ASSERT_EQ(r->dead, want.dead);
    ASSERT_EQ(r->retried, want.retried);
  }

  void StepExtend() {
    if (leases_.empty()) return;
    const ModelLease& l = leases_[Rand(leases_.size())];
    bool any = false;
    for (const auto& e : l.events) any = any || Held(l, e.seq);
    auto r = store_->Extend(l.token, 60000);
    if (any) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    } else {
      ASSERT_EQ(r.status().code(), Code::kLeaseLost);
    }
  }

  void StepRequeue() {
    int64_t want = 0;
    for (auto& [seq, row] : rows_) {
      if (row.state != RowState::kDead) continue;
      row.state = RowState::kPending;
      row.attempts = 0;
      row.invisible = false;
      ++want;
    }
    auto r = store_->RequeueDead({});
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(*r, want);
  }

  void CheckStats() {
    QueueStats want;
    for (const auto& [seq, row] : rows_) {
      if (row.state == RowState::kPending) ++want.pending;
      if (row.state == RowState::kLeased) ++want.leased;
      if (row.state == RowState::kDead) ++want.dead;
    }
    want.pending += static_cast<int64_t>(pending_ids_.size() - next_new_);
    auto s = store_->Stats();
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(s->pending, want.pending);
    ASSERT_EQ(s->leased, want.leased);
    ASSERT_EQ(s->dead, want.dead);
    auto c = store_->QueryCounters(CounterQuery{"p", "e", Granularity::kDay, 0, 1});
    ASSERT_TRUE(c.ok());
    if (counted_ == 0) {
      ASSERT_TRUE(c->empty());
    } else {
      ASSERT_EQ(c->size(), 1u);
      ASSERT_EQ((*c)[0].count, counted_);
      ASSERT_EQ((*c)[0].users, static_cast<int64_t>(distinct_.size()));
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  testing::TempDir dir_;
  StorePtr store_;
  std::map<int64_t, ModelRow> rows_;      // rows some claim has returned, by seq
  std::vector<std::string> pending_ids_;  // accepted insert_ids in enqueue order
  size_t next_new_ = 0;                   // pending_ids_[next_new_..] never claimed yet
  std::set<std::string> seen_;            // dedup: every accepted insert_id
  std::vector<ModelLease> leases_;        // recent leases, for stale-token steps
  int64_t last_token_ = 0;
  int64_t counted_ = 0;             // counter effect applications
  std::set<std::string> distinct_;  // distinct users counted
};

TEST_F(StoreModelTest, RandomStepsMatchTheModel) {
  SCOPED_TRACE("SLUICE_MODEL_SEED=" + std::to_string(seed_));
  constexpr int kSteps = 3000;
  for (int step = 0; step < kSteps && !HasFailure(); ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const int op = Rand(100);
    if (op < 20) {
      StepEnqueue();
    } else if (op < 38) {
      StepClaim(/*short_ttl=*/false);
    } else if (op < 42) {
      StepClaim(/*short_ttl=*/true);
    } else if (op < 57) {
      StepMarkOrComplete(/*complete=*/false);
    } else if (op < 77) {
      StepMarkOrComplete(/*complete=*/true);
    } else if (op < 90) {
      StepFail();
    } else if (op < 95) {
      StepExtend();
    } else if (op < 96) {
      StepRequeue();
    } else {
      CheckStats();
    }
  }
  if (!HasFailure()) CheckStats();
}

}  // namespace
}  // namespace sluice
