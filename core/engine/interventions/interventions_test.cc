// Interventions refused with a message naming the intervention's index and field and what would
// fit, and edits that touch only what they select (positions of a KV-cache step, heads).
#include "core/engine/interventions/interventions.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cstring>
#include <string>

#include "core/engine/models/model_loader.h"
#include "core/engine/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lensd::engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

HostTensor Floats(std::vector<int64_t> shape, float value = 1.0f) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  std::vector<float> data(static_cast<size_t>(n), value);
  HostTensor t{"float32", std::move(shape), std::string(data.size() * sizeof(float), '\0')};
  std::memcpy(t.data.data(), data.data(), t.data.size());
  return t;
}

InterventionSpec Zero(const std::string& point) {
  InterventionSpec s;
  s.hook_point = point;
  s.op = InterventionOp::kZero;
  return s;
}

class InterventionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::TempDir("interventions_model");
    testing::WriteTinyGpt2(dir, at::kFloat);  // d_model 8, 2 heads, 1 layer, context 8
    auto model = LoadModel(dir, {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }

  absl::Status Check(const std::vector<InterventionSpec>& specs, bool generating = false) const {
    return Interventions::Validate(*model_, specs, {5, generating}, nullptr);
  }

  std::unique_ptr<CausalLm> model_;
};

TEST_F(InterventionsTest, AnUnknownHookPointNamesTheIndexAndTheField) {
  const absl::Status s = Check({Zero("blocks.0.hook_resid_pre"), Zero("blocks.3.hook_resid_pre")});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("interventions[1].hook_point"), HasSubstr("0..0")));
}

TEST_F(InterventionsTest, PositionsAndHeadsOutOfRangeSayTheRange) {
  InterventionSpec s = Zero("blocks.0.hook_mlp_out");
  s.positions = {1, 5};
  EXPECT_THAT(Check({s}).message(), AllOf(HasSubstr("interventions[0].positions"),
                                          HasSubstr("position 5"), HasSubstr("0..4")));
  s.positions = {2, 2};
  EXPECT_THAT(Check({s}).message(), HasSubstr("position 2 given twice"));
  s = Zero("blocks.0.attn.hook_z");
  s.heads = {2};
  EXPECT_THAT(Check({s}).message(),
              AllOf(HasSubstr("interventions[0].heads"), HasSubstr("heads 0..1")));
  s = Zero("blocks.0.hook_resid_post");
  s.heads = {0};
  EXPECT_THAT(Check({s}).message(), HasSubstr("has no heads"));
}

TEST_F(InterventionsTest, ATensorOfTheWrongShapeOrDtypeSaysWhatFits) {
  InterventionSpec s;
  s.hook_point = "blocks.0.hook_resid_pre";
  s.op = InterventionOp::kSet;
  s.tensor = Floats({7});
  const absl::Status shape = Check({s});
  EXPECT_EQ(shape.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.message(),
              AllOf(HasSubstr("interventions[0].set"), HasSubstr("[7]"), HasSubstr("[8]")));
  s.tensor = Floats({3, 8});  // three rows for five positions
  EXPECT_THAT(Check({s}).message(), HasSubstr("[5, 8]"));
  s.tensor = Floats({8});
  s.tensor.dtype = "int64";
  s.tensor.data.resize(64);
  EXPECT_THAT(Check({s}).message(), HasSubstr("dtype \"int64\""));
  s.tensor = Floats({8});
  s.tensor.data.resize(12);
  EXPECT_THAT(Check({s}).message(), HasSubstr("needs 32"));
  s.tensor = Floats({8});
  EXPECT_TRUE(Check({s}).ok()) << Check({s});
}

TEST_F(InterventionsTest, APatchSourceMustAlignWithTheInput) {
  InterventionSpec s;
  s.hook_point = "blocks.0.hook_resid_post";
  s.op = InterventionOp::kPatch;
  s.inputs = {{1, 2, 3}};
  EXPECT_THAT(Check({s}).message(), AllOf(HasSubstr("interventions[0].patch"),
                                          HasSubstr("3 tokens where the input has 5")));
  s.positions = {1, 2};  // within the source
  EXPECT_TRUE(Check({s}).ok()) << Check({s});
  s.positions = {4};
  EXPECT_THAT(Check({s}).message(), HasSubstr("do not reach position 4"));
  s.inputs = {{1, 2, 99, 4, 5}};
  s.positions.clear();
  EXPECT_THAT(Check({s}).message(), HasSubstr("token id 99 out of range 0..15"));
  // In Generate a source covers the prompt only.
  s.inputs = {{1, 2, 3, 4, 5}};
  EXPECT_THAT(Check({s}, /*generating=*/true).message(), HasSubstr("INTERVENTION_SPAN_PROMPT"));
  s.span = InterventionSpan::kPrompt;
  EXPECT_TRUE(Check({s}, true).ok()) << Check({s}, true);
}

TEST_F(InterventionsTest, OtherRefusals) {
  InterventionSpec generated = Zero("blocks.0.hook_resid_pre");
  generated.span = InterventionSpan::kGenerated;
  EXPECT_THAT(Check({generated}).message(), HasSubstr("Generate only"));
  InterventionSpec project;
  project.hook_point = "blocks.0.hook_resid_pre";
  project.op = InterventionOp::kProjectOut;
  project.tensor = Floats({2, 8});  // two equal rows
  EXPECT_THAT(Check({project}).message(), HasSubstr("linearly dependent"));
  InterventionSpec clamp;
  clamp.op = InterventionOp::kSaeClamp;
  clamp.sae = "res0";
  EXPECT_EQ(Check({clamp}).code(), absl::StatusCode::kNotFound);
  InterventionSpec mean;
  mean.hook_point = "blocks.0.attn.hook_pattern";
  mean.op = InterventionOp::kMean;
  mean.inputs = {{1, 2, 3, 4, 5}};
  EXPECT_THAT(Check({mean}).message(), HasSubstr("per position"));
}

TEST_F(InterventionsTest, AnEditInAKvCacheStepTouchesOnlyItsPositions) {
  c10::InferenceMode inference;
  InterventionSpec s;
  s.hook_point = "blocks.0.hook_resid_pre";
  s.op = InterventionOp::kSet;
  s.tensor = Floats({8}, 2.0f);
  s.positions = {6};
  auto edits = Interventions::Prepare(*model_, {s}, {5, true}, nullptr);
  ASSERT_TRUE(edits.ok()) << edits.status();
  Hooks hooks(1);
  edits->Install(hooks);
  hooks.Capture({HookKind::kResidPre, 0});
  KvCache cache(1);
  const at::Tensor prompt = at::arange(5, at::kLong).unsqueeze(0);
  ASSERT_TRUE(model_->Forward({prompt}, &hooks, &cache).ok());
  const at::Tensor before = hooks.Captured({HookKind::kResidPre, 0}).clone();
  EXPECT_GT((before - 2.0).abs().min().item<double>(), 0.0) << "prompt positions are untouched";
  // Two steps: positions 5 and 6; only the second is edited.
  ASSERT_TRUE(model_->Forward({at::full({1, 1}, 3, at::kLong)}, &hooks, &cache).ok());
  EXPECT_GT((hooks.Captured({HookKind::kResidPre, 0}) - 2.0).abs().max().item<double>(), 0.0);
  ASSERT_TRUE(model_->Forward({at::full({1, 1}, 3, at::kLong)}, &hooks, &cache).ok());
  EXPECT_EQ((hooks.Captured({HookKind::kResidPre, 0}) - 2.0).abs().max().item<double>(), 0.0);
}

TEST_F(InterventionsTest, HeadsOutsideTheSelectionKeepTheirValues) {
  c10::InferenceMode inference;
  InterventionSpec s = Zero("blocks.0.attn.hook_z");
  s.heads = {1};
  auto edits = Interventions::Prepare(*model_, {s}, {5, false}, nullptr);
  ASSERT_TRUE(edits.ok()) << edits.status();
  const at::Tensor tokens = at::arange(5, at::kLong).unsqueeze(0);
  Hooks plain(1);
  plain.Capture({HookKind::kAttnZ, 0});
  ASSERT_TRUE(model_->Forward({tokens}, &plain).ok());
  Hooks edited(1);
  edits->Install(edited);
  edited.Capture({HookKind::kAttnZ, 0});
  ASSERT_TRUE(model_->Forward({tokens}, &edited).ok());
  const at::Tensor z = edited.Captured({HookKind::kAttnZ, 0});  // [1, 5, 2, 4]
  EXPECT_EQ(z.select(2, 1).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(at::equal(z.select(2, 0), plain.Captured({HookKind::kAttnZ, 0}).select(2, 0)));
}

}  // namespace
}  // namespace lensd::engine
