// GPT-NeoX / Pythia (model_type "gpt_neox"): LayerNorm blocks, fused q|k|v interleaved per head,
// partial rotary embedding (rotary_pct, or 5.x's partial_rotary_factor, of each head), parallel
// residual by default (x + attn(ln1(x)) + mlp(ln2(x))), untied embed_out without bias.
#include <ATen/ATen.h>

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/ops.h"
#include "core/engine/models/architectures.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

struct NeoxLayer {
  NormWeights ln1, ln2;
  at::Tensor qkv_w, qkv_b, dense_w, dense_b, up_w, up_b, down_w, down_b;
};

class GptNeox : public CausalLm {
 public:
  GptNeox(const ModelConfig& config, int64_t bytes, at::Tensor embed, std::vector<NeoxLayer> layers,
          NormWeights final_norm, at::Tensor unembed)
      : CausalLm(config, bytes, std::move(final_norm), std::move(unembed)),
        embed_(std::move(embed)),
        layers_(std::move(layers)) {}

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override {
    return ctx.Hook(HookKind::kEmbed, -1, at::embedding(embed_, tokens));
  }

  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override {
    const ModelConfig& c = config();
    const NeoxLayer& l = layers_[static_cast<size_t>(i)];
    const int64_t b = x.size(0), t = x.size(1);
    const at::Tensor h = Norm(x, l.ln1, HookKind::kLn1Scale, HookKind::kLn1Normalized, i, ctx);
    // Per head: [q | k | v], each head_dim wide.
    const std::vector<at::Tensor> qkv =
        Linear(h, l.qkv_w, l.qkv_b).view({b, t, c.num_heads, 3 * c.head_dim}).split(c.head_dim, -1);
    const at::Tensor q = ctx.Hook(HookKind::kAttnQ, i, qkv[0]);
    const at::Tensor k = ctx.Hook(HookKind::kAttnK, i, qkv[1]);
    const at::Tensor v = ctx.Hook(HookKind::kAttnV, i, qkv[2]);
    const auto& rotary = ctx.Rotary();
    const at::Tensor rq =
        ctx.Hook(HookKind::kAttnRotQ, i, ApplyRotary(q, rotary, c.rope.rotary_dim));
    const at::Tensor rk =
        ctx.Hook(HookKind::kAttnRotK, i, ApplyRotary(k, rotary, c.rope.rotary_dim));
    const at::Tensor z = Attend(rq, rk, v, i, {c.attention_scale, 0, true}, ctx);
    const at::Tensor attn_out =
        ctx.Hook(HookKind::kAttnOut, i, Linear(z.reshape({b, t, c.d_model}), l.dense_w, l.dense_b));
    const at::Tensor mlp_in =
        c.parallel_residual ? x : ctx.Hook(HookKind::kResidMid, i, x + attn_out);
    const at::Tensor h2 =
        Norm(mlp_in, l.ln2, HookKind::kLn2Scale, HookKind::kLn2Normalized, i, ctx);
    const at::Tensor pre = ctx.Hook(HookKind::kMlpPre, i, Linear(h2, l.up_w, l.up_b));
    const at::Tensor post = ctx.Hook(HookKind::kMlpPost, i, Activation(c.activation, pre));
    const at::Tensor mlp_out = ctx.Hook(HookKind::kMlpOut, i, Linear(post, l.down_w, l.down_b));
    return c.parallel_residual ? mlp_out + attn_out + x : mlp_out + mlp_in;
  }

 private:
  at::Tensor embed_;
  std::vector<NeoxLayer> layers_;
};

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "gpt_neox";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "hidden_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "num_hidden_layers", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "num_attention_heads", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "intermediate_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "max_position_embeddings", 2048, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "layer_norm_eps", 1e-5, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation, json_fields::OptionalString(j, "hidden_act", ""));
  c.activation = activation.value_or("gelu");
  LENSD_ASSIGN_OR_RETURN(c.parallel_residual,
                         json_fields::Bool(j, "use_parallel_residual", true, ""));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", true, ""));
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", false, ""));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, "hidden_size", "num_attention_heads"));
  c.attn_out_bias = c.qkv_bias;
  c.mlp_bias = true;
  c.norm = NormKind::kLayerNorm;
  c.rotary = true;
  // 4.x: rotary_pct and rotary_emb_base; 5.x: rope_parameters.partial_rotary_factor, rope_theta.
  LENSD_ASSIGN_OR_RETURN(c.rope, ParseRope(j,
                                           {.theta_key = "rotary_emb_base",
                                            .theta = 10000.0,
                                            .fraction_key = "rotary_pct",
                                            .fraction = 0.25},
                                           c.head_dim));
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model;
  const auto norm = [&](const std::string& name) -> absl::StatusOr<NormWeights> {
    NormWeights n;
    LENSD_ASSIGN_OR_RETURN(n.weight, w->Get(name + ".weight", {d}));
    LENSD_ASSIGN_OR_RETURN(n.bias, w->Get(name + ".bias", {d}));
    return n;
  };
  const auto bias = [&](const std::string& name, int64_t n,
                        bool present) -> absl::StatusOr<at::Tensor> {
    if (!present) return at::Tensor();
    return w->Get(name, {n});
  };
  LENSD_ASSIGN_OR_RETURN(at::Tensor embed, w->Get("embed_in.weight", {c.vocab_size, d}));
  std::vector<NeoxLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    NeoxLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, norm(p + "input_layernorm"));
    LENSD_ASSIGN_OR_RETURN(l.ln2, norm(p + "post_attention_layernorm"));
    LENSD_ASSIGN_OR_RETURN(l.qkv_w, w->Get(p + "attention.query_key_value.weight", {3 * d, d}));
    LENSD_ASSIGN_OR_RETURN(l.qkv_b, bias(p + "attention.query_key_value.bias", 3 * d, c.qkv_bias));
    LENSD_ASSIGN_OR_RETURN(l.dense_w, w->Get(p + "attention.dense.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.dense_b, bias(p + "attention.dense.bias", d, c.attn_out_bias));
    LENSD_ASSIGN_OR_RETURN(l.up_w, w->Get(p + "mlp.dense_h_to_4h.weight", {c.d_mlp, d}));
    LENSD_ASSIGN_OR_RETURN(l.up_b, w->Get(p + "mlp.dense_h_to_4h.bias", {c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.down_w, w->Get(p + "mlp.dense_4h_to_h.weight", {d, c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.down_b, w->Get(p + "mlp.dense_4h_to_h.bias", {d}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights final_norm, norm("final_layer_norm"));
  at::Tensor unembed = embed;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("embed_out.weight", {c.vocab_size, d}));
  }
  return std::unique_ptr<CausalLm>(
      std::make_unique<GptNeox>(c, w->bytes_loaded(), std::move(embed), std::move(layers),
                                std::move(final_norm), std::move(unembed)));
}

}  // namespace

Architecture GptNeoxArchitecture() { return {"gpt_neox", {"gpt_neox.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
