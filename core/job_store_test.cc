// The job store: records round-trip, state changes stamp their times, a process killed with
// SIGKILL right after a write loses nothing, running jobs go back to the queue on recovery, and
// files that are not lensd job databases (or are newer) are refused.
#include "core/job_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {

using ::testing::HasSubstr;

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lensd-jobs-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "jobs.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static JobRecord Job(const std::string& id, const std::string& tenant, double created) {
    JobRecord j;
    j.id = id;
    j.tenant = tenant;
    j.kind = "train";
    j.model = "kjv-gpt2";
    j.device = "cpu";
    j.spec = R"({"num_steps": 10})";
    j.num_steps = 10;
    j.created = created;
    return j;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(JobStoreTest, RecordsRoundTripAndStateChangesStampTimes) {
  auto store = JobStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Insert(Job("a", "alice", 1.0)).ok());
  EXPECT_EQ((*store)->Insert(Job("a", "bob", 2.0)).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*store)->SetState("a", JobState::kRunning, "").ok());
  ASSERT_TRUE((*store)->SetProgress("a", 3, R"({"loss": [1.5]})").ok());
  ASSERT_TRUE((*store)->SetCheckpoint("a", 4, "/ckpt/4").ok());
  ASSERT_TRUE((*store)->SetResult("a", R"({"lens": "x"})").ok());
  ASSERT_TRUE((*store)->SetState("a", JobState::kFailed, "disk full").ok());
  auto a = (*store)->Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->tenant, "alice");
  EXPECT_EQ(a->spec, R"({"num_steps": 10})");
  EXPECT_EQ(a->state, JobState::kFailed);
  EXPECT_EQ(a->reason, "disk full");
  EXPECT_EQ(a->step, 4);
  EXPECT_EQ(a->progress, R"({"loss": [1.5]})");
  EXPECT_EQ(a->checkpoint, "/ckpt/4");
  EXPECT_EQ(a->result, R"({"lens": "x"})");
  EXPECT_GT(a->started, 0);
  EXPECT_GE(a->finished, a->started);
  EXPECT_EQ((*store)->Get("zzz").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->SetState("zzz", JobState::kRunning, "").code(), absl::StatusCode::kNotFound);
}

TEST_F(JobStoreTest, ListsNewestFirstByTenantAndState) {
  auto store = JobStore::Open(path_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Insert(Job("a", "alice", 1.0)).ok());
  ASSERT_TRUE((*store)->Insert(Job("b", "bob", 2.0)).ok());
  ASSERT_TRUE((*store)->Insert(Job("c", "alice", 3.0)).ok());
  ASSERT_TRUE((*store)->SetState("c", JobState::kSucceeded, "").ok());
  auto all = (*store)->List({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "c");
  auto alice = (*store)->List({"alice", std::nullopt, 100});
  ASSERT_EQ(alice->size(), 2u);
  auto queued = (*store)->List({"alice", JobState::kQueued, 100});
  ASSERT_EQ(queued->size(), 1u);
  EXPECT_EQ((*queued)[0].id, "a");
  EXPECT_EQ((*store)->List({"", std::nullopt, 1})->size(), 1u);
}

TEST_F(JobStoreTest, AWriteSurvivesSigkillAndRunningJobsRequeue) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto store = JobStore::Open(path_);
    if (!store.ok() || !(*store)->Insert(Job("a", "alice", 1.0)).ok() ||
        !(*store)->SetState("a", JobState::kRunning, "").ok() ||
        !(*store)->SetCheckpoint("a", 7, "/ckpt/7").ok() ||
        !(*store)->Insert(Job("b", "bob", 2.0)).ok()) {
      _exit(1);
    }
    raise(SIGKILL);  // no destructor, no close: as a crash
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto store = JobStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  auto a = (*store)->Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->state, JobState::kRunning);
  EXPECT_EQ(a->checkpoint, "/ckpt/7");
  auto unfinished = (*store)->Recover();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_EQ(*unfinished, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*store)->Get("a")->state, JobState::kQueued);
  EXPECT_EQ((*store)->Get("a")->step, 7);
}

TEST_F(JobStoreTest, RefusesFilesThatAreNotItsDatabase) {
  std::ofstream(path_) << "this is not a database, but it is long enough to have a header......"
                          "................................................................";
  absl::Status s = JobStore::Open(path_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr(path_));

  std::filesystem::remove(path_);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  s = JobStore::Open(path_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("schema version 99 is newer"));
  EXPECT_EQ(JobStore::Open((dir_ / "missing" / "jobs.db").string()).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace lensd
