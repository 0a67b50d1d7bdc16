// Whole training runs: a run stopped after a checkpoint and resumed from it writes the same lens
// as an uninterrupted run; progress comes after every step; data too short for the requested
// steps is refused before any work (tuned-lens #113); an existing output is not overwritten.
#include "core/engine/training/lens_training_run.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "core/engine/lens/lens_checkpoint.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/test_util.h"
#include "core/jobs/training_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

using ::testing::HasSubstr;

class LensTrainingRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("run");
    std::filesystem::create_directories(dir_ + "/model");
    testing::WriteTinyGpt2(dir_ + "/model", at::kFloat);
    auto model = LoadModel(dir_ + "/model", {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    for (int i = 0; i < 40 * 8; ++i) tokens_.push_back((i * 7 + i / 5) % 16);
  }
  TrainLensRun Run(const std::string& name) {
    TrainLensRun run;
    run.spec.lens_name = name;
    run.spec.data.texts = {"unused: the chunks are given"};
    run.spec.num_steps = 8;
    run.spec.seq_len = 8;
    run.spec.tokens_per_step = 32;  // 4 sequences: 2 micro-batches of 2
    run.spec.micro_batch = 2;
    run.spec.checkpoint_every = 3;
    run.seq_len = 8;
    run.tokens = &tokens_;
    run.order = ShuffledOrder(40, 42);
    run.checkpoint_dir = dir_ + "/ckpt-" + name;
    std::filesystem::create_directories(run.checkpoint_dir);
    run.output_dir = dir_ + "/lenses/" + name;
    run.base_model = "tiny";
    return run;
  }

  std::string dir_;
  std::unique_ptr<CausalLm> model_;
  std::vector<int32_t> tokens_;
};

TEST_F(LensTrainingRunTest, AnInterruptedRunResumesToTheSameLens) {
  TrainLensRun straight = Run("straight");
  std::vector<int64_t> steps;
  straight.on_step = [&](const TrainingProgress& p) {
    steps.push_back(p.step);
    EXPECT_EQ(p.layer_losses.size(), 1u);
    EXPECT_GT(p.tokens_per_second, 0);
  };
  auto done = RunLensTraining(*model_, nullptr, straight);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->steps, 8);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));

  TrainLensRun first = Run("resumed");
  std::string last_checkpoint;
  first.on_checkpoint = [&](int64_t step, const std::string& path) {
    last_checkpoint = path;
    return absl::OkStatus();
  };
  int micro_batches = 0;
  first.keep_going = [&]() {  // stops in step 5, after the checkpoint of step 3
    return ++micro_batches > 9 ? absl::AbortedError("stop") : absl::OkStatus();
  };
  EXPECT_EQ(RunLensTraining(*model_, nullptr, first).status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(last_checkpoint, HasSubstr("step-3"));
  EXPECT_FALSE(std::filesystem::exists(first.output_dir));

  TrainLensRun second = Run("resumed");
  second.resume_from = last_checkpoint;
  auto resumed = RunLensTraining(*model_, nullptr, second);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  // The result counts the whole job: steps 1..3 before the resume and 4..8 after, and the first
  // segment's training time.
  EXPECT_EQ(resumed->tokens, 8 * 32);
  EXPECT_EQ(resumed->resumed_from_step, 3);
  auto checkpoint = LoadTrainingCheckpoint(last_checkpoint);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_GT(checkpoint->elapsed_us, 0);
  EXPECT_GE(resumed->seconds, static_cast<double>(checkpoint->elapsed_us) / 1e6);
  auto a = TunedLens::Load(straight.output_dir, *model_, "a");
  auto b = TunedLens::Load(second.output_dir, *model_, "b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(at::equal((*a)->weights(), (*b)->weights()));
  EXPECT_TRUE(at::equal((*a)->biases(), (*b)->biases()));

  EXPECT_EQ(RunLensTraining(*model_, nullptr, Run("straight")).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(LensTrainingRunTest, DataThatCannotFillTheStepsIsRefusedUpFront) {
  TrainLensRun run = Run("short");
  run.spec.num_steps = 11;  // 44 sequences; there are 40
  int steps = 0;
  run.on_step = [&](const TrainingProgress&) { ++steps; };
  const absl::Status s = RunLensTraining(*model_, nullptr, run).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(s.message()),
      HasSubstr("40 sequences of 8 tokens cannot fill 11 steps of 4 sequences (44 needed)"));
  EXPECT_EQ(steps, 0);
}

}  // namespace
}  // namespace lensd::engine
