// The scheduler's promises: compatible work is batched up to the token budget, tenants share the
// worker's time (round robin among equals, a heavy tenant waits while light ones catch up), a
// full queue and a drained scheduler refuse work, and work whose deadline passed or whose client
// cancelled is rejected instead of run.
#include "core/scheduler.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {

// Scopes of SchedulerOptions::yield_scope alive now (tests that set one).
std::atomic<int> live_scopes{0};

struct Log {
  absl::Mutex mu;
  std::map<std::string, int> scopes_seen;         // live_scopes while each item ran
  std::vector<std::vector<std::string>> batches;  // names of each batch run
  std::vector<absl::Time> ran;                    // when each batch ran
  std::vector<std::pair<std::string, absl::StatusCode>> rejected;
  int deepest = 0;  // the most Runs ever in progress on one thread
};

class TestWork : public Work {
 public:
  TestWork(Log* log, std::string name, std::string tenant_name, std::string key,
           int64_t token_count, absl::Notification* gate = nullptr)
      : log_(log), name_(std::move(name)), gate_(gate) {
    tenant = std::move(tenant_name);
    batch_key = std::move(key);
    tokens = token_count;
  }
  void Run(absl::Span<Work* const> batch) override {
    if (gate_ != nullptr) gate_->WaitForNotification();
    ++depth;
    absl::SleepFor(takes);
    for (int i = 0; i < units; ++i) {  // a long item: units of work with a yield between them
      absl::SleepFor(unit);
      Yield();
    }
    std::vector<std::string> names;
    for (Work* w : batch) names.push_back(static_cast<TestWork*>(w)->name_);
    absl::MutexLock lock(&log_->mu);
    log_->batches.push_back(names);
    log_->ran.push_back(absl::Now());
    log_->scopes_seen[name_] = live_scopes.load();
    log_->deepest = std::max(log_->deepest, depth);
    --depth;
  }
  absl::Duration takes = absl::ZeroDuration();  // how long Run works
  int units = 0;                                // then this many units of `unit`, yielding
  absl::Duration unit = absl::ZeroDuration();
  static thread_local int depth;  // Runs in progress on this thread

  void Reject(const absl::Status& status) override {
    absl::MutexLock lock(&log_->mu);
    log_->rejected.emplace_back(name_, status.code());
  }

 private:
  Log* log_;
  std::string name_;
  absl::Notification* gate_;
};

thread_local int TestWork::depth = 0;

SchedulerOptions Options(int64_t max_queue, int64_t batch_max_tokens = 4096) {
  SchedulerOptions o;
  o.workers = 1;
  o.max_queue = max_queue;
  o.batch_max_tokens = batch_max_tokens;
  o.batch_max_size = 8;
  return o;
}

// A scheduler whose single worker is held by a gate until the test has queued its work.
class SchedulerTest : public ::testing::Test {
 protected:
  void Start(const SchedulerOptions& options) {
    scheduler_ = std::make_unique<Scheduler>("m", options, nullptr);
    ASSERT_TRUE(Submit(std::make_unique<TestWork>(&log_, "gate", "z", "", 1, &gate_)).ok());
    absl::SleepFor(absl::Milliseconds(50));  // the worker is now inside the gate's Run
  }
  absl::Status Submit(std::unique_ptr<Work> w) {
    std::unique_ptr<Work> rejected;
    return scheduler_->Submit(std::move(w), &rejected);
  }
  void Add(const std::string& name, const std::string& tenant, const std::string& key,
           int64_t tokens = 10) {
    ASSERT_TRUE(Submit(std::make_unique<TestWork>(&log_, name, tenant, key, tokens)).ok());
  }
  void Finish() {
    gate_.Notify();
    scheduler_->Drain();
  }

  Log log_;
  absl::Notification gate_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, BatchesCompatibleWorkUpToTheTokenBudget) {
  Start(Options(100, 30));
  for (const char* name : {"a1", "a2", "a3", "a4"}) Add(name, "t", "k");
  Add("other", "t", "k2");
  Finish();
  ASSERT_EQ(log_.batches.size(), 4u);
  EXPECT_EQ(log_.batches[1], (std::vector<std::string>{"a1", "a2", "a3"}));  // 30 tokens
  // Within a tenant, order is kept: a4 (over budget) goes next, then the other key.
  EXPECT_EQ(log_.batches[2], (std::vector<std::string>{"a4"}));
  EXPECT_EQ(log_.batches[3], (std::vector<std::string>{"other"}));
}

TEST_F(SchedulerTest, WaitsForCompanyOnlyWhileRequestsArriveConcurrently) {
  SchedulerOptions options = Options(100);
  options.batch_max_delay = absl::Milliseconds(300);
  Start(options);
  Add("a1", "t", "k");
  Add("a2", "t", "k");
  gate_.Notify();
  absl::SleepFor(absl::Milliseconds(50));  // a1 and a2 ran together: arrivals are concurrent
  Add("b1", "t", "k");
  absl::SleepFor(absl::Milliseconds(100));
  Add("b2", "t", "k");  // within b1's delay: joins it
  absl::SleepFor(absl::Milliseconds(400));
  const absl::Time c1 = absl::Now();  // the previous batch had company, so c1 waits...
  Add("c1", "t", "k");
  absl::SleepFor(absl::Milliseconds(400));
  const absl::Time d1 = absl::Now();
  Add("d1", "t", "k");  // ...but after a batch of one, d1 runs at once
  absl::SleepFor(absl::Milliseconds(100));
  scheduler_->Drain();
  ASSERT_EQ(log_.batches.size(), 5u);
  EXPECT_EQ(log_.batches[1], (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(log_.batches[2], (std::vector<std::string>{"b1", "b2"}));
  EXPECT_EQ(log_.batches[3], (std::vector<std::string>{"c1"}));
  EXPECT_GE(log_.ran[3] - c1, absl::Milliseconds(250));
  EXPECT_EQ(log_.batches[4], (std::vector<std::string>{"d1"}));
  EXPECT_LT(log_.ran[4] - d1, absl::Milliseconds(50));
}

TEST_F(SchedulerTest, ServesTenantsRoundRobin) {
  Start(Options(100));
  for (int i = 0; i < 10; ++i) Add("flood" + std::to_string(i), "alice", "");
  Add("bob0", "bob", "");
  Add("bob1", "bob", "");
  Finish();
  std::vector<std::string> order;
  order.reserve(log_.batches.size());
  for (const auto& b : log_.batches) order.push_back(b.front());
  // After the gate, bob's requests alternate with alice's instead of waiting behind all ten.
  ASSERT_GE(order.size(), 5u);
  EXPECT_EQ(order[1], "flood0");
  EXPECT_EQ(order[2], "bob0");
  EXPECT_EQ(order[3], "flood1");
  EXPECT_EQ(order[4], "bob1");
}

// Fair share of worker time: a tenant whose requests take 30 ms each waits while another's
// instant ones run, instead of alternating with them turn by turn.
TEST_F(SchedulerTest, AHeavyTenantWaitsWhileALightOneCatchesUp) {
  Start(Options(100));
  for (int i = 0; i < 3; ++i) {
    auto heavy = std::make_unique<TestWork>(&log_, "heavy" + std::to_string(i), "heavy", "", 10);
    heavy->takes = absl::Milliseconds(30);
    ASSERT_TRUE(Submit(std::move(heavy)).ok());
  }
  for (int i = 0; i < 10; ++i) Add("light" + std::to_string(i), "light", "");
  Finish();
  std::vector<std::string> order;
  order.reserve(log_.batches.size());
  for (const auto& b : log_.batches) order.push_back(b.front());
  const std::vector<std::string> want = {"gate",   "heavy0", "light0", "light1", "light2",
                                         "light3", "light4", "light5", "light6", "light7",
                                         "light8", "light9", "heavy1", "heavy2"};
  EXPECT_EQ(order, want);
}

// A long item yields between its units: a lighter tenant's calls run inside it instead of after
// all of it, and its own tenant's next item does not; work run by a yield yields in turn to
// tenants not running on this thread.
TEST_F(SchedulerTest, ALongItemLetsALighterTenantRunBetweenItsUnits) {
  SchedulerOptions options = Options(100);
  options.yield_after = absl::Milliseconds(5);
  options.yield_scope = [] {
    ++live_scopes;
    return std::shared_ptr<void>(new int(0), [](int* p) {
      delete p;
      --live_scopes;
    });
  };
  Start(options);
  auto heavy = std::make_unique<TestWork>(&log_, "heavy", "heavy", "", 10);
  heavy->units = 20;
  heavy->unit = absl::Milliseconds(10);
  ASSERT_TRUE(Submit(std::move(heavy)).ok());
  Add("heavy_next", "heavy", "");
  gate_.Notify();
  absl::SleepFor(absl::Milliseconds(30));  // heavy is running
  const absl::Time sent = absl::Now();
  auto light = std::make_unique<TestWork>(&log_, "light", "light", "", 10);
  light->units = 3;  // its first yield finds "other" queued and runs it
  light->unit = absl::Milliseconds(10);
  ASSERT_TRUE(Submit(std::move(light)).ok());
  Add("other", "other", "");
  scheduler_->Drain();
  std::vector<std::string> order;
  order.reserve(log_.batches.size());
  for (const auto& b : log_.batches) order.push_back(b.front());
  // Each is logged when its Run ends: "other" inside "light" inside "heavy"; heavy_next after.
  const std::vector<std::string> want = {"gate", "other", "light", "heavy", "heavy_next"};
  EXPECT_EQ(order, want);
  EXPECT_LT(log_.ran[2] - sent, absl::Milliseconds(100));  // not heavy's 200 ms
  EXPECT_EQ(log_.deepest, 3);
  // The yield scope is around each yielded batch only: none for batches the loop runs.
  const std::map<std::string, int> scopes = {
      {"gate", 0}, {"heavy", 0}, {"light", 1}, {"other", 2}, {"heavy_next", 0}};
  EXPECT_EQ(log_.scopes_seen, scopes);
  EXPECT_EQ(live_scopes.load(), 0);
}

// Yields nest at most 4 batches deep on one thread, whatever is queued.
TEST_F(SchedulerTest, YieldsNestAtMostFourDeep) {
  SchedulerOptions options = Options(100);
  options.yield_after = absl::Milliseconds(5);
  Start(options);
  auto heavy = std::make_unique<TestWork>(&log_, "heavy", "heavy", "", 10);
  heavy->units = 20;
  heavy->unit = absl::Milliseconds(10);
  ASSERT_TRUE(Submit(std::move(heavy)).ok());
  gate_.Notify();
  absl::SleepFor(absl::Milliseconds(30));
  for (const char* t : {"a", "b", "c", "d", "e", "f"}) {
    auto w = std::make_unique<TestWork>(&log_, t, t, "", 10);
    w->units = 3;
    w->unit = absl::Milliseconds(10);
    ASSERT_TRUE(Submit(std::move(w)).ok());
  }
  scheduler_->Drain();
  EXPECT_EQ(log_.batches.size(), 8u);  // the gate, heavy and all six
  EXPECT_EQ(log_.deepest, 4);
  EXPECT_EQ(log_.batches.back(), (std::vector<std::string>{"heavy"}));  // all ran inside it
}

// A batch of many tenants' items counts as the head's share of its time: light traffic batched
// together does not yield to more light traffic.
TEST_F(SchedulerTest, ABatchOfEqualTenantsDoesNotYield) {
  SchedulerOptions options = Options(100);
  options.yield_after = absl::Milliseconds(5);
  Start(options);
  for (const char* t : {"a", "b", "c", "d", "e", "f", "g", "h"}) {
    auto w = std::make_unique<TestWork>(&log_, t, t, "k", 10);
    w->units = 4;
    w->unit = absl::Milliseconds(5);  // only the head's Run works; it takes 20 ms
    ASSERT_TRUE(Submit(std::move(w)).ok());
  }
  gate_.Notify();
  absl::SleepFor(absl::Milliseconds(8));  // the batch of 8 is running
  Add("late", "late", "k");
  scheduler_->Drain();
  ASSERT_EQ(log_.batches.size(), 3u);
  EXPECT_EQ(log_.batches[1].size(), 8u);
  EXPECT_EQ(log_.batches[2], (std::vector<std::string>{"late"}));  // after the batch, not in it
  EXPECT_EQ(log_.deepest, 1);
}

TEST_F(SchedulerTest, RefusesWorkWhenTheQueueIsFull) {
  Start(Options(2));
  Add("a", "t", "");
  Add("b", "t", "");
  const absl::Status full = Submit(std::make_unique<TestWork>(&log_, "c", "t", "", 1));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("limit is 2"), absl::string_view::npos) << full;
  Finish();
  EXPECT_EQ(log_.batches.size(), 3u);
}

TEST_F(SchedulerTest, RejectsExpiredAndCancelledWorkInsteadOfRunningIt) {
  Start(Options(10));
  auto late = std::make_unique<TestWork>(&log_, "late", "t", "", 1);
  late->deadline = absl::Now() + absl::Milliseconds(1);
  ASSERT_TRUE(Submit(std::move(late)).ok());
  auto cancelled = std::make_unique<TestWork>(&log_, "gone", "t", "", 1);
  auto flag = std::make_shared<Cancellation>();
  cancelled->cancellation = flag;
  ASSERT_TRUE(Submit(std::move(cancelled)).ok());
  flag->Cancel();
  absl::SleepFor(absl::Milliseconds(5));
  Finish();
  ASSERT_EQ(log_.batches.size(), 1u);  // only the gate ran
  ASSERT_EQ(log_.rejected.size(), 2u);
  EXPECT_EQ(log_.rejected[0].second, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(log_.rejected[1].second, absl::StatusCode::kCancelled);
}

TEST_F(SchedulerTest, DrainRunsQueuedWorkThenRefusesNewWork) {
  Start(Options(10));
  Add("queued", "t", "");
  Finish();
  EXPECT_EQ(log_.batches.back(), (std::vector<std::string>{"queued"}));
  std::unique_ptr<Work> rejected;
  const absl::Status s =
      scheduler_->Submit(std::make_unique<TestWork>(&log_, "late", "t", "", 1), &rejected);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(rejected, nullptr);
}

TEST_F(SchedulerTest, CloseRejectsQueuedWorkAtOnceAndLetsTheRunningBatchFinish) {
  Start(Options(10));
  Add("q1", "t", "");
  Add("q2", "u", "");
  absl::Notification closed;
  std::thread closer([&] {
    scheduler_->Close(absl::UnavailableError("unloading"));
    closed.Notify();
  });
  absl::SleepFor(absl::Milliseconds(50));
  {
    absl::MutexLock lock(&log_.mu);
    EXPECT_EQ(log_.rejected.size(), 2u);  // before the running gate finished
  }
  EXPECT_FALSE(closed.HasBeenNotified());  // it waits for the running batch
  EXPECT_EQ(scheduler_->depth(), 0);
  gate_.Notify();
  closed.WaitForNotification();
  closer.join();
  ASSERT_EQ(log_.batches.size(), 1u);  // only the gate ran
  EXPECT_EQ(log_.rejected[0].second, absl::StatusCode::kUnavailable);
  std::unique_ptr<Work> rejected;
  EXPECT_EQ(
      scheduler_->Submit(std::make_unique<TestWork>(&log_, "late", "t", "", 1), &rejected).code(),
      absl::StatusCode::kUnavailable);
  scheduler_->Drain();  // a second stop is harmless
}

}  // namespace
}  // namespace lensd
