// Fencing of a stalled worker's late writes, tested so that the test fails
// when fencing is off. Two real watchers on one real SQLite file; the first
// holds a batch and stalls past its lease, the second takes the batch over and
// is held inside its own delivery while the first, unstalled, writes:
//  - a stalled watcher (no heartbeat, as under SIGSTOP) whose Complete comes
//    after its lease expired;
//  - a consumer call stuck past the consumer timeout, ignoring its deadline:
//    the watcher gives up and fails the batch, the batch is claimed again, and
//    the stuck call's late "success" arrives with its MarkDone.
// The stale write is made while the rows still exist, held by the replica that
// took them over: the only moment a missing fence shows. (The tests this file
// replaces, WatcherTest.LeaseLossFences... and ConsumerHangTest.StuckCall...,
// let the taker finish first; with nothing left to write, the stale write was
// refused with fencing off as well.) Each scenario runs twice: on the real
// store (the stale write must be refused and the taker keep its rows), and as a
// control on the test kit's UnfencedStore, where the same checker must report
// the accepted write.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "consumers/counters/counters_consumer.h"
#include "consumers/users/users_consumer.h"
#include "queue/open/open_store.h"
#include "queue/store_wrapper.h"
#include "testing/store_fixture.h"
#include "testing/testing.h"
#include "testkit/flaky_consumer.h"
#include "testkit/testkit.h"
#include "watcher/watcher.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::WaitUntil;

constexpr int64_t kT0 = 1714521600000;  // 2024-05-01T00:00:00Z
constexpr int kEvents = 40;
constexpr uint64_t kSinkBit = uint64_t{1} << 3;

// Forwards to a store and records the answers to the lease writes and claims.
class RecordingStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  struct Write {
    std::string op;  // "mark_done", "complete", "fail"
    int64_t token = 0;
    Code code = Code::kOk;
  };

  Result<Lease> Claim(const ClaimRequest& req) override {
    Result<Lease> r = StoreWrapper::Claim(req);
    if (r.ok() && r->token != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      claim_tokens_.push_back(r->token);
    }
    return r;
  }
  Result<MarkDoneResult> MarkDone(const MarkDoneRequest& req) override {
    Result<MarkDoneResult> r = StoreWrapper::MarkDone(req);
    Record("mark_done", req.token, r.status().code());
    return r;
  }
  Result<CompleteResult> Complete(const CompleteRequest& req) override {
    Result<CompleteResult> r = StoreWrapper::Complete(req);
    Record("complete", req.token, r.status().code());
    return r;
  }
  Result<FailResult> Fail(const FailRequest& req) override {
    Result<FailResult> r = StoreWrapper::Fail(req);
    Record("fail", req.token, r.status().code());
    return r;
  }

  std::vector<Write> writes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return writes_;
  }
  int64_t first_claim_token() const {
    std::lock_guard<std::mutex> lock(mu_);
    return claim_tokens_.empty() ? 0 : claim_tokens_.front();
  }
  // The first write `op`, once made.
  std::optional<Write> Find(const std::string& op) const {
    for (const Write& w : writes()) {
      if (w.op == op) return w;
    }
    return std::nullopt;
  }

 private:
  void Record(const char* op, int64_t token, Code code) {
    std::lock_guard<std::mutex> lock(mu_);
    writes_.push_back(Write{op, token, code});
  }

  mutable std::mutex mu_;
  std::vector<Write> writes_;          // GUARDED_BY(mu_)
  std::vector<int64_t> claim_tokens_;  // GUARDED_BY(mu_)
};

// A latch a consumer's first call waits on (ignoring its deadline, like a
// stuck syscall), so the test decides when each delivery returns.
struct Gate {
  std::atomic<bool> entered{false};
  std::atomic<bool> open{false};
  // The hook of a FlakyConsumer: its first call blocks until Open().
  std::function<void(const Delivery&)> Hook() {
    return [this](const Delivery&) {
      if (entered.exchange(true)) return;
      WaitUntil([this] { return open.load(); }, milliseconds(30000));
    };
  }
};

// What the checker looks at after the stale write.
struct StaleWriteOutcome {
  std::optional<RecordingStore::Write> stale;  // the stalled replica's late write
  bool taker_holds_rows = false;  // the taker's lease still covers every row afterwards
  int64_t stale_fenced = 0;       // sluice_fenced_total of the stalled replica
};

// The checker: "" when the stale write changed nothing, else what went wrong.
std::string Violations(const StaleWriteOutcome& o) {
  std::string v;
  if (!o.stale) {
    v += "the stalled replica made no late write; ";
  } else if (o.stale->code != Code::kLeaseLost) {
    v += "the stalled replica's late " + o.stale->op + " (token " +
         std::to_string(o.stale->token) + ") was accepted (" +
         std::string(CodeName(o.stale->code)) + ") while another replica held the rows; ";
  }
  if (!o.taker_holds_rows) {
    v += "the replica that took the batch over no longer holds its rows after the stale write; ";
  }
  return v;
}

class FencingTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = Open(/*fencing=*/true); }

  // A store on the same file; `fencing` false: the test kit's UnfencedStore.
  StorePtr Open(bool fencing) {
    StoreOptions o;
    o.url = "sqlite:" + dir_.File("db");
    o.sync = false;
    Result<StorePtr> s = OpenStore(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    if (fencing) return std::move(*s);
    Result<StorePtr> unfenced = ApplyTestOnlySettings(std::move(*s), o, {{"store.fencing", "false"}});
    EXPECT_TRUE(unfenced.ok()) << unfenced.status().ToString();
    return unfenced.ok() ? std::move(*unfenced) : nullptr;
  }

  static WatcherOptions Options(int64_t ttl_ms) {
    WatcherOptions o;
    o.loops = 1;
    o.batch = 100;
    o.lease_ttl_ms = ttl_ms;
    o.idle_poll_min_ms = 5;
    o.idle_poll_max_ms = 50;
    o.backoff.base_ms = 10;
    o.backoff.cap_ms = 20;
    o.backoff.jitter = 0;
    o.backoff.max_attempts = 10;
    o.drain_timeout_ms = 5000;
    return o;
  }

  // users + counters + an external consumer gated by `gate`.
  static std::vector<ConsumerPtr> Consumers(Gate* gate) {
    std::vector<ConsumerPtr> c;
    c.push_back(std::make_unique<UsersConsumer>("users", 1));
    c.push_back(std::make_unique<CountersConsumer>("counters", 2));
    auto sink = std::make_unique<FlakyConsumer>("sink", kSinkBit, FlakyConsumerOptions{});
    sink->set_hook(gate->Hook());
    c.push_back(std::move(sink));
    return c;
  }

  int64_t Fenced(Metrics& m) { return m.GetCounter("sluice_fenced_total", "", "").value(); }

  // True when `token` still holds its rows (asked through the test's own,
  // fenced store: an Extend of that lease).
  bool Holds(int64_t token) { return token != 0 && store_->Extend(token, 5000).ok(); }

  bool QueueEmpty() {
    auto s = store_->Stats();
    return s.ok() && s->pending == 0 && s->leased == 0 && s->dead == 0;
  }

  // How the first watcher, A, stalls past its lease, and the write it makes late.
  struct Stall {
    WatcherOptions a;      // A's options
    const char* late_op;   // the late write: "complete" or "mark_done"
    bool a_fails_first;    // A gives up on the batch and fails it before B starts
  };
  // A stalled watcher (no heartbeat: its lease runs out, as under SIGSTOP)
  // blocked in its external consumer; when the consumer returns, A writes
  // its Complete.
  static Stall StalledWatcher() {
    Stall s{Options(300), "complete", false};
    s.a.heartbeat_ms = 60000;  // the stalled replica cannot extend its lease
    s.a.consumer_timeout_ms = 30000;
    return s;
  }
  // A's consumer call ignores its deadline (a stuck syscall): A, healthy,
  // gives up at the consumer timeout + 1 s grace and fails the batch; when
  // the stuck call returns "success", A writes its MarkDone.
  static Stall StuckCall() {
    Stall s{Options(1000), "mark_done", true};
    s.a.heartbeat_ms = 250;  // A's lease does not run out
    s.a.consumer_timeout_ms = 500;
    return s;
  }

  // A holds the batch and stalls; B takes the batch over and is held inside
  // its own delivery; then A's consumer returns and A writes late.
  StaleWriteOutcome RunStaleWrite(bool fencing, const Stall& stall) {
    StaleWriteOutcome out;
    EXPECT_EQ(testing::EnqueueOpenEvents(*store_, kEvents, kT0), "");
    RecordingStore a_store(Open(fencing));
    RecordingStore b_store(store_.get());
    Gate a_gate, b_gate;
    Metrics ma, mb;
    Watcher a(&a_store, Consumers(&a_gate), stall.a, "A", &ma);
    Watcher b(&b_store, Consumers(&b_gate), Options(5000), "B", &mb);
    a.Start();
    EXPECT_TRUE(WaitUntil([&] { return a_gate.entered.load(); }, milliseconds(10000)));
    if (stall.a_fails_first) {
      EXPECT_TRUE(WaitUntil([&] { return a_store.Find("fail").has_value(); }, milliseconds(10000)));
    }
    b.Start();  // claims the batch once A's lease has expired or A failed it
    EXPECT_TRUE(WaitUntil([&] { return b_gate.entered.load(); }, milliseconds(10000)));
    a_gate.open = true;
    EXPECT_TRUE(WaitUntil([&] { return a_store.Find(stall.late_op).has_value(); },
                          milliseconds(10000)));
    out.stale = a_store.Find(stall.late_op);
    out.taker_holds_rows = Holds(b_store.first_claim_token());
    b_gate.open = true;
    EXPECT_TRUE(WaitUntil([&] { return b_store.Find("complete") || Fenced(mb) > 0; },
                          milliseconds(10000)));
    if (fencing) {
      EXPECT_TRUE(WaitUntil([&] { return QueueEmpty(); }, milliseconds(10000)));
    }
    a.Drain();
    b.Drain();
    out.stale_fenced = Fenced(ma);
    return out;
  }

  testing::TempDir dir_;
  StorePtr store_;
};

TEST_F(FencingTest, StalledWatchersLateCompleteIsRefusedWhileTheTakeoverHoldsTheRows) {
  ASSERT_NE(store_, nullptr);
  const StaleWriteOutcome o = RunStaleWrite(/*fencing=*/true, StalledWatcher());
  EXPECT_EQ(Violations(o), "");
  EXPECT_EQ(o.stale_fenced, 1);  // the operator sees it: one lease fenced
  // In-store effects once, although A held the batch first.
  EXPECT_EQ(testing::OpenEventsCountedOnce(*store_, kEvents, kT0), "");
}

TEST_F(FencingTest, ControlUnfencedStoreLetsTheStalledWatchersCompleteThroughAndIsCaught) {
  ASSERT_NE(store_, nullptr);
  const StaleWriteOutcome o = RunStaleWrite(/*fencing=*/false, StalledWatcher());
  const std::string v = Violations(o);
  std::printf("control, fencing off, stalled watcher: %s\n", v.c_str());
  EXPECT_NE(v, "") << "the checker must report the stale Complete that fencing would refuse";
}

TEST_F(FencingTest, StuckCallsLateSuccessIsRefusedWhileTheRetryHoldsTheRows) {
  ASSERT_NE(store_, nullptr);
  const StaleWriteOutcome o = RunStaleWrite(/*fencing=*/true, StuckCall());
  EXPECT_EQ(Violations(o), "");
  EXPECT_EQ(testing::OpenEventsCountedOnce(*store_, kEvents, kT0), "");
}

TEST_F(FencingTest, ControlUnfencedStoreAcceptsTheStuckCallsLateSuccessAndIsCaught) {
  ASSERT_NE(store_, nullptr);
  const StaleWriteOutcome o = RunStaleWrite(/*fencing=*/false, StuckCall());
  const std::string v = Violations(o);
  std::printf("control, fencing off, stuck call: %s\n", v.c_str());
  EXPECT_NE(v, "") << "the checker must report the late MarkDone that fencing would refuse";
}

}  // namespace
}  // namespace sluice
