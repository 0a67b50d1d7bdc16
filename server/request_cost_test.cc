// Admission by cost: the estimates grow with what a request asks for, the worst requests within
// the wire limits are refused naming the estimate and the bound, and ordinary ones pass.
#include "server/request_cost.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace lensd::server {
namespace {

// A GPT-2-small-shaped model: 12 layers, d_model 768, 12 heads, vocabulary 50257.
ServedModelInfo Gpt2Small() {
  ServedModelInfo info;
  info.num_layers = 12;
  info.d_model = 768;
  info.num_heads = 12;
  info.vocab_size = 50257;
  info.dtype = "float32";
  info.hook_points = {"blocks.0.hook_resid_pre", "blocks.0.attn.hook_pattern"};
  info.hook_widths = {768, 12};
  info.hook_per_key_position = {false, true};
  return info;
}

DecodeSpec Prompt(int64_t tokens) {
  DecodeSpec spec;
  spec.tokens.assign(static_cast<size_t>(tokens), 1);
  return spec;
}

TEST(RequestCostTest, AnOrdinaryDecodeIsAdmitted) {
  DecodeSpec spec = Prompt(1024);  // every layer and position, top-5, default statistics
  const RequestCost cost = DecodeCost(spec, Gpt2Small(), false);
  EXPECT_LT(cost.message_bytes, 16 << 20);
  EXPECT_TRUE(CheckRequestCost(cost, Limits{}).ok());
}

TEST(RequestCostTest, TheLargestTopKOverManyPositionsIsRefusedNamingEstimateAndBound) {
  DecodeSpec spec = Prompt(11);
  spec.top_k = 4096;
  spec.positions.assign(256, 0);
  for (int64_t p = 0; p < 256; ++p) spec.positions[static_cast<size_t>(p)] = p % 11;
  const absl::Status s = CheckRequestCost(DecodeCost(spec, Gpt2Small(), false), Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("(one answer message; 13 rows x 256 positions x top_k 4096)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.message().find("over the server's bound of 64 MiB (--max_message_bytes)"),
            std::string::npos)
      << s;
}

TEST(RequestCostTest, StreamedLogProbabilitiesCountTowardTheRequestBound) {
  DecodeSpec spec = Prompt(4096);  // 13 rows x 4096 positions x 50257 floats: 10.7 GB
  const RequestCost cost = DecodeCost(spec, Gpt2Small(), true);
  EXPECT_GT(cost.answer_bytes, int64_t{10700000000});
  const absl::Status s = CheckRequestCost(cost, Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("(--max_request_bytes)"), std::string::npos) << s;
  spec.tokens.resize(64);  // 13 x 64 x 50257 floats: 160 MiB, streamed
  EXPECT_TRUE(CheckRequestCost(DecodeCost(spec, Gpt2Small(), true), Limits{}).ok());
}

TEST(RequestCostTest, GenerationCountsItsKeyValueCache) {
  GenerateSpec spec;
  spec.tokens.assign(1024, 1);
  spec.max_new_tokens = 1024;
  const RequestCost small = GenerateCost(spec, Gpt2Small());
  // 12 layers x keys and values x 2048 positions x 768 x 4 bytes, and the prompt's logits.
  EXPECT_GE(small.work_bytes, int64_t{12} * 2 * 2048 * 768 * 4);
  EXPECT_TRUE(CheckRequestCost(small, Limits{}).ok());
  ServedModelInfo large = Gpt2Small();  // a 70B-shaped model: 80 layers of 8192
  large.num_layers = 80;
  large.d_model = 8192;
  const absl::Status s = CheckRequestCost(GenerateCost(spec, large), Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("1024 prompt + 1024 new tokens x 80 layers of key/value cache"),
            std::string::npos)
      << s;
}

TEST(RequestCostTest, AttentionPatternsGrowWithTheSquareOfTheLength) {
  ActivationsSpec spec;
  spec.tokens.assign(1000, 1);
  spec.hook_points = {"blocks.0.attn.hook_pattern"};
  const int64_t pattern = ActivationsCost(spec, Gpt2Small()).answer_bytes;
  EXPECT_EQ(pattern, int64_t{12} * 1000 * 1000 * 4);
  spec.hook_points = {"blocks.0.hook_resid_pre"};
  spec.gradients = true;
  EXPECT_EQ(ActivationsCost(spec, Gpt2Small()).answer_bytes, int64_t{768} * 1000 * 8);
  spec.hook_points = {"no.such.hook"};
  EXPECT_EQ(ActivationsCost(spec, Gpt2Small()).answer_bytes, 0);
}

TEST(RequestCostTest, EveryFeatureOfAWideSaeIsRefusedAndTopKIsAdmitted) {
  SaeDescription sae;
  sae.name = "res0";
  sae.d_in = 768;
  sae.d_sae = 1 << 20;  // a million features
  EncodeSaeSpec spec;
  spec.tokens.assign(4096, 1);
  spec.top_k = 0;  // every active feature
  const absl::Status s = CheckRequestCost(EncodeSaeCost(spec, {sae}), Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("1 SAEs x 4096 positions x every feature"), std::string::npos) << s;
  spec.top_k = 64;
  spec.tokens.resize(256);
  EXPECT_TRUE(CheckRequestCost(EncodeSaeCost(spec, {sae}), Limits{}).ok());
  spec.top_k = 0;
  sae.k = 32;  // a top-k SAE has at most k active features
  EXPECT_TRUE(CheckRequestCost(EncodeSaeCost(spec, {sae}), Limits{}).ok());
}

TEST(RequestCostTest, AttributionNodesAreCountedAndTopNBoundsTheAnswer) {
  SaeDescription sae;
  sae.d_in = 768;
  sae.d_sae = 24576;
  NodeAttributionSpec spec;
  spec.tokens.assign(1024, 1);
  const RequestCost all = NodeAttributionCost(spec, Gpt2Small(), {sae, sae});
  EXPECT_NE(all.what.find(" nodes"), std::string::npos);
  EXPECT_FALSE(CheckRequestCost(all, Limits{}).ok());  // 50M nodes in one message
  spec.top_n = 1000;
  EXPECT_TRUE(CheckRequestCost(NodeAttributionCost(spec, Gpt2Small(), {sae, sae}), Limits{}).ok());
}

TEST(RequestCostTest, PerHeadLayerAttributionOverALongPromptIsRefusedForItsAttentionScores) {
  LayerAttributionSpec spec;
  spec.tokens.assign(1024, 1);
  EXPECT_TRUE(CheckRequestCost(LayerAttributionCost(spec, Gpt2Small()), Limits{}).ok());
  spec.per_head = true;
  spec.tokens.assign(256, 1);
  const RequestCost short_cost = LayerAttributionCost(spec, Gpt2Small());
  EXPECT_TRUE(CheckRequestCost(short_cost, Limits{}).ok());
  EXPECT_EQ(short_cost.what, "170 components x 256 positions per head");  // 26 + 12 x 12
  // 13 rows of 12 heads' [4096, 4096] scores: 10.5 GB over the default 4 GiB.
  spec.tokens.assign(4096, 1);
  const RequestCost cost = LayerAttributionCost(spec, Gpt2Small());
  EXPECT_GT(cost.work_bytes, int64_t{10000000000});
  const absl::Status s = CheckRequestCost(cost, Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("the work's tensors; 170 components x 4096 positions per head"),
            std::string::npos)
      << s;
  spec.per_head = false;
  spec.mode = LayerAttributionMode::kLogitLens;  // 13 residual streams, no per-head pass
  EXPECT_TRUE(CheckRequestCost(LayerAttributionCost(spec, Gpt2Small()), Limits{}).ok());
}

TEST(RequestCostTest, PatchingAttentionPatternsOfALongPromptIsRefused) {
  ActivationPatchingSpec spec;
  spec.clean.assign(64, 1);
  spec.corrupted.assign(64, 2);
  spec.sweeps = {{PatchingSite::kResidPre, false}, {PatchingSite::kHeadPattern, true}};
  EXPECT_TRUE(CheckRequestCost(PatchingCost(spec, Gpt2Small(), 912), Limits{}).ok());
  // The source run's patterns of every layer: 12 x 12 x 4096 x 4096 floats, 9.7 GB.
  spec.clean.assign(4096, 1);
  spec.corrupted.assign(4096, 2);
  spec.sweeps = {{PatchingSite::kHeadPattern, true}};
  const absl::Status s = CheckRequestCost(PatchingCost(spec, Gpt2Small(), 144), Limits{});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("144 patched runs over 4096 positions, 1 sweeps"), std::string::npos)
      << s;
  spec.sweeps = {{PatchingSite::kResidPre, true}};  // residual streams only: 1.5 GB
  EXPECT_TRUE(CheckRequestCost(PatchingCost(spec, Gpt2Small(), 12), Limits{}).ok());
}

TEST(RequestCostTest, RepeatedEntriesAreNamed) {
  const absl::Status s = CheckDistinct("positions", std::vector<int64_t>{0, 3, 0});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "positions: 0 is listed more than once; list each once");
  EXPECT_TRUE(CheckDistinct("layers", std::vector<int64_t>{0, 1, 2}).ok());
  const absl::Status names = CheckDistinct("saes", std::vector<std::string>{"a", "b", "a"});
  EXPECT_EQ(names.message(), "saes: \"a\" is listed more than once; list each once");
}

}  // namespace
}  // namespace lensd::server
