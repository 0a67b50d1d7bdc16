// GPT-2 (model_type "gpt2"): learned absolute positions, pre-LayerNorm blocks (pre_norm_block.h),
// fused q|k|v projection stored as Conv1D [in, out], tanh GELU, tied unembedding by default.
#include <ATen/ATen.h>

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/ops.h"
#include "core/engine/models/architectures.h"
#include "core/engine/models/pre_norm_block.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

// Scaled attention, by the inverse layer index too when the config asks.
AttentionOptions Gpt2Attention(const ModelConfig& c, int64_t i) {
  double scale = c.attention_scale;
  if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(i + 1);
  return {scale, 0, false};
}

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "gpt2";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "n_positions", 1024, ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "n_embd", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "n_layer", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "n_head", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "n_inner", 4 * c.d_model, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "layer_norm_epsilon", 1e-5, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation,
                         json_fields::OptionalString(j, "activation_function", ""));
  c.activation = activation.value_or("gelu_new");
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", true, ""));
  LENSD_ASSIGN_OR_RETURN(const bool scale_weights,
                         json_fields::Bool(j, "scale_attn_weights", true, ""));
  LENSD_ASSIGN_OR_RETURN(c.scale_attn_by_inverse_layer_idx,
                         json_fields::Bool(j, "scale_attn_by_inverse_layer_idx", false, ""));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, "n_embd", "n_head"));
  if (!scale_weights) c.attention_scale = 1.0;
  c.norm = NormKind::kLayerNorm;
  c.absolute_positions = true;
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model;
  // Conv1D stores [in, out]; the engine multiplies by [out, in].
  const auto conv = [&](const std::string& name, int64_t in, int64_t out) {
    return w->GetTransposed(name, in, out);
  };
  const auto norm = [&](const std::string& name) { return LoadLayerNorm(w, name, d); };
  LENSD_ASSIGN_OR_RETURN(at::Tensor wte, w->Get("wte.weight", {c.vocab_size, d}));
  LENSD_ASSIGN_OR_RETURN(at::Tensor wpe, w->Get("wpe.weight", {c.max_positions, d}));
  std::vector<PreNormLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("h.", i, ".");
    PreNormLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, norm(p + "ln_1"));
    LENSD_ASSIGN_OR_RETURN(l.qkv_w, conv(p + "attn.c_attn.weight", d, 3 * d));
    LENSD_ASSIGN_OR_RETURN(l.qkv_b, w->Get(p + "attn.c_attn.bias", {3 * d}));
    LENSD_ASSIGN_OR_RETURN(l.o_w, conv(p + "attn.c_proj.weight", d, d));
    LENSD_ASSIGN_OR_RETURN(l.o_b, w->Get(p + "attn.c_proj.bias", {d}));
    LENSD_ASSIGN_OR_RETURN(l.ln2, norm(p + "ln_2"));
    LENSD_ASSIGN_OR_RETURN(l.in_w, conv(p + "mlp.c_fc.weight", d, c.d_mlp));
    LENSD_ASSIGN_OR_RETURN(l.in_b, w->Get(p + "mlp.c_fc.bias", {c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_w, conv(p + "mlp.c_proj.weight", c.d_mlp, d));
    LENSD_ASSIGN_OR_RETURN(l.out_b, w->Get(p + "mlp.c_proj.bias", {d}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights ln_f, norm("ln_f"));
  at::Tensor unembed = wte;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("lm_head.weight", {c.vocab_size, d}));
  }
  return std::unique_ptr<CausalLm>(std::make_unique<LearnedPositionLm>(
      c, w->bytes_loaded(), std::move(wte), std::move(wpe), std::move(layers), std::move(ln_f),
      std::move(unembed), &Gpt2Attention));
}

}  // namespace

Architecture Gpt2Architecture() { return {"gpt2", {"transformer.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
