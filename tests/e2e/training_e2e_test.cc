// Training jobs through the real server: roles and bad fields refused by name; a job watched from
// queued to succeeded whose lens Decode uses at once; cancel within a second; an unwritable lens
// folder fails the job with its path and leaves no lens; and kill -9 of the server mid-job: the
// restarted server resumes from the last checkpoint and writes the same lens as an uninterrupted
// run with the same seed.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "lensd/v1/training.grpc.pb.h"
#include "tests/e2e/training_fixture.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;

TEST_F(TrainingTest, RolesAndBadFieldsAreRefusedByName) {
  StartServer();
  v1::Job job;
  EXPECT_EQ(Submit(Job("t", 5), &job, server_->read_token()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::SubmitJobRequest r = Job("t", 5);
  r.mutable_train_lens()->set_tokens_per_step(40);
  grpc::Status s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("tokens_per_step"));
  r = Job("t", 5);
  r.mutable_train_lens()->mutable_data()->set_path("../../etc/passwd");
  s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("outside the data root"));
  r = Job("../evil", 5);
  EXPECT_THAT(Submit(r, &job).error_message(), HasSubstr("lens_name"));
  r = Job("t", 5);
  r.set_model("slow-gpt2");
  EXPECT_EQ(Submit(r, &job).error_code(), grpc::StatusCode::NOT_FOUND);

  // Data that cannot fill the steps, and a malformed line, fail the job with the reason.
  ASSERT_TRUE(Submit(Job("too-long", 5000), &job).ok());
  v1::Job failed =
      WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.reason(), HasSubstr("cannot fill 5000 steps"));
  r = Job("bad-data", 5);
  r.mutable_train_lens()->mutable_data()->set_path("bad.jsonl");
  ASSERT_TRUE(Submit(r, &job).ok());
  failed = WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  EXPECT_THAT(failed.reason(), HasSubstr("bad.jsonl:2: \"text\" is not a string"));
}

TEST_F(TrainingTest, AWatchedJobSucceedsAndItsLensIsUsableAtOnce) {
  StartServer();
  v1::SubmitJobRequest r = Job("fresh", 12);
  r.mutable_train_lens()->mutable_data()->clear_path();
  std::string verses;
  for (int i = 0; i < 40; ++i) verses += "In the beginning God created the heaven and the earth. ";
  r.mutable_train_lens()->mutable_data()->mutable_texts()->add_texts(verses);
  r.mutable_train_lens()->set_seq_len(8);
  r.mutable_train_lens()->set_tokens_per_step(16);
  v1::Job job;
  ASSERT_TRUE(Submit(r, &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  v1::WatchJobRequest watch;
  watch.set_id(job.id());
  const auto context = Context(server_->read_token());  // another tenant: not visible
  auto hidden = training()->WatchJob(context.get(), watch);
  v1::Job update;
  while (hidden->Read(&update)) {
  }
  EXPECT_EQ(hidden->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  const auto admin = Context(server_->admin_token());
  auto reader = training()->WatchJob(admin.get(), watch);
  std::vector<int64_t> steps;
  while (reader->Read(&update)) steps.push_back(update.step());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(update.state(), v1::JOB_STATE_SUCCEEDED) << update.reason();
  EXPECT_EQ(update.step(), 12);
  EXPECT_EQ(update.layer_losses_size(), 6);
  EXPECT_GT(steps.size(), 2u);
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  EXPECT_THAT(update.result_json(), HasSubstr("\"lens\":\"fresh\""));

  v1::DecodeRequest decode;
  decode.set_model("kjv-gpt2");
  decode.set_lens("fresh");
  decode.mutable_input()->set_text("And God said");
  v1::DecodeResponse out;
  const grpc::Status s = v1::Lens::NewStub(server_->channel())
                             ->Decode(Context(server_->read_token()).get(), decode, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.lens(), "fresh");
  EXPECT_TRUE(fs::exists(dir_ / "repo" / "kjv-gpt2" / "lenses" / "fresh" / "params.pt"));
  // The scrape reads the job store at once (the dashboard's jobs by state).
  const std::string metrics = server_->Scrape();
  EXPECT_THAT(metrics, HasSubstr("lensd_jobs{state=\"succeeded\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("lensd_jobs{state=\"running\"} 0"));
}

// The server's thread count (/proc/<pid>/status).
int64_t Threads(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}

// WatchJob streams cost no thread each: 2,000 watches of a queued job add a handful of server
// threads, each sees the job's end, and the tenant's next watch past its bound is refused.
TEST_F(TrainingTest, TwoThousandWatchesShareOneThreadAndEachSeesTheEnd) {
  constexpr int kWatches = 2000;
  StartServer({"--max_watches_per_tenant=2000", "--max_concurrent_streams=4096"});
  v1::Job running;
  v1::Job queued;
  ASSERT_TRUE(Submit(Job("first", 1800), &running).ok());
  ASSERT_TRUE(Submit(Job("second", 1800), &queued).ok());  // waits for the first
  WaitFor(running.id(), [](const v1::Job& j) { return j.step() >= 1; });
  const int64_t before = Threads(server_->pid());
  struct Watch {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::Job>> reader;
  };
  std::vector<Watch> watches(kWatches);
  auto stub = training();
  v1::WatchJobRequest request;
  request.set_id(queued.id());
  v1::Job update;
  for (Watch& w : watches) {
    w.context = Context(server_->admin_token(), 300);
    w.reader = stub->WatchJob(w.context.get(), request);
    ASSERT_TRUE(w.reader->Read(&update));
    ASSERT_EQ(update.state(), v1::JOB_STATE_QUEUED);
  }
  const int64_t after = Threads(server_->pid());
  std::printf("%d open watches: server threads %lld -> %lld\n", kWatches,
              static_cast<long long>(before), static_cast<long long>(after));
  EXPECT_LT(after - before, 16);

  const auto extra_context = Context(server_->admin_token());
  auto extra = stub->WatchJob(extra_context.get(), request);
  EXPECT_FALSE(extra->Read(&update));
  const grpc::Status refused = extra->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("2000 watches open (the limit is 2000"));

  for (const v1::Job& job : {queued, running}) {
    v1::CancelJobRequest cancel;
    cancel.set_id(job.id());
    v1::Job out;
    ASSERT_TRUE(training()->CancelJob(Context(server_->admin_token()).get(), cancel, &out).ok());
  }
  int ended = 0;
  for (Watch& w : watches) {
    v1::Job last;
    while (w.reader->Read(&update)) last = update;
    ended += w.reader->Finish().ok() && last.state() == v1::JOB_STATE_CANCELLED;
  }
  EXPECT_EQ(ended, kWatches);
}

TEST_F(TrainingTest, CancelStopsARunningJobWithinASecond) {
  StartServer();
  v1::Job job;
  ASSERT_TRUE(Submit(Job("long", 1800), &job).ok());
  WaitFor(job.id(), [](const v1::Job& j) { return j.step() >= 2; });
  v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  v1::Job after;
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_TRUE(training()->CancelJob(Context(server_->admin_token()).get(), cancel, &after).ok());
  const v1::Job done =
      WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(1));
  EXPECT_LT(done.step(), 1800);
  EXPECT_FALSE(fs::exists(dir_ / "repo" / "kjv-gpt2" / "lenses" / "long"));
}

TEST_F(TrainingTest, AnUnwritableLensFolderFailsTheJobWithItsPathAndLeavesNoLens) {
  // The model's lenses folder is a plain file, which no user (root included) can write into.
  const fs::path lenses = dir_ / "repo" / "kjv-gpt2" / "lenses";
  std::ofstream(lenses) << "not a folder";
  StartServer();
  v1::Job job;
  ASSERT_TRUE(Submit(Job("nowhere", 6), &job).ok());
  const v1::Job done =
      WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(done.reason(), HasSubstr(lenses.string()));
  EXPECT_TRUE(fs::is_regular_file(lenses));
  EXPECT_EQ(ReadBytes(lenses.string()), "not a folder");
  // The server goes on: the same job succeeds once the folder can be written.
  fs::remove(lenses);
  ASSERT_TRUE(Submit(Job("somewhere", 6), &job).ok());
  EXPECT_EQ(WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; })
                .state(),
            v1::JOB_STATE_SUCCEEDED);
}

TEST_F(TrainingTest, KillNineMidJobResumesFromTheCheckpointToTheSameLens) {
  StartServer();
  v1::Job reference;
  ASSERT_TRUE(Submit(Job("uninterrupted", 60), &reference).ok());
  v1::Job job;
  ASSERT_TRUE(Submit(Job("interrupted", 60), &job).ok());
  WaitFor(job.id(), [](const v1::Job& j) { return j.step() >= 12; });
  kill(server_->pid(), SIGKILL);
  server_->Stop();
  server_.reset();
  StartServer();
  const v1::Job done =
      WaitFor(job.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.reason();
  EXPECT_EQ(
      WaitFor(reference.id(), [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; })
          .state(),
      v1::JOB_STATE_SUCCEEDED);
  // It resumed from a checkpoint, and its result counts the whole job (60 steps of 32 tokens),
  // not only the segment after the restart ...
  EXPECT_THAT(done.result_json(), HasSubstr("\"tokens\":1920"));
  EXPECT_THAT(done.result_json(), ::testing::Not(HasSubstr("\"resumed_from_step\":0")));
  // ... and wrote the same translators as the uninterrupted run.
  const fs::path lenses = dir_ / "repo" / "kjv-gpt2" / "lenses";
  EXPECT_EQ(ReadBytes((lenses / "interrupted" / "params.pt").string()),
            ReadBytes((lenses / "uninterrupted" / "params.pt").string()));
}

}  // namespace
}  // namespace lensd::e2e
