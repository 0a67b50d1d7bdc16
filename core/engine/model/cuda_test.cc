// The CUDA path: a model loaded onto the GPU gives the CPU's logits (float32, bfloat16 and
// float16); KV-cache decoding works there; lens training on the GPU in float32 tracks the CPU's
// and under bfloat16 autocast (what precision "auto" picks there) stays within bfloat16's
// precision of it; lens evaluation gives the CPU's metrics. Skips itself when this process sees
// no CUDA device (as in CI); tests/gpu/cuda_check.sh builds and runs it on a
// GPU machine against that machine's PyTorch.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/engine/lens/lens_evaluation.h"
#include "core/engine/model/device.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/test_util.h"
#include "core/engine/training/lens_trainer.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

TEST(Cuda, LogitsMatchCpuInEveryDtype) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device in this process";
  const std::string dir = testing::TempDir("model");
  testing::WriteTinyGpt2(dir, at::kFloat);
  auto cpu = LoadModel(dir, {"float32", "cpu"});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const at::Tensor tokens = at::tensor({1, 5, 2, 9, 3, 7}, at::kLong).view({2, 3});
  const at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 0}, at::kLong).view({2, 3});
  auto want = (*cpu)->Forward({tokens, mask});
  ASSERT_TRUE(want.ok()) << want.status();
  for (const auto& [dtype, tolerance] : std::vector<std::pair<std::string, double>>{
           {"float32", 1e-4}, {"bfloat16", 5e-2}, {"float16", 1e-2}}) {
    auto gpu = LoadModel(dir, {dtype, "cuda"});
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_TRUE((*gpu)->device().is_cuda());
    auto got = (*gpu)->Forward({tokens, mask});
    ASSERT_TRUE(got.ok()) << got.status();
    const at::Tensor diff =
        (got->logits.cpu().to(at::kFloat) - want->logits).abs() * mask.unsqueeze(-1).to(at::kFloat);
    EXPECT_LE(diff.max().item<double>(), tolerance) << dtype;
  }
}

TEST(Cuda, KvCacheDecodingMatchesFullForward) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device in this process";
  const std::string dir = testing::TempDir("model");
  testing::WriteTinyGpt2(dir, at::kFloat);
  auto gpu = LoadModel(dir, {"float32", "cuda"});
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  KvCache cache((*gpu)->config().num_layers);
  ASSERT_TRUE(
      (*gpu)->Forward({at::tensor({1, 5, 2}, at::kLong).view({1, 3})}, nullptr, &cache).ok());
  auto step = (*gpu)->Forward(
      {at::tensor({9}, at::kLong).view({1, 1}), {}, {}, -1, LogitsMode::kLast}, nullptr, &cache);
  auto full = (*gpu)->Forward(
      {at::tensor({1, 5, 2, 9}, at::kLong).view({1, 4}), {}, {}, -1, LogitsMode::kLast});
  ASSERT_TRUE(step.ok() && full.ok());
  EXPECT_LE((step->logits - full->logits).abs().max().item<double>(), 1e-4);
}

// Per-micro-batch per-layer losses of 6 steps (2 micro-batches each) on `model`.
std::vector<double> TrainingLosses(const CausalLm& model, const at::Tensor& tokens, bool autocast) {
  LensTrainingOptions options;
  options.num_steps = 6;
  options.grad_acc_steps = 2;
  options.bf16_autocast = autocast;
  auto trainer = LensTrainer::Create(model, options, nullptr);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  std::vector<double> losses;
  for (int64_t i = 0; i < 12 && trainer.ok(); ++i) {
    auto step = (*trainer)->MicroBatch(tokens.narrow(0, i, 1));
    EXPECT_TRUE(step.ok()) << step.status();
    if (step.ok()) losses.insert(losses.end(), step->begin(), step->end());
  }
  return losses;
}

double WorstRelative(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]) / (std::abs(b[i]) + 1e-12));
  }
  return worst;
}

TEST(Cuda, LensTrainingTracksTheCpuInFloat32AndBfloat16Autocast) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device in this process";
  const std::string dir = testing::TempDir("model");
  testing::WriteTinyGpt2(dir, at::kFloat);
  auto cpu = LoadModel(dir, {"float32", "cpu"});
  auto gpu = LoadModel(dir, {"float32", "cuda"});
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  at::manual_seed(3);
  const at::Tensor tokens = at::randint(16, {12, 8}, at::kLong);
  const std::vector<double> reference = TrainingLosses(**cpu, tokens, false);
  const double float32 = WorstRelative(TrainingLosses(**gpu, tokens, false), reference);
  const double bfloat16 = WorstRelative(TrainingLosses(**gpu, tokens, true), reference);
  std::printf("GPU vs CPU float32 losses: float32 within %.1e, bfloat16 autocast within %.1e\n",
              float32, bfloat16);
  EXPECT_LT(float32, 1e-4);
  EXPECT_LT(bfloat16, 5e-2);     // bfloat16 keeps 8 bits of mantissa
  EXPECT_GT(bfloat16, float32);  // autocast took effect
}

TEST(Cuda, LensEvaluationMatchesTheCpu) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device in this process";
  const std::string dir = testing::TempDir("model");
  testing::WriteTinyGpt2(dir, at::kFloat);
  auto cpu = LoadModel(dir, {"float32", "cpu"});
  auto gpu = LoadModel(dir, {"float32", "cuda"});
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  at::manual_seed(4);
  const at::Tensor tokens = at::randint(16, {6, 8}, at::kLong);
  const LogitLens logit;
  auto want = EvaluateLenses(**cpu, {{"logit", &logit}}, tokens, 4, 1, nullptr);
  auto got = EvaluateLenses(**gpu, {{"logit", &logit}}, tokens, 4, 1, nullptr);
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_EQ(got->batches, 2);
  EXPECT_NEAR(got->baseline_ce, want->baseline_ce, 1e-4);
  for (const char* metric : {"ce", "entropy", "kl"}) {
    const std::vector<double>& a = got->lenses["logit"][metric];
    const std::vector<double>& b = want->lenses["logit"][metric];
    for (size_t l = 0; l < a.size(); ++l) EXPECT_NEAR(a[l], b[l], 1e-4) << metric << " " << l;
  }
}

}  // namespace
}  // namespace lensd::engine
