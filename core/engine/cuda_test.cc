// The CUDA path: a model loaded onto the GPU gives the CPU's logits (float32, bfloat16 and
// float16), and KV-cache decoding works there. Skips itself when this process sees no CUDA
// device (Debian's libtorch is CPU-only); run it on a GPU machine with a CUDA libtorch.
#include <ATen/ATen.h>

#include "core/engine/device.h"
#include "core/engine/model_loader.h"
#include "core/engine/test_util.h"
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

}  // namespace
}  // namespace lensd::engine
