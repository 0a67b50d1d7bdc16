// Interventions parity with TransformerLens 3.9's run_with_hooks, on random-init gpt2, grouped-
// query llama and gpt_neox checkpoints written by transformers (intervention_reference.py):
// set (one vector, a row per position), add (steering), scale, zero, head ablation (hook_z),
// per-head hook_v, a pattern row, mean-ablation over reference inputs (overall and per
// position), activation patching from a second input, project-out and keep-only.
//
// And SAE clamping against SAELens 6.54's spliced model (HookedSAETransformer, the SAE with
// use_error_term, its hook_sae_acts_post set) on a random standard SAE written by save_model.
//
// Tolerances: float32 logits 1e-4 (max absolute difference); greedy generation steered at
// every step equal token for token to TransformerLens re-running the whole sequence each step.
// Each case's logits must also differ from the unedited ones by more than 1e-3, so an edit that
// did nothing could not pass.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "core/engine/interventions/interventions.h"
#include "core/engine/lens/generate.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/models/model_loader.h"
#include "core/engine/sae/sae.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/parity/reference_tensors.h"

namespace lensd::engine {
namespace {

constexpr double kTolerance = 1e-4;
constexpr double kEdited = 1e-3;

std::string Dir(const std::string& name) {
  return std::string(LENSD_TEST_BINARY_DIR) + "/parity/interventions/" + name;
}

HostTensor ToHost(const at::Tensor& value) {
  const at::Tensor t = value.to(at::kFloat).contiguous();
  HostTensor out;
  out.dtype = "float32";
  out.shape.assign(t.sizes().begin(), t.sizes().end());
  out.data.assign(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

std::vector<int64_t> Row(const at::Tensor& ids, int64_t row) {
  const at::Tensor r = ids[row].to(at::kLong).contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

InterventionOp OpNamed(const std::string& name) {
  static const std::map<std::string, InterventionOp> ops = {
      {"set", InterventionOp::kSet},
      {"add", InterventionOp::kAdd},
      {"scale", InterventionOp::kScale},
      {"zero", InterventionOp::kZero},
      {"mean", InterventionOp::kMean},
      {"patch", InterventionOp::kPatch},
      {"project_out", InterventionOp::kProjectOut},
      {"keep_only", InterventionOp::kKeepOnly}};
  return ops.at(name);
}

class InterventionParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ref_ = testing::ReadReference(Dir(GetParam()) + "/reference.safetensors");
    ASSERT_FALSE(ref_.empty()) << "run the intervention_reference fixture first";
    std::ifstream in(Dir(GetParam()) + "/cases.json");
    cases_ = nlohmann::json::parse(in);
    auto model = LoadModel(Dir(GetParam()), {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    ids_ = ref_.at("input_ids");
  }

  InterventionSpec Case(size_t i) const {
    const nlohmann::json& c = cases_[i];
    InterventionSpec spec;
    spec.hook_point = c["hook_point"];
    spec.op = OpNamed(c["op"]);
    spec.number = c.value("number", 1.0);
    spec.positions = c.value("positions", std::vector<int64_t>{});
    spec.heads = c.value("heads", std::vector<int64_t>{});
    spec.per_position = c.value("per_position", false);
    const std::string tensor = "case" + std::to_string(i) + ".tensor";
    if (ref_.count(tensor) > 0) spec.tensor = ToHost(ref_.at(tensor));
    if (spec.op == InterventionOp::kPatch) spec.inputs.push_back(Row(ref_.at("source_ids"), 0));
    if (spec.op == InterventionOp::kMean && spec.tensor.empty()) {
      const at::Tensor refs = ref_.at("reference_ids");
      for (int64_t r = 0; r < refs.size(0); ++r) spec.inputs.push_back(Row(refs, r));
    }
    return spec;
  }

  absl::StatusOr<at::Tensor> Logits(const std::vector<InterventionSpec>& specs,
                                    const SaeLookup& saes = nullptr) const {
    absl::StatusOr<Interventions> edits =
        Interventions::Prepare(*model_, specs, {ids_.size(1), false}, saes);
    if (!edits.ok()) return edits.status();
    Hooks hooks(model_->config().num_layers);
    edits->Install(hooks);
    absl::StatusOr<ForwardResult> out = model_->Forward({ids_}, &hooks);
    if (!out.ok()) return out.status();
    return out->logits;
  }

  std::map<std::string, at::Tensor> ref_;
  nlohmann::json cases_;
  std::unique_ptr<CausalLm> model_;
  at::Tensor ids_;
};

TEST_P(InterventionParity, EditedLogitsMatchRunWithHooks) {
  const at::Tensor clean = ref_.at("clean_logits");
  ASSERT_GE(cases_.size(), 13u);
  double worst = 0;
  for (size_t i = 0; i < cases_.size(); ++i) {
    SCOPED_TRACE(cases_[i].dump());
    absl::StatusOr<at::Tensor> logits = Logits({Case(i)});
    ASSERT_TRUE(logits.ok()) << logits.status();
    const at::Tensor expected = ref_.at("case" + std::to_string(i) + ".logits");
    const double diff = (*logits - expected).abs().max().item<double>();
    worst = std::max(worst, diff);
    EXPECT_LT(diff, kTolerance);
    EXPECT_GT((expected - clean).abs().max().item<double>(), kEdited) << "the edit changes nothing";
  }
  std::printf("%s: %zu cases, max |lensd - TransformerLens| logit %.2e\n", GetParam().c_str(),
              cases_.size(), worst);
}

TEST_P(InterventionParity, SeveralInterventionsApplyInOrder) {
  // Steering then scaling the same point is not scaling then steering; each order must equal
  // the two single edits composed by hand (set to (x + 3v) * 0.25 via the reference's pieces).
  InterventionSpec add = Case(2);  // blocks.2.hook_resid_pre + 3 v
  InterventionSpec scale = add;
  scale.op = InterventionOp::kScale;
  scale.number = 0.25;
  scale.tensor = HostTensor();
  absl::StatusOr<at::Tensor> add_then_scale = Logits({add, scale});
  absl::StatusOr<at::Tensor> scale_then_add = Logits({scale, add});
  ASSERT_TRUE(add_then_scale.ok()) << add_then_scale.status();
  ASSERT_TRUE(scale_then_add.ok()) << scale_then_add.status();
  EXPECT_GT((*add_then_scale - *scale_then_add).abs().max().item<double>(), kEdited);
  // (x + 3v) * 0.25 == 0.25 x + 0.75 v: scale first, then add 0.75 v.
  InterventionSpec quarter = add;
  quarter.number = 0.75;
  absl::StatusOr<at::Tensor> composed = Logits({scale, quarter});
  ASSERT_TRUE(composed.ok()) << composed.status();
  EXPECT_LT((*add_then_scale - *composed).abs().max().item<double>(), kTolerance);
}

TEST_P(InterventionParity, SteeredGreedyGenerationMatchesTokenForToken) {
  InterventionSpec steer;
  steer.hook_point = "blocks.1.hook_resid_pre";
  steer.op = InterventionOp::kAdd;
  steer.number = 4.0;
  steer.tensor = ToHost(ref_.at("steer_vector"));
  const at::Tensor expected = ref_.at("steer_tokens");
  absl::StatusOr<Interventions> edits =
      Interventions::Prepare(*model_, {steer}, {ids_.size(1), true}, nullptr);
  ASSERT_TRUE(edits.ok()) << edits.status();
  GenerateRequest r;
  r.tokens = ids_;
  r.layer = model_->config().num_layers;
  r.greedy = true;
  r.max_new_tokens = expected.size(0);
  r.stop_at_eos = false;
  r.interventions = &*edits;
  const LogitLens logit;
  absl::StatusOr<GenerateResult> steered = Generate(*model_, logit, r);
  ASSERT_TRUE(steered.ok()) << steered.status();
  EXPECT_EQ(steered->tokens[0], Row(expected.unsqueeze(0), 0));
  r.interventions = nullptr;
  absl::StatusOr<GenerateResult> plain = Generate(*model_, logit, r);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_NE(plain->tokens[0], steered->tokens[0]) << "steering by 4 v should change the text";
}

TEST_P(InterventionParity, SaeClampMatchesSaeLensSplicedModel) {
  auto loaded = Sae::Load(Dir(GetParam()) + "/saes/res1", std::nullopt, at::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const std::shared_ptr<const Sae> sae = *std::move(loaded);
  const SaeLookup saes = [&](const std::string& name)
      -> absl::StatusOr<std::pair<std::shared_ptr<const Sae>, HookPoint>> {
    if (name != "res1") return absl::NotFoundError("SAE \"" + name + "\" is not loaded");
    return std::make_pair(sae, HookPoint{HookKind::kResidPre, 1});
  };
  InterventionSpec clamp;
  clamp.op = InterventionOp::kSaeClamp;
  clamp.sae = "res1";
  clamp.feature = 7;
  clamp.number = 3.0;
  clamp.positions = {3, 4, 5, 6, 7, 8};
  absl::StatusOr<at::Tensor> logits = Logits({clamp}, saes);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const at::Tensor expected = ref_.at("sae.clamped_logits");
  const double diff = (*logits - expected).abs().max().item<double>();
  EXPECT_LT(diff, kTolerance);
  EXPECT_GT((expected - ref_.at("clean_logits")).abs().max().item<double>(), kEdited);
  std::printf("%s: SAE clamp, max |lensd - SAELens| logit %.2e\n", GetParam().c_str(), diff);
}

INSTANTIATE_TEST_SUITE_P(Models, InterventionParity,
                         ::testing::Values("gpt2", "llama_gqa", "gpt_neox"));

}  // namespace
}  // namespace lensd::engine
