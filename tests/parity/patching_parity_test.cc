// Activation patching parity with transformer_lens.patching 3.9 (get_act_patch_*), on the
// random-init gpt2, grouped-query llama and gpt_neox checkpoints of intervention_reference.py:
// the metric logit(5) - logit(17) at the last position, clean = input_ids, corrupted =
// source_ids; denoising grids for resid_pre, resid_mid (sequential models), attn_out and mlp_out
// by position, heads' z by position and all positions, q/k/v and pattern all positions and
// pattern by position; a noising grid for resid_pre.
//
// Tolerance: 1e-4 on every cell (float32; lensd runs the cells of a layer as rows of one batched
// pass that starts at the layer, TransformerLens one full run per cell).
#include <ATen/ATen.h>

#include <cstdio>
#include <map>
#include <string>

#include "core/engine/attribution/activation_patching.h"
#include "core/engine/models/model_loader.h"
#include "gtest/gtest.h"
#include "tests/parity/reference_tensors.h"

namespace lensd::engine {
namespace {

constexpr double kTolerance = 1e-4;

std::string Dir(const std::string& name) {
  return std::string(LENSD_TEST_BINARY_DIR) + "/parity/interventions/" + name;
}

std::vector<int64_t> Ids(const at::Tensor& t) {
  const at::Tensor r = t[0].to(at::kLong).contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

at::Tensor Grid(const PatchingGrid& grid) {
  return at::tensor(grid.metric, at::kFloat).view(grid.shape);
}

class PatchingParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ref_ = testing::ReadReference(Dir(GetParam()) + "/reference.safetensors");
    ASSERT_FALSE(ref_.empty()) << "run the intervention_reference fixture first";
    auto model = LoadModel(Dir(GetParam()), {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    spec_.clean = Ids(ref_.at("input_ids"));
    spec_.corrupted = Ids(ref_.at("source_ids"));
    spec_.metric.kind = MetricKind::kLogitDiff;
    spec_.metric.target = 5;
    spec_.metric.foil = 17;
  }

  std::map<std::string, at::Tensor> ref_;
  std::unique_ptr<CausalLm> model_;
  ActivationPatchingSpec spec_;
};

TEST_P(PatchingParity, DenoisingGridsMatchTransformerLens) {
  struct Expected {
    PatchingSweep sweep;
    std::string name;
    bool transpose = false;  // TransformerLens's pattern-by-position grid is [layer, head, pos]
  };
  std::vector<Expected> expected = {
      {{PatchingSite::kResidPre, false}, "resid_pre"},
      {{PatchingSite::kAttnOut, false}, "attn_out"},
      {{PatchingSite::kMlpOut, false}, "mlp_out"},
      {{PatchingSite::kHeadZ, false}, "z_by_pos"},
      {{PatchingSite::kHeadZ, true}, "z_all_pos"},
      {{PatchingSite::kHeadQ, true}, "q_all_pos"},
      {{PatchingSite::kHeadK, true}, "k_all_pos"},
      {{PatchingSite::kHeadV, true}, "v_all_pos"},
      {{PatchingSite::kHeadPattern, true}, "pattern_all_pos"},
      {{PatchingSite::kHeadPattern, false}, "pattern_by_pos", true},
  };
  if (!model_->config().parallel_residual) {
    expected.push_back({{PatchingSite::kResidMid, false}, "resid_mid"});
  }
  for (const Expected& e : expected) spec_.sweeps.push_back(e.sweep);
  int64_t calls = 0;
  auto out = PatchActivations(*model_, spec_, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_LE(done, total);
    return absl::OkStatus();
  });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NEAR(out->clean_metric, ref_.at("patch.clean_metric").item<double>(), kTolerance);
  EXPECT_NEAR(out->corrupted_metric, ref_.at("patch.corrupted_metric").item<double>(), kTolerance);
  ASSERT_EQ(out->grids.size(), expected.size());
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name);
    at::Tensor want = ref_.at("patch." + expected[i].name);
    if (expected[i].transpose) want = want.transpose(1, 2);
    const at::Tensor ours = Grid(out->grids[i]);
    ASSERT_EQ(ours.sizes(), want.sizes());
    const double diff = (ours - want).abs().max().item<double>();
    worst = std::max(worst, diff);
    EXPECT_LT(diff, kTolerance);
    const double span = out->clean_metric - out->corrupted_metric;
    const at::Tensor normalized =
        at::tensor(out->grids[i].normalized, at::kFloat).view(out->grids[i].shape);
    EXPECT_LT((normalized - (want - out->corrupted_metric) / span).abs().max().item<double>(),
              kTolerance / std::abs(span) + 1e-5);
  }
  EXPECT_EQ(calls, out->forward_passes - 2);
  std::printf(
      "%s: %zu grids, %lld patched runs in %lld passes, max |lensd - TransformerLens| %.2e\n",
      GetParam().c_str(), expected.size(), static_cast<long long>(out->patched_runs),
      static_cast<long long>(out->forward_passes), worst);
}

TEST_P(PatchingParity, NoisingPatchesTheCorruptedValuesIntoTheCleanRun) {
  spec_.direction = PatchingDirection::kNoising;
  spec_.sweeps = {{PatchingSite::kResidPre, false}};
  auto out = PatchActivations(*model_, spec_, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LT((Grid(out->grids[0]) - ref_.at("patch.noising_resid_pre")).abs().max().item<double>(),
            kTolerance);
}

TEST_P(PatchingParity, SubsetsOfLayersAndPositionsAreTheirCellsOfTheFullGrid) {
  spec_.sweeps = {{PatchingSite::kHeadZ, false}};
  spec_.layers = {2, 0};
  spec_.positions = {8, 3};
  auto out = PatchActivations(*model_, spec_, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  const at::Tensor full = ref_.at("patch.z_by_pos");
  const at::Tensor want = full.index_select(0, at::tensor(std::vector<int64_t>{2, 0}))
                              .index_select(1, at::tensor(std::vector<int64_t>{8, 3}));
  EXPECT_LT((Grid(out->grids[0]) - want).abs().max().item<double>(), kTolerance);
}

TEST_P(PatchingParity, BadSweepsAreRefusedNamingTheField) {
  spec_.sweeps = {{PatchingSite::kResidPre, false}};
  ActivationPatchingSpec bad = spec_;
  bad.corrupted.pop_back();
  EXPECT_EQ(PatchActivations(*model_, bad, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = spec_;
  bad.layers = {3};
  EXPECT_NE(PatchActivations(*model_, bad, nullptr).status().message().find("layers: layer 3"),
            std::string::npos);
  bad = spec_;
  bad.sweeps.clear();
  EXPECT_NE(PatchActivations(*model_, bad, nullptr).status().message().find("sweeps"),
            std::string::npos);
  bad = spec_;
  int64_t passes = 0;
  const absl::Status cancelled = PatchActivations(*model_, bad, [&](int64_t, int64_t) {
                                   ++passes;
                                   return absl::CancelledError("the client went away");
                                 }).status();
  EXPECT_EQ(cancelled.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(passes, 1) << "a cancelled sweep stops after the pass in progress";
}

INSTANTIATE_TEST_SUITE_P(Models, PatchingParity,
                         ::testing::Values("gpt2", "llama_gqa", "gpt_neox"));

}  // namespace
}  // namespace lensd::engine
