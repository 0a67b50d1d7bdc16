// The thread state a batch run by a yield starts with (core/scheduler.h): a batch yielded to from
// inside a decode (which runs in inference mode) must record autograd graphs as a batch on a
// fresh worker thread does, and the decode's mode must come back after it.
#include "core/engine/served/engine_factory.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

TEST(EngineFactory, AYieldedBatchLeavesTheOuterBatchsInferenceModeAndGetsItBack) {
  c10::InferenceMode outer;  // as inside a decode
  ASSERT_TRUE(c10::InferenceMode::is_enabled());
  {
    const std::shared_ptr<void> scope = EngineModelFactory().yield_scope();
    EXPECT_FALSE(c10::InferenceMode::is_enabled());
    EXPECT_TRUE(c10::GradMode::is_enabled());
    const at::Tensor x = at::full({3}, 2.0).requires_grad_();
    (x * x).sum().backward();  // would fail on inference tensors
    EXPECT_TRUE(at::allclose(x.grad(), at::full({3}, 4.0)));
  }
  EXPECT_TRUE(c10::InferenceMode::is_enabled());
  EXPECT_FALSE(c10::GradMode::is_enabled());
}

}  // namespace
}  // namespace lensd::engine
