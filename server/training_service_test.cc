// The Training service in process, on a fake model whose training role steps through the run it
// is given (server/testing/): a train job goes from SubmitJob through the runner (pre-tokenized
// data under --data_root, chunked to the job's seq_len), reports its steps to a watcher, and ends
// with its lens loaded on the model; a failing run ends FAILED with the model's reason; a bad
// field is refused by name and creates no job.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "lensd/v1/models.grpc.pb.h"
#include "lensd/v1/training.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/testing/in_process_server.h"

namespace lensd::server {
namespace {
namespace fs = std::filesystem;
using testing::InProcessServer;

// Training that takes one step per spec.num_steps, reports each, and writes the lens folder; or
// fails with `fail_with` when set.
class FakeTraining : public JobsModel {
 public:
  absl::StatusOr<TrainLensResult> TrainLens(const TrainLensRun& run) const override {
    seq_len = run.seq_len;
    tokens = static_cast<int64_t>(run.tokens->size());
    if (!fail_with.ok()) return fail_with;
    for (int64_t step = 1; step <= run.spec.num_steps; ++step) {
      if (absl::Status s = run.keep_going(); !s.ok()) return s;
      run.on_step({step, run.spec.num_steps, {2.0, 1.0}, 100.0, 0.0});
    }
    fs::create_directories(run.output_dir);
    std::ofstream(fs::path(run.output_dir) / "config.json") << "{}\n";
    TrainLensResult result;
    result.steps = run.spec.num_steps;
    result.tokens = tokens;
    result.final_layer_losses = {2.0, 1.0};
    return result;
  }
  absl::StatusOr<LensMetrics> EvaluateLenses(const EvalLensRun&) const override {
    return absl::UnimplementedError("no evaluation here");
  }

  absl::Status fail_with = absl::OkStatus();
  mutable std::atomic<int64_t> seq_len{0};
  mutable std::atomic<int64_t> tokens{0};
};

// Lenses attached by name, as the registry loads them.
class FakeLenses : public testing::StubAttachments {
 public:
  absl::StatusOr<LensDescription> LoadLens(const std::string& name, const std::string&) override {
    absl::MutexLock lock(&mu_);
    lenses_.push_back({name, "tuned", 100, "fake"});
    return lenses_.back();
  }
  std::vector<LensDescription> Lenses() const override {
    absl::MutexLock lock(&mu_);
    std::vector<LensDescription> all = {{"logit", "logit", 0, ""}};
    all.insert(all.end(), lenses_.begin(), lenses_.end());
    return all;
  }
  absl::StatusOr<int64_t> EstimateLensBytes(const std::string&) const override { return 100; }

 private:
  mutable absl::Mutex mu_;
  std::vector<LensDescription> lenses_ ABSL_GUARDED_BY(mu_);
};

class TrainingServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = InProcessServer::DefaultOptions();
    options.data_root = (fs::path(options.state_dir).parent_path() / "data").string();
    fs::create_directories(options.data_root);
    // 200 pre-tokenized tokens (ids below the fake's vocabulary of 50), little-endian u16.
    std::ofstream data(fs::path(options.data_root) / "tokens.u16", std::ios::binary);
    for (uint16_t i = 0; i < 200; ++i) {
      const uint16_t id = i % 50;
      data.write(reinterpret_cast<const char*>(&id), sizeof(id));
    }
    data.close();
    absl::StatusOr<std::unique_ptr<InProcessServer>> s =
        InProcessServer::StartFake({.attachments = lenses_, .jobs = training_}, std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    training_stub_ = v1::Training::NewStub(server_->channel());
  }

  static v1::SubmitJobRequest TrainRequest(const std::string& lens) {
    v1::SubmitJobRequest r;
    r.set_model("fake");
    v1::TrainLensJob* job = r.mutable_train_lens();
    job->set_lens_name(lens);
    job->mutable_data()->set_path("tokens.u16");
    job->set_num_steps(3);
    job->set_seq_len(8);
    job->set_tokens_per_step(16);
    job->set_micro_batch(2);
    return r;
  }

  // The job's states and steps as WatchJob streams them, to its end.
  std::vector<v1::Job> Watch(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::WatchJobRequest request;
    request.set_id(id);
    std::unique_ptr<grpc::ClientReader<v1::Job>> reader =
        training_stub_->WatchJob(&context, request);
    std::vector<v1::Job> seen;
    v1::Job job;
    while (reader->Read(&job)) seen.push_back(job);
    EXPECT_TRUE(reader->Finish().ok());
    return seen;
  }

  std::shared_ptr<FakeTraining> training_ = std::make_shared<FakeTraining>();
  std::shared_ptr<FakeLenses> lenses_ = std::make_shared<FakeLenses>();
  std::unique_ptr<InProcessServer> server_;
  std::unique_ptr<v1::Training::Stub> training_stub_;
};

TEST_F(TrainingServiceTest, ATrainJobRunsToItsEndAndItsLensIsLoaded) {
  grpc::ClientContext context;
  v1::Job submitted;
  const grpc::Status s = training_stub_->SubmitJob(&context, TrainRequest("mine"), &submitted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(submitted.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(submitted.num_steps(), 3);
  const std::vector<v1::Job> seen = Watch(submitted.id());
  ASSERT_FALSE(seen.empty());
  const v1::Job& last = seen.back();
  ASSERT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.reason();
  EXPECT_EQ(last.step(), 3);
  const nlohmann::json result = nlohmann::json::parse(last.result_json());
  EXPECT_EQ(result["lens"], "mine");
  EXPECT_EQ(result["steps"], 3);
  EXPECT_EQ(training_->seq_len.load(), 8);
  EXPECT_EQ(training_->tokens.load(), 200 / 8 * 8);  // whole chunks of the file
  ASSERT_EQ(lenses_->Lenses().size(), 2U);
  EXPECT_EQ(lenses_->Lenses()[1].name, "mine");
  std::unique_ptr<v1::Models::Stub> models = v1::Models::NewStub(server_->channel());
  grpc::ClientContext get;
  v1::GetModelRequest request;
  request.set_model("fake");
  v1::ModelInfo info;
  ASSERT_TRUE(models->GetModel(&get, request, &info).ok());
  bool listed = false;
  for (const v1::LensInfo& lens : info.lenses()) listed = listed || lens.name() == "mine";
  EXPECT_TRUE(listed);
}

TEST_F(TrainingServiceTest, AFailingRunEndsFailedWithTheModelsReason) {
  training_->fail_with = absl::InvalidArgumentError("tokens: 25 chunks, the run needs 48");
  grpc::ClientContext context;
  v1::Job submitted;
  ASSERT_TRUE(training_stub_->SubmitJob(&context, TrainRequest("never"), &submitted).ok());
  const std::vector<v1::Job> seen = Watch(submitted.id());
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().state(), v1::JOB_STATE_FAILED);
  EXPECT_TRUE(absl::StrContains(seen.back().reason(), "the run needs 48")) << seen.back().reason();
  EXPECT_EQ(lenses_->Lenses().size(), 1U);
}

TEST_F(TrainingServiceTest, ABadFieldIsRefusedByNameAndCreatesNoJob) {
  struct Case {
    v1::SubmitJobRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({TrainRequest(""), grpc::StatusCode::INVALID_ARGUMENT, "lens_name: "});
  cases.push_back({TrainRequest("x"), grpc::StatusCode::PERMISSION_DENIED,
                   "data.path: ../outside.u16 is outside the data root"});
  cases.back().request.mutable_train_lens()->mutable_data()->set_path("../outside.u16");
  cases.push_back({TrainRequest("x"), grpc::StatusCode::NOT_FOUND, "model nope is not in"});
  cases.back().request.set_model("nope");
  for (const Case& c : cases) {
    grpc::ClientContext context;
    v1::Job job;
    const grpc::Status s = training_stub_->SubmitJob(&context, c.request, &job);
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), c.message)) << s.error_message();
  }
  grpc::ClientContext context;
  v1::ListJobsResponse list;
  ASSERT_TRUE(training_stub_->ListJobs(&context, v1::ListJobsRequest(), &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);
}

}  // namespace
}  // namespace lensd::server
