// OLMoE (model_type "olmoe"): the Llama-style decoder with q and k RMS-normalized over all heads'
// projection at once (q_norm [heads * head_dim], k_norm [kv_heads * head_dim]) before the rotary,
// optional clip_qkv, and a mixture of experts for each MLP: num_experts gated MLPs under
// mlp.experts.{e}, num_experts_per_tok chosen per position by the router mlp.gate, their
// probabilities rescaled only with norm_topk_prob, then rounded to the model's dtype (moe.h).
#include "core/engine/models/architectures.h"
#include "core/engine/models/llama.h"
#include "core/engine/models/moe.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<ModelConfig> ParseOlmoe(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "olmoe", false, 1e-5));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  c.qk_norm = QkNorm::kAcrossHeads;
  LENSD_ASSIGN_OR_RETURN(c.clip_qkv, json_fields::Double(j, "clip_qkv", 0.0, ""));
  if (c.clip_qkv < 0) {
    return absl::InvalidArgumentError("clip_qkv must be positive or null (no clipping)");
  }
  LENSD_RETURN_IF_ERROR(
      ParseMoe(j, "num_experts", "num_experts_per_tok", "norm_topk_prob", false, &c));
  c.expert_weights_in_float32 = false;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadOlmoe(const ModelConfig& c, WeightLoader* w) {
  return LoadLlamaStyleWith(c, w, {.experts = {"mlp.", "gate_proj", "up_proj", "down_proj"}});
}

}  // namespace

Architecture OlmoeArchitecture() { return {"olmoe", {"model.", ""}, ParseOlmoe, LoadOlmoe}; }

}  // namespace lensd::engine
