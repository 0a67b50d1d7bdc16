// Lens parity with tuned-lens 0.2.0 (lens_reference.py) on the random-init checkpoints of every
// architecture, with translators of random weights saved by tuned-lens's own save().
//
// Tolerances (max absolute difference):
//   per-layer logits (TunedLens.forward, LogitLens.forward, resid_mid, float16 translators)  1e-4
//   entropy, forward KL, cross-entropy, log-prob difference, comparisons (nats)             1e-4
//   max probability                                                                        1e-5
//   rank of the target                                                                      exact
//   zero-initialised tuned lens vs logit lens                                               exact
//   greedy generation vs the reference loop (full recompute, batch 1)                      exact
#include <ATen/ATen.h>

#include <fstream>
#include <map>
#include <string>

#include "core/engine/lens/decode.h"
#include "core/engine/lens/generate.h"
#include "core/engine/lens/lens.h"
#include "core/engine/models/model_loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/parity/reference_tensors.h"

namespace lensd::engine {
namespace {

constexpr double kTolerance = 1e-4;

std::vector<nlohmann::json> Entries() {
  std::ifstream in(std::string(LENSD_TEST_BINARY_DIR) + "/parity/lenses/manifest.json");
  if (!in) return {nlohmann::json{{"name", "missing_manifest"}}};
  return nlohmann::json::parse(in).get<std::vector<nlohmann::json>>();
}

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const auto& e : Entries()) names.push_back(e["name"]);
  return names;
}

double MaxDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

class LensParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    for (const auto& e : Entries()) {
      if (e["name"] == GetParam()) entry_ = e;
    }
    ASSERT_FALSE(entry_.is_null()) << "run the lens_reference fixture first";
    ref_ = lensd::testing::ReadReference(entry_["lens_dir"].get<std::string>() +
                                         "/reference.safetensors");
    auto model = LoadModel(entry_["model_dir"], {"float32", "cpu"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    auto lens = TunedLens::Load(LensDir("tuned"), *model_, "tuned");
    ASSERT_TRUE(lens.ok()) << lens.status();
    tuned_ = *std::move(lens);
    layers_ = model_->config().num_layers;
  }

  std::string LensDir(const std::string& which) const {
    return entry_["lens_dir"].get<std::string>() + "/" + which;
  }

  // The lens's logits per layer on the reference batch, [L, B, T, V].
  at::Tensor LayerLogits(const Lens& lens, HookKind kind) {
    Hooks hooks(layers_);
    for (int64_t l = 0; l < layers_; ++l) hooks.Capture({kind, l});
    EXPECT_TRUE(model_->Forward({ref_.at("batch_ids"), ref_.at("batch_mask")}, &hooks).ok());
    std::vector<at::Tensor> rows;
    for (int64_t l = 0; l < layers_; ++l) {
      auto logits = lens.Logits(*model_, hooks.Captured({kind, l}), l);
      EXPECT_TRUE(logits.ok()) << logits.status();
      rows.push_back(logits.ok() ? *logits : at::Tensor());
    }
    return at::stack(rows);
  }

  // Decode of the reference prompt: rows 0..L (lens rows, then the model's own row).
  DecodeResult DecodePrompt(const Lens& lens, uint32_t stats, bool mask_input,
                            const Lens* compare = nullptr) {
    DecodeRequest r;
    r.tokens = ref_.at("input_ids").view({1, -1});
    r.targets = ref_.at("targets").view({1, -1});
    r.anti_targets = ref_.at("anti_targets").view({1, -1});
    r.statistics = stats;
    r.mask_input = mask_input;
    r.compare = compare;
    r.top_k = 5;
    auto out = Decode(*model_, lens, r);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *std::move(out) : DecodeResult();
  }

  // Masked to real positions of the batch: [L, B, T, V] -> max |diff|.
  double BatchDiff(const at::Tensor& a, const at::Tensor& b) {
    const at::Tensor mask = ref_.at("batch_mask").to(at::kFloat).view({1, 2, -1, 1});
    return ((a - b).abs() * mask).max().item<double>();
  }

  nlohmann::json entry_;
  std::map<std::string, at::Tensor> ref_;
  std::unique_ptr<CausalLm> model_;
  std::unique_ptr<TunedLens> tuned_;
  int64_t layers_ = 0;
};

TEST_P(LensParity, PerLayerLogitsMatchTunedLensForward) {
  EXPECT_LE(BatchDiff(LayerLogits(*tuned_, HookKind::kResidPre), ref_.at("tuned_layer_logits")),
            kTolerance);
  EXPECT_LE(BatchDiff(LayerLogits(LogitLens(), HookKind::kResidPre), ref_.at("logit_layer_logits")),
            kTolerance);
}

TEST_P(LensParity, MidBlockReadoutMatches) {
  if (model_->config().parallel_residual) {
    DecodeRequest r;
    r.tokens = ref_.at("batch_ids");
    r.readout = Readout::kResidMid;
    EXPECT_EQ(Decode(*model_, *tuned_, r).status().code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  EXPECT_LE(BatchDiff(LayerLogits(*tuned_, HookKind::kResidMid), ref_.at("mid_layer_logits")),
            kTolerance);
}

TEST_P(LensParity, StatisticsMatchPredictionTrajectory) {
  const DecodeResult out = DecodePrompt(*tuned_, kDefaultStatistics | kLogProbDiff, false);
  ASSERT_EQ(out.rows.size(), static_cast<size_t>(layers_ + 1));
  EXPECT_LE(MaxDiff(out.entropy[0], ref_.at("tuned_entropy")), kTolerance);
  EXPECT_LE(MaxDiff(out.forward_kl[0], ref_.at("tuned_forward_kl")), kTolerance);
  EXPECT_LE(MaxDiff(out.cross_entropy[0], ref_.at("tuned_cross_entropy")), kTolerance);
  EXPECT_LE(MaxDiff(out.log_prob_diff[0], ref_.at("tuned_log_prob_diff")), kTolerance);
  EXPECT_LE(MaxDiff(out.max_probability[0], ref_.at("tuned_max_probability")), 1e-5);
  EXPECT_TRUE(at::equal(out.target_rank[0].to(at::kFloat), ref_.at("tuned_rank")));
  // Top-k: the reference's five most likely tokens and their probabilities.
  const auto [values, ids] = ref_.at("tuned_log_probs").topk(5, -1);
  EXPECT_TRUE(at::equal(out.top_ids[0], ids));
  EXPECT_LE(MaxDiff(out.top_probs[0], values.exp()), 1e-5);
}

TEST_P(LensParity, ComparisonsMatchTrajectoryComparisons) {
  const LogitLens logit;
  const DecodeResult out = DecodePrompt(*tuned_, kEntropy, false, &logit);
  EXPECT_LE(MaxDiff(out.kl_to_other[0], ref_.at("cmp_kl")), kTolerance);
  EXPECT_LE(MaxDiff(out.symmetric_kl[0], ref_.at("cmp_js")), kTolerance);
  EXPECT_LE(MaxDiff(out.max_abs_prob_diff[0], ref_.at("cmp_tv")), 1e-5);
}

TEST_P(LensParity, MaskedInputMatches) {
  const DecodeResult out = DecodePrompt(*tuned_, kEntropy | kCrossEntropy | kMaxProbability, true);
  EXPECT_LE(MaxDiff(out.entropy[0], ref_.at("masked_entropy")), kTolerance);
  EXPECT_LE(MaxDiff(out.max_probability[0], ref_.at("masked_max_probability")), 1e-5);
  // Targets that occur in the input are masked: their cross-entropy is huge in both; compare the
  // others.
  const at::Tensor ce = out.cross_entropy[0];
  const at::Tensor want = ref_.at("masked_cross_entropy");
  const at::Tensor finite = want.abs() < 1e6;
  EXPECT_LE(((ce - want).abs() * finite).max().item<double>(), kTolerance);
}

TEST_P(LensParity, ZeroTunedLensEqualsLogitLensExactly) {
  auto zero = TunedLens::Load(LensDir("zero"), *model_, "zero");
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_TRUE(at::equal(LayerLogits(**zero, HookKind::kResidPre),
                        LayerLogits(LogitLens(), HookKind::kResidPre)));
}

TEST_P(LensParity, Float16TranslatorsLoad) {
  if (!ref_.count("fp16_layer_logits")) {
    EXPECT_FALSE(std::ifstream(LensDir("tuned_fp16") + "/params.pt").good());
    return;
  }
  auto half = TunedLens::Load(LensDir("tuned_fp16"), *model_, "fp16");
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_LE(BatchDiff(LayerLogits(**half, HookKind::kResidPre), ref_.at("fp16_layer_logits")),
            kTolerance);
}

TEST_P(LensParity, GreedyGenerationMatchesReferenceLoop) {
  const at::Tensor prompt = ref_.at("input_ids").narrow(0, 0, 5).view({1, 5});
  for (const auto& [name, want] : ref_) {
    if (name.rfind("generated_", 0) != 0) continue;
    GenerateRequest r;
    r.tokens = prompt;
    r.layer = std::stoll(name.substr(10));
    r.max_new_tokens = want.size(0);
    r.greedy = true;
    r.stop_at_eos = false;
    for (const bool early : {false, true}) {
      r.early_exit = early;
      auto out = Generate(*model_, *tuned_, r);
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(out->tokens[0], std::vector<int64_t>(want.data_ptr<int64_t>(),
                                                     want.data_ptr<int64_t>() + want.size(0)))
          << "layer " << r.layer << (early ? " (early exit)" : "");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, LensParity, ::testing::ValuesIn(Names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace lensd::engine
