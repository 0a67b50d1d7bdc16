// The job manager with a small runner that counts steps (sleeping between them), checkpoints
// each step to a file and resumes from it: jobs succeed or fail with their reason, cancellation
// reaches queued and running jobs within a second, tenants are capped and served round robin,
// one job runs per device at a time, and a shutdown requeues a running job that a new manager
// resumes from its checkpoint; a cancel through another manager on the same store reaches the
// running job at its server's next heartbeat.
#include "core/jobs/job_manager.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lensd {
namespace {

using ::testing::HasSubstr;

int ThreadNice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

// spec: {"steps": N, "sleep_ms": M, "fail_at": K (optional)}; result {"steps_run": ...}.
class CountingRunner : public JobRunner {
 public:
  absl::StatusOr<std::string> Run(const JobRecord& job, JobContext& context) override {
    const nlohmann::json spec = nlohmann::json::parse(job.spec);
    int64_t step = 0;
    if (!job.checkpoint.empty()) std::ifstream(job.checkpoint) >> step;
    resumed_from = step;
    nice = ThreadNice();
    std::thread([this] { started_thread_nice = ThreadNice(); }).join();
    const int now = ++concurrent;
    max_concurrent = std::max(max_concurrent.load(), now);
    {
      absl::MutexLock lock(&mu);
      order.push_back(job.id);
    }
    int64_t run = 0;
    absl::Status s;
    for (; step < spec["steps"].get<int64_t>(); ++step, ++run) {
      s = context.KeepGoing();
      if (!s.ok()) break;
      if (spec.contains("fail_at") && step == spec["fail_at"].get<int64_t>()) {
        s = absl::InvalidArgumentError("data.jsonl:3: not valid JSON");
        break;
      }
      absl::SleepFor(absl::Milliseconds(spec.value("sleep_ms", 1)));
      auto dir = context.CheckpointDir();
      if (!dir.ok()) return dir.status();
      const std::string path = *dir + "/step";
      std::ofstream(path) << step + 1;
      (void)context.Checkpointed(step + 1, path);
      (void)context.Progress(step + 1, nlohmann::json{{"step", step + 1}}.dump());
    }
    --concurrent;
    if (!s.ok()) return s;
    return nlohmann::json{{"steps_run", run}}.dump();
  }

  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};
  std::atomic<int64_t> resumed_from{-1};
  std::atomic<int> nice{-100};                 // of the thread running the last job
  std::atomic<int> started_thread_nice{-100};  // of a thread that job started
  absl::Mutex mu;
  std::vector<std::string> order;
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lensd-jm-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = JobStore::Open((dir_ / "jobs.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    manager_.reset();
    std::filesystem::remove_all(dir_);
  }
  void StartManager(int per_tenant = 8, int nice = 0) {
    JobManagerOptions o;
    o.max_unfinished_per_tenant = per_tenant;
    o.worker_nice = nice;
    o.checkpoint_root = (dir_ / "checkpoints").string();
    manager_ = std::make_unique<JobManager>(store_.get(), &runner_, o);
    ASSERT_TRUE(manager_->Start().ok());
  }
  static JobRecord Job(const std::string& id, const std::string& tenant, int steps,
                       int sleep_ms = 1, int fail_at = -1) {
    JobRecord j;
    j.id = id;
    j.tenant = tenant;
    j.kind = "train";
    j.model = "m";
    j.device = "cpu";
    nlohmann::json spec = {{"steps", steps}, {"sleep_ms", sleep_ms}};
    if (fail_at >= 0) spec["fail_at"] = fail_at;
    j.spec = spec.dump();
    j.num_steps = steps;
    return j;
  }
  JobState WaitUntilFinal(const std::string& id, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    int64_t seen = 0;
    while (absl::Now() < deadline) {
      auto job = manager_->Get(id);
      if (job.ok() && IsFinal(job->state)) return job->state;
      seen = manager_->WaitForChange(id, seen, deadline, nullptr);
    }
    return manager_->Get(id)->state;
  }

  std::filesystem::path dir_;
  std::unique_ptr<JobStore> store_;
  CountingRunner runner_;
  std::unique_ptr<JobManager> manager_;
};

TEST_F(JobManagerTest, JobsSucceedOrFailWithTheirReason) {
  StartManager();
  ASSERT_TRUE(manager_->Submit(Job("ok", "alice", 5)).ok());
  ASSERT_TRUE(manager_->Submit(Job("bad", "alice", 5, 1, 2)).ok());
  EXPECT_EQ(WaitUntilFinal("ok"), JobState::kSucceeded);
  EXPECT_EQ(WaitUntilFinal("bad"), JobState::kFailed);
  auto ok = manager_->Get("ok");
  EXPECT_EQ(ok->result, R"({"steps_run":5})");
  EXPECT_EQ(ok->step, 5);
  EXPECT_EQ(ok->progress, R"({"step":5})");
  EXPECT_EQ(manager_->Get("bad")->reason, "data.jsonl:3: not valid JSON");
  EXPECT_EQ(manager_->Cancel("ok", "alice", false).code(), absl::StatusCode::kFailedPrecondition);
}

// Jobs yield the CPU to serving: their threads, and the compute threads they start, run at the
// configured nice value; the rest of the process keeps its own.
TEST_F(JobManagerTest, JobsRunAtTheirNiceValueAndSoDoTheThreadsTheyStart) {
  const int ours = ThreadNice();
  StartManager(8, 7);
  ASSERT_TRUE(manager_->Submit(Job("low", "alice", 2)).ok());
  EXPECT_EQ(WaitUntilFinal("low"), JobState::kSucceeded);
  EXPECT_EQ(runner_.nice.load(), 7);
  EXPECT_EQ(runner_.started_thread_nice.load(), 7);
  EXPECT_EQ(ThreadNice(), ours);
}

TEST_F(JobManagerTest, CancelReachesQueuedAndRunningJobsWithinASecond) {
  StartManager();
  ASSERT_TRUE(manager_->Submit(Job("long", "alice", 100000, 5)).ok());
  ASSERT_TRUE(manager_->Submit(Job("waiting", "alice", 5)).ok());
  while (manager_->Get("long")->state != JobState::kRunning) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(manager_->Cancel("long", "bob", false).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager_->Cancel("waiting", "alice", false).ok());
  EXPECT_EQ(manager_->Get("waiting")->state, JobState::kCancelled);
  const absl::Time asked = absl::Now();
  ASSERT_TRUE(manager_->Cancel("long", "admin", true).ok());
  EXPECT_EQ(WaitUntilFinal("long"), JobState::kCancelled);
  EXPECT_LT(absl::Now() - asked, absl::Seconds(1));
}

TEST_F(JobManagerTest, TenantsAreCappedServedRoundRobinAndOneJobRunsPerDevice) {
  StartManager(3);
  ASSERT_TRUE(manager_->Submit(Job("a1", "alice", 20, 5)).ok());
  while (manager_->Get("a1")->state != JobState::kRunning) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(manager_->Submit(Job("a2", "alice", 2)).ok());
  ASSERT_TRUE(manager_->Submit(Job("a3", "alice", 2)).ok());
  const absl::Status capped = manager_->Submit(Job("a4", "alice", 2)).status();
  EXPECT_EQ(capped.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(capped.message()), HasSubstr("3 unfinished jobs"));
  ASSERT_TRUE(manager_->Submit(Job("b1", "bob", 2)).ok());
  for (const char* id : {"a1", "a2", "a3", "b1"})
    EXPECT_EQ(WaitUntilFinal(id), JobState::kSucceeded);
  EXPECT_EQ(runner_.max_concurrent, 1);
  absl::MutexLock lock(&runner_.mu);
  EXPECT_EQ(runner_.order, (std::vector<std::string>{"a1", "b1", "a2", "a3"}));
}

TEST_F(JobManagerTest, AShutdownRequeuesARunningJobThatResumesFromItsCheckpoint) {
  StartManager();
  ASSERT_TRUE(manager_->Submit(Job("j", "alice", 60, 10)).ok());
  while (manager_->Get("j")->step < 5) absl::SleepFor(absl::Milliseconds(5));
  manager_->Shutdown();
  auto stopped = store_->Get("j");
  EXPECT_EQ(stopped->state, JobState::kQueued);
  const int64_t checkpointed = stopped->step;
  EXPECT_GE(checkpointed, 5);
  StartManager();
  EXPECT_EQ(WaitUntilFinal("j"), JobState::kSucceeded);
  EXPECT_EQ(runner_.resumed_from, checkpointed);
  EXPECT_EQ(manager_->Get("j")->result, nlohmann::json({{"steps_run", 60 - checkpointed}}).dump());
}

TEST_F(JobManagerTest, ACancelThroughAnotherServerReachesTheRunningJob) {
  StartManager();
  CountingRunner other_runner;
  JobManagerOptions o;
  o.owner = "other";
  o.checkpoint_root = (dir_ / "checkpoints").string();
  o.devices = {"cuda:0"};  // runs nothing of the cpu jobs here
  JobManager other(store_.get(), &other_runner, o);
  ASSERT_TRUE(other.Start().ok());
  ASSERT_TRUE(manager_->Submit(Job("long", "alice", 100000, 5)).ok());
  while (manager_->Get("long")->state != JobState::kRunning) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(manager_->Get("long")->owner, "lensd");
  const absl::Time asked = absl::Now();
  ASSERT_TRUE(other.Cancel("long", "alice", false).ok());
  EXPECT_EQ(WaitUntilFinal("long"), JobState::kCancelled);
  EXPECT_LT(absl::Now() - asked, absl::Seconds(1));
  EXPECT_EQ(manager_->Get("long")->reason, "cancelled while running");
  other.Shutdown();
}

}  // namespace
}  // namespace lensd
