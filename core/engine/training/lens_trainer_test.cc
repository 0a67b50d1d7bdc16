// Lens training beyond parity (tests/parity/train_parity_test.cc covers the numbers): a run
// stopped at a checkpoint and resumed in a new trainer ends bit-for-bit where an uninterrupted run
// ends; bad options and checkpoints are refused by name; a lens is written whole or not at all
// (a full disk leaves nothing behind).
#include "core/engine/training/lens_trainer.h"

#include <ATen/ATen.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "core/engine/lens/lens_checkpoint.h"
#include "core/engine/lens/lens_writer.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

using ::testing::HasSubstr;

class LensTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir("trainer");
    std::filesystem::create_directories(dir_ + "/model");
    testing::WriteTinyGpt2(dir_ + "/model", at::kFloat);
    auto model = LoadModel(dir_ + "/model", {});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    at::manual_seed(3);
    tokens_ = at::randint(16, {12, 8}, at::kLong);
  }
  LensTrainingOptions Options() const {
    LensTrainingOptions o;
    o.num_steps = 6;
    o.grad_acc_steps = 2;
    return o;
  }
  // Runs micro-batches [first, last) of tokens_, one sequence each.
  void Run(LensTrainer& trainer, int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i)
      ASSERT_TRUE(trainer.MicroBatch(tokens_.narrow(0, i, 1)).ok());
  }

  std::string dir_;
  std::unique_ptr<CausalLm> model_;
  at::Tensor tokens_;
};

TEST_F(LensTrainerTest, ResumingFromACheckpointEndsWhereAnUninterruptedRunEnds) {
  auto straight = LensTrainer::Create(*model_, Options(), nullptr);
  ASSERT_TRUE(straight.ok());
  Run(**straight, 0, 12);
  EXPECT_TRUE((*straight)->done());

  auto first = LensTrainer::Create(*model_, Options(), nullptr);
  ASSERT_TRUE(first.ok());
  Run(**first, 0, 7);  // 3 steps and one micro-batch of the 4th: no checkpoint mid-step
  EXPECT_EQ((*first)->State().status().code(), absl::StatusCode::kFailedPrecondition);
  first = LensTrainer::Create(*model_, Options(), nullptr);
  Run(**first, 0, 6);  // 3 steps
  auto state = (*first)->State();
  ASSERT_TRUE(state.ok()) << state.status();
  TrainingCheckpoint saved{*std::move(state), 6};
  const std::string path = dir_ + "/ckpt.safetensors";
  ASSERT_TRUE(SaveTrainingCheckpoint(saved, path).ok());
  auto loaded = LoadTrainingCheckpoint(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->next_sequence, 6);
  EXPECT_EQ(loaded->state.step, 3);
  auto second = LensTrainer::Create(*model_, Options(), nullptr);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->Restore(loaded->state).ok());
  Run(**second, loaded->next_sequence, 12);
  EXPECT_TRUE((*second)->done());
  const LensTrainerState a = *(*straight)->State(), b = *(*second)->State();
  EXPECT_TRUE(at::equal(a.weights[0], b.weights[0]));
  EXPECT_TRUE(at::equal(a.biases[0], b.biases[0]));
  EXPECT_TRUE(at::equal(a.weight_momentum[0], b.weight_momentum[0]));
  EXPECT_GT(a.weights[0].abs().sum().item<double>(), 0);  // it did learn something
}

TEST_F(LensTrainerTest, RefusesBadOptionsCheckpointsAndExtraSteps) {
  LensTrainingOptions o = Options();
  o.momentum = 1.0;
  EXPECT_THAT(std::string(LensTrainer::Create(*model_, o, nullptr).status().message()),
              HasSubstr("momentum"));
  o = Options();
  o.grad_acc_steps = 0;
  EXPECT_THAT(std::string(LensTrainer::Create(*model_, o, nullptr).status().message()),
              HasSubstr("grad_acc_steps"));
  auto trainer = LensTrainer::Create(*model_, Options(), nullptr);
  ASSERT_TRUE(trainer.ok());
  LensTrainerState wrong = *(*trainer)->State();
  wrong.weights[0] = at::zeros({3, 3});
  EXPECT_EQ((*trainer)->Restore(wrong).code(), absl::StatusCode::kInvalidArgument);
  Run(**trainer, 0, 12);
  EXPECT_EQ((*trainer)->MicroBatch(tokens_.narrow(0, 0, 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  testing::WriteText(dir_ + "/junk.safetensors", "not a checkpoint at all");
  EXPECT_THAT(std::string(LoadTrainingCheckpoint(dir_ + "/junk.safetensors").status().message()),
              HasSubstr("junk.safetensors"));
  ASSERT_TRUE(SaveTrainingCheckpoint({*(*trainer)->State(), 12}, dir_ + "/c.safetensors").ok());
  testing::WriteSafetensors(dir_ + "/other.safetensors", {{"weight.0", at::zeros({8, 8})}});
  EXPECT_THAT(std::string(LoadTrainingCheckpoint(dir_ + "/other.safetensors").status().message()),
              HasSubstr("not a lensd training checkpoint"));
}

TEST_F(LensTrainerTest, ALensIsWrittenWholeOrNotAtAll) {
  auto trainer = LensTrainer::Create(*model_, Options(), nullptr);
  ASSERT_TRUE(trainer.ok());
  Run(**trainer, 0, 4);
  auto lens = (*trainer)->MakeLens("t", {"tiny"});
  ASSERT_TRUE(lens.ok()) << lens.status();
  const std::string out = dir_ + "/lens";
  ASSERT_TRUE(SaveTunedLens(**lens, out).ok());
  auto reread = TunedLens::Load(out, *model_, "t");
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_TRUE(at::equal((*reread)->weights(), (*lens)->weights()));
  EXPECT_EQ(SaveTunedLens(**lens, out).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(SaveTunedLens(**lens, dir_ + "/lens/config.json/x").code(),
            absl::StatusCode::kNotFound);

  // A full disk, as a file-size limit of 1 KiB (EFBIG) in a child process: the save fails with
  // RESOURCE_EXHAUSTED and leaves no folder, partial or final.
  const std::string full = dir_ + "/full";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{1024, 1024};
    setrlimit(RLIMIT_FSIZE, &limit);
    const absl::Status s = SaveTunedLens(**lens, full);
    _exit(s.code() == absl::StatusCode::kResourceExhausted ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(std::filesystem::exists(full));
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().filename().string().find("full"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace lensd::engine
