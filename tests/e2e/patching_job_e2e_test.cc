// Activation patching as a job through the real server: a long sweep reports its patched runs as
// the job's steps, stops within a second of CancelJob, and after a kill -9 mid-sweep starts over
// on restart and ends with the grids an uninterrupted ActivationPatching call gives (the grids
// themselves are held to TransformerLens by patching_parity_test and the Python client's tests).
#include <signal.h>

#include <chrono>
#include <random>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lensd/v1/lens.grpc.pb.h"
#include "tests/e2e/training_fixture.h"

namespace lensd::e2e {
namespace {

using ::testing::HasSubstr;

class PatchingJobTest : public TrainingTest {
 protected:
  // Heads' z by position over 96 tokens: 6 layers x 4 heads x 96 positions = 2,304 patched
  // runs in 42-row passes, seconds of work on a CPU.
  static v1::ActivationPatchingRequest Sweep() {
    v1::ActivationPatchingRequest r;
    std::mt19937 rng(11);
    for (int i = 0; i < 96; ++i) {
      const int64_t id = static_cast<int64_t>(rng() % 4096);
      r.mutable_clean()->mutable_tokens()->add_ids(id);
      r.mutable_corrupted()->mutable_tokens()->add_ids(i == 40 ? (id + 1) % 4096 : id);
    }
    r.add_sweeps()->set_site(v1::PATCHING_SITE_Z);
    return r;
  }
  static v1::SubmitJobRequest PatchJob() {
    v1::SubmitJobRequest r;
    r.set_model("kjv-gpt2");
    *r.mutable_activation_patching() = Sweep();
    return r;
  }
  v1::Job Finished(const std::string& id) {
    return WaitFor(id, [](const v1::Job& j) { return j.state() >= v1::JOB_STATE_SUCCEEDED; });
  }
};

TEST_F(PatchingJobTest, CancelStopsARunningSweepWithinASecond) {
  StartServer();
  v1::Job job;
  ASSERT_TRUE(Submit(PatchJob(), &job).ok());
  EXPECT_EQ(job.kind(), "patch");
  EXPECT_EQ(job.num_steps(), 2304);
  WaitFor(job.id(), [](const v1::Job& j) { return j.step() > 0; });
  v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  v1::Job after;
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_TRUE(training()->CancelJob(Context(server_->admin_token()).get(), cancel, &after).ok());
  const v1::Job done = Finished(job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(1));
  EXPECT_LT(done.step(), 2304);
  EXPECT_TRUE(done.result_json().empty());
}

TEST_F(PatchingJobTest, KillNineMidSweepStartsOverToTheGridsOfTheCall) {
  StartServer();
  v1::Job job;
  ASSERT_TRUE(Submit(PatchJob(), &job).ok());
  WaitFor(job.id(), [](const v1::Job& j) { return j.step() > 0; });
  kill(server_->pid(), SIGKILL);
  server_->Stop();
  server_.reset();
  StartServer();
  const v1::Job done = Finished(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.reason();
  EXPECT_EQ(done.step(), 2304);
  v1::ActivationPatchingResult from_job;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(done.result_json(), &from_job).ok());

  v1::ActivationPatchingRequest call = Sweep();
  call.set_model("kjv-gpt2");
  auto context = Context(server_->admin_token());
  auto reader = v1::Lens::NewStub(server_->channel())->ActivationPatching(context.get(), call);
  v1::ActivationPatchingResponse message;
  v1::ActivationPatchingResult streamed;
  while (reader->Read(&message)) {
    if (message.has_result()) streamed = message.result();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(from_job.patched_runs(), 2304);
  EXPECT_EQ(from_job.patched_runs(), streamed.patched_runs());
  ASSERT_EQ(from_job.grids_size(), 1);
  ASSERT_EQ(from_job.grids(0).metric_size(), streamed.grids(0).metric_size());
  for (int i = 0; i < streamed.grids(0).metric_size(); ++i) {
    ASSERT_NEAR(from_job.grids(0).metric(i), streamed.grids(0).metric(i), 1e-6) << "cell " << i;
  }
}

TEST_F(PatchingJobTest, BadSweepsAndRolesAreRefusedAtSubmission) {
  StartServer();
  v1::Job job;
  v1::SubmitJobRequest r = PatchJob();
  r.mutable_activation_patching()->mutable_corrupted()->mutable_tokens()->add_ids(1);
  grpc::Status s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("activation_patching.corrupted: 97 tokens"));
  r = PatchJob();
  r.mutable_activation_patching()->set_model("other");
  s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("activation_patching.model"));
  r = PatchJob();
  r.mutable_activation_patching()->mutable_clean()->mutable_tokens()->set_ids(0, 5000);
  s = Submit(r, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("activation_patching.clean"));
  EXPECT_EQ(Submit(PatchJob(), &job, server_->read_token()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  server_.reset();
  StartServer({"--max_patching_cells=1000"});
  s = Submit(PatchJob(), &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("2304 patched runs"));
}

}  // namespace
}  // namespace lensd::e2e
