// The job stores, the same suite on each (the SQLite file and, where $LENSD_TEST_POSTGRES names a
// server, PostgreSQL): records round-trip, state changes stamp their times, claims follow
// devices, models and tenants, a lease that runs out lets another server take the job over and
// locks the old holder out, cancel marks reach the holder, changes are numbered. SQLite alone: a
// process killed right after a write loses nothing, and files that are not job databases (or are
// newer) are refused. PostgreSQL alone: two servers claiming at once never take one job twice.
#include "core/jobs/job_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd {
namespace {

using ::testing::HasSubstr;

JobRecord Job(const std::string& id, const std::string& tenant, double created,
              const std::string& device = "cpu", const std::string& model = "kjv-gpt2") {
  JobRecord j;
  j.id = id;
  j.tenant = tenant;
  j.kind = "train";
  j.model = model;
  j.device = device;
  j.spec = R"({"num_steps": 10})";
  j.num_steps = 10;
  j.created = created;
  return j;
}

ClaimOptions By(const std::string& owner, absl::Duration lease = absl::Seconds(30),
                std::vector<std::string> devices = {"cpu"}) {
  ClaimOptions o;
  o.owner = owner;
  o.devices = std::move(devices);
  o.lease = lease;
  return o;
}

// The claimed job ("" as its id when none was claimable or the claim failed).
JobRecord Claimed(JobStore& store, const ClaimOptions& o) {
  absl::StatusOr<std::optional<JobRecord>> claimed = store.Claim(o);
  EXPECT_TRUE(claimed.ok()) << claimed.status();
  return claimed.ok() ? claimed->value_or(JobRecord{}) : JobRecord{};
}

class JobStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lensd-jobs-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    if (GetParam() == "postgres") {
      const char* uri = std::getenv("LENSD_TEST_POSTGRES");
      if (uri == nullptr || *uri == 0) {
        GTEST_SKIP() << "LENSD_TEST_POSTGRES names no PostgreSQL server (the test command's "
                        "postgres fixture sets it)";
      }
      where_ = uri;
      auto store = JobStore::Open(where_);
      ASSERT_TRUE(store.ok()) << store.status();
      ASSERT_TRUE((*store)->shared());
      Truncate();
    } else {
      where_ = (dir_ / "jobs.db").string();
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Each test starts from an empty PostgreSQL table.
  void Truncate() {
    const std::string command =
        absl::StrCat("psql -q '", where_, "' -c 'TRUNCATE lensd_jobs' >/dev/null");
    ASSERT_EQ(std::system(command.c_str()), 0);
  }
  std::unique_ptr<JobStore> Open() {
    auto store = JobStore::Open(where_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::filesystem::path dir_;
  std::string where_;
};

TEST_P(JobStoreTest, RecordsRoundTripAndTheHoldersWritesStampTimes) {
  auto store = Open();
  ASSERT_TRUE(store->Insert(Job("a", "alice", 1.0)).ok());
  EXPECT_EQ(store->Insert(Job("a", "bob", 2.0)).code(), absl::StatusCode::kAlreadyExists);
  const JobRecord claimed = Claimed(*store, By("s1"));
  EXPECT_EQ(claimed.id, "a");
  EXPECT_EQ(claimed.state, JobState::kRunning);
  ASSERT_TRUE(store->SetProgress("a", "s1", 3, R"({"loss": [1.5]})").ok());
  ASSERT_TRUE(store->SetCheckpoint("a", "s1", 4, "/ckpt/4").ok());
  ASSERT_TRUE(store->Finish("a", "s1", JobState::kFailed, "disk full", R"({"lens": "x"})").ok());
  auto a = store->Get("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->tenant, "alice");
  EXPECT_EQ(a->spec, R"({"num_steps": 10})");
  EXPECT_EQ(a->state, JobState::kFailed);
  EXPECT_EQ(a->reason, "disk full");
  EXPECT_EQ(a->step, 4);
  EXPECT_EQ(a->progress, R"({"loss": [1.5]})");
  EXPECT_EQ(a->checkpoint, "/ckpt/4");
  EXPECT_EQ(a->result, R"({"lens": "x"})");
  EXPECT_EQ(a->owner, "s1");
  EXPECT_DOUBLE_EQ(a->created, 1.0);
  EXPECT_GT(a->started, 0);
  EXPECT_GE(a->finished, a->started);
  EXPECT_EQ(store->Get("zzz").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->SetState("zzz", JobState::kRunning, "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->SetProgress("zzz", "s1", 1, "").code(), absl::StatusCode::kNotFound);
  // A finished job takes no more writes from its old holder.
  EXPECT_EQ(store->SetProgress("a", "s1", 5, "").code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobStoreTest, ListsNewestFirstByTenantAndStateAndCountsStates) {
  auto store = Open();
  ASSERT_TRUE(store->Insert(Job("a", "alice", 1.0)).ok());
  ASSERT_TRUE(store->Insert(Job("b", "bob", 2.0)).ok());
  ASSERT_TRUE(store->Insert(Job("c", "alice", 3.0)).ok());
  ASSERT_TRUE(store->SetState("c", JobState::kSucceeded, "").ok());
  auto all = store->List({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "c");
  EXPECT_EQ(store->List({"alice", std::nullopt, 100})->size(), 2u);
  auto queued = store->List({"alice", JobState::kQueued, 100});
  ASSERT_EQ(queued->size(), 1u);
  EXPECT_EQ((*queued)[0].id, "a");
  EXPECT_EQ(store->List({"", std::nullopt, 1})->size(), 1u);
  auto counts = store->CountByState();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts,
            (std::map<JobState, int64_t>{{JobState::kQueued, 2}, {JobState::kSucceeded, 1}}));
}

TEST_P(JobStoreTest, ClaimsFollowDevicesModelsAndTheTenantWithFewestRunning) {
  auto store = Open();
  ASSERT_TRUE(store->Insert(Job("gpu", "alice", 1.0, "cuda:0")).ok());
  ASSERT_TRUE(store->Insert(Job("other-model", "alice", 2.0, "cpu", "llama")).ok());
  ASSERT_TRUE(store->Insert(Job("a1", "alice", 3.0)).ok());
  ASSERT_TRUE(store->Insert(Job("a2", "alice", 4.0)).ok());
  ASSERT_TRUE(store->Insert(Job("b1", "bob", 5.0)).ok());
  ClaimOptions o = By("s1");
  o.models = {"kjv-gpt2"};
  // Oldest first among tenants with nothing running: alice's a1.
  EXPECT_EQ(Claimed(*store, o).id, "a1");
  // alice now has one running: bob's job goes before her older a2.
  EXPECT_EQ(Claimed(*store, o).id, "b1");
  EXPECT_EQ(Claimed(*store, o).id, "a2");
  EXPECT_EQ(Claimed(*store, o).id, "");  // the rest need cuda:0 or another model
  o.devices = {"cuda:0"};
  EXPECT_EQ(Claimed(*store, o).id, "gpu");
  o.devices = {"cpu"};
  o.models.clear();  // any model
  EXPECT_EQ(Claimed(*store, o).id, "other-model");
  o.devices.clear();
  EXPECT_EQ(Claimed(*store, o).id, "");
}

TEST_P(JobStoreTest, ALeaseThatRunsOutLetsAnotherServerTakeTheJobOver) {
  auto store = Open();
  ASSERT_TRUE(store->Insert(Job("a", "alice", 1.0)).ok());
  ASSERT_EQ(Claimed(*store, By("s1", absl::Milliseconds(300))).id, "a");
  // While the lease holds, nobody else gets the job.
  EXPECT_EQ(Claimed(*store, By("s2")).id, "");
  auto held = store->Renew("s1", absl::Milliseconds(300));
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ(held->size(), 1u);
  EXPECT_EQ((*held)[0].id, "a");
  ASSERT_TRUE(store->SetCheckpoint("a", "s1", 6, "/ckpt/6").ok());
  absl::SleepFor(absl::Milliseconds(600));  // s1 stalls past its lease
  const JobRecord taken = Claimed(*store, By("s2"));
  ASSERT_EQ(taken.id, "a");
  EXPECT_EQ(taken.owner, "s2");
  EXPECT_EQ(taken.checkpoint, "/ckpt/6");  // resumes where s1 left it
  const absl::Status late = store->SetProgress("a", "s1", 7, "");
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.message(), HasSubstr("held by s2"));
  EXPECT_EQ(store->Finish("a", "s1", JobState::kSucceeded, "", "").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store->Renew("s1", absl::Seconds(30))->empty());
  ASSERT_TRUE(store->Finish("a", "s2", JobState::kSucceeded, "", "{}").ok());
  EXPECT_EQ(store->Get("a")->state, JobState::kSucceeded);
}

TEST_P(JobStoreTest, CancelMarksReachTheHolderAndQueuedJobsCancelAtOnce) {
  auto store = Open();
  ASSERT_TRUE(store->Insert(Job("run", "alice", 1.0)).ok());
  ASSERT_TRUE(store->Insert(Job("wait", "alice", 2.0)).ok());
  ASSERT_EQ(Claimed(*store, By("s1")).id, "run");
  ASSERT_TRUE(store->RequestCancel("run").ok());
  EXPECT_FALSE(*store->CancelIfQueued("run", "before it ran"));
  auto held = store->Renew("s1", absl::Seconds(30));
  ASSERT_EQ(held->size(), 1u);
  EXPECT_TRUE((*held)[0].cancel_requested);
  EXPECT_TRUE(*store->CancelIfQueued("wait", "cancelled before it ran"));
  auto wait = store->Get("wait");
  EXPECT_EQ(wait->state, JobState::kCancelled);
  EXPECT_EQ(wait->reason, "cancelled before it ran");
  EXPECT_GT(wait->finished, 0);
  EXPECT_EQ(store->RequestCancel("zzz").code(), absl::StatusCode::kNotFound);
}

TEST_P(JobStoreTest, ChangesAreNumberedInOrder) {
  auto store = Open();
  const int64_t before = *store->LastChange();
  ASSERT_TRUE(store->Insert(Job("a", "alice", 1.0)).ok());
  ASSERT_TRUE(store->Insert(Job("b", "alice", 2.0)).ok());
  ASSERT_EQ(Claimed(*store, By("s1")).id, "a");
  ASSERT_TRUE(store->SetProgress("a", "s1", 1, "{}").ok());
  auto changes = store->ChangedSince(before);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 2u);  // each job once, at its latest change
  EXPECT_EQ((*changes)[0].id, "b");
  EXPECT_EQ((*changes)[1].id, "a");
  EXPECT_LT((*changes)[0].change, (*changes)[1].change);
  EXPECT_EQ((*changes)[1].change, *store->LastChange());
  EXPECT_TRUE(store->ChangedSince(*store->LastChange())->empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, JobStoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// SQLite alone: the file is the server's.
class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("lensd-sqlite-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "jobs.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(SqliteJobStoreTest, AWriteSurvivesSigkillAndRunningJobsRequeue) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto store = JobStore::Open(path_);
    if (!store.ok() || !(*store)->Insert(Job("a", "alice", 1.0)).ok() ||
        !(*store)->Claim(By("s1")).ok() || !(*store)->SetCheckpoint("a", "s1", 7, "/ckpt/7").ok() ||
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
  // Whoever held it: only this server uses the file.
  auto unfinished = (*store)->Recover("a-new-name");
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_EQ(*unfinished, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*store)->Get("a")->state, JobState::kQueued);
  EXPECT_EQ((*store)->Get("a")->step, 7);
}

TEST_F(SqliteJobStoreTest, AVersionOneFileGainsLeases) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT "
                         "NOT NULL, model TEXT NOT NULL, device TEXT NOT NULL, spec TEXT NOT NULL, "
                         "state INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '', step INTEGER "
                         "NOT NULL DEFAULT 0, num_steps INTEGER NOT NULL DEFAULT 0, progress TEXT "
                         "NOT NULL DEFAULT '', checkpoint TEXT NOT NULL DEFAULT '', result TEXT "
                         "NOT NULL DEFAULT '', cancel_requested INTEGER NOT NULL DEFAULT 0, "
                         "created REAL NOT NULL, started REAL NOT NULL DEFAULT 0, finished REAL "
                         "NOT NULL DEFAULT 0); INSERT INTO jobs (id, tenant, kind, model, device, "
                         "spec, state, created) VALUES ('old', 'alice', 'train', 'm', 'cpu', "
                         "'{}', 0, 1.0); PRAGMA user_version=1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = JobStore::Open(path_);
  ASSERT_TRUE(store.ok()) << store.status();
  const JobRecord claimed = Claimed(**store, By("s1"));
  EXPECT_EQ(claimed.id, "old");
  EXPECT_EQ(claimed.owner, "s1");
}

TEST_F(SqliteJobStoreTest, RefusesFilesThatAreNotItsDatabase) {
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

TEST(PostgresJobStoreTest, AnUnreachableServerIsUnavailableNamingIt) {
  const absl::Status s =
      JobStore::Open("postgresql:///lensd?host=/nonexistent-lensd-socket&port=1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("PostgreSQL database lensd"));
  EXPECT_THAT(s.message(), HasSubstr("/nonexistent-lensd-socket"));
}

TEST(PostgresJobStoreTest, TwoServersClaimingAtOnceNeverTakeOneJobTwice) {
  const char* uri = std::getenv("LENSD_TEST_POSTGRES");
  if (uri == nullptr || *uri == 0) GTEST_SKIP() << "LENSD_TEST_POSTGRES names no server";
  auto first = JobStore::Open(uri);
  auto second = JobStore::Open(uri);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(std::system(absl::StrCat("psql -q '", uri, "' -c 'TRUNCATE lensd_jobs'").c_str()), 0);
  constexpr int kJobs = 60;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_TRUE((*first)->Insert(Job(absl::StrCat("j", i), "t" + std::to_string(i % 3), i)).ok());
  }
  std::vector<std::string> taken[2];
  std::vector<std::thread> servers;
  servers.reserve(2);
  JobStore* stores[2] = {first->get(), second->get()};
  for (int s = 0; s < 2; ++s) {
    servers.emplace_back([&, s] {
      while (true) {
        const JobRecord job = Claimed(*stores[s], By(absl::StrCat("s", s)));
        if (job.id.empty()) return;
        taken[s].push_back(job.id);
      }
    });
  }
  for (std::thread& t : servers) t.join();
  std::set<std::string> all(taken[0].begin(), taken[0].end());
  all.insert(taken[1].begin(), taken[1].end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(taken[0].size() + taken[1].size(), static_cast<size_t>(kJobs));
  EXPECT_GT(taken[0].size(), 0u);
  EXPECT_GT(taken[1].size(), 0u);
}

}  // namespace
}  // namespace lensd
