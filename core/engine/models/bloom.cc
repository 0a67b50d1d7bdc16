// BLOOM (model_type "bloom"): no position embeddings but ALiBi (a per-head bias on each key's
// position, ForwardContext::AlibiMask), a LayerNorm after the word embeddings (hook_embed is
// after it, where TransformerLens puts it, so the stream entering block 0 is hook_embed), fused
// q | k | v interleaved per head, softmax in float32, BLOOM's tanh GELU, the head tied to the
// embeddings. apply_residual_connection_post_layernorm (the residual taken after each norm)
// is followed.
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

class Bloom : public CausalLm {
 public:
  Bloom(const ModelConfig& config, int64_t bytes, at::Tensor embed, NormWeights embed_norm,
        std::vector<PreNormLayer> layers, NormWeights ln_f, at::Tensor unembed)
      : CausalLm(config, bytes, std::move(ln_f), std::move(unembed)),
        embed_(std::move(embed)),
        embed_norm_(std::move(embed_norm)),
        layers_(std::move(layers)) {}

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override {
    const ModelConfig& c = config();
    return ctx.Hook(HookKind::kEmbed, -1,
                    at::layer_norm(at::embedding(embed_, tokens), {c.d_model}, embed_norm_.weight,
                                   embed_norm_.bias, c.norm_eps));
  }

  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override {
    const ModelConfig& c = config();
    const PreNormLayer& l = layers_[static_cast<size_t>(i)];
    const int64_t b = x.size(0), t = x.size(1);
    const at::Tensor h = Norm(x, l.ln1, HookKind::kLn1Scale, HookKind::kLn1Normalized, i, ctx);
    // Per head: [q | k | v], each head_dim wide.
    const std::vector<at::Tensor> qkv =
        Linear(h, l.qkv_w, l.qkv_b).view({b, t, c.num_heads, 3 * c.head_dim}).split(c.head_dim, -1);
    const at::Tensor q = ctx.Hook(HookKind::kAttnQ, i, qkv[0]);
    const at::Tensor k = ctx.Hook(HookKind::kAttnK, i, qkv[1]);
    const at::Tensor v = ctx.Hook(HookKind::kAttnV, i, qkv[2]);
    const at::Tensor z = Attend(q, k, v, i, {c.attention_scale, 0, true, true}, ctx);
    const at::Tensor attn_out =
        ctx.Hook(HookKind::kAttnOut, i, Linear(z.reshape({b, t, c.d_model}), l.o_w, l.o_b));
    const at::Tensor mid =
        ctx.Hook(HookKind::kResidMid, i, (c.residual_after_norm ? h : x) + attn_out);
    const at::Tensor h2 = Norm(mid, l.ln2, HookKind::kLn2Scale, HookKind::kLn2Normalized, i, ctx);
    const at::Tensor pre = ctx.Hook(HookKind::kMlpPre, i, Linear(h2, l.in_w, l.in_b));
    const at::Tensor post = ctx.Hook(HookKind::kMlpPost, i, Activation(c.activation, pre));
    const at::Tensor mlp_out = ctx.Hook(HookKind::kMlpOut, i, Linear(post, l.out_w, l.out_b));
    return (c.residual_after_norm ? h2 : mid) + mlp_out;
  }

 private:
  at::Tensor embed_;
  NormWeights embed_norm_;
  std::vector<PreNormLayer> layers_;
};

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "bloom";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", 250880, ""));
  // Older configs name the width n_embed.
  const char* width = j.contains("hidden_size") ? "hidden_size" : "n_embed";
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, width, 64, ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "n_layer", 2, ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "n_head", 8, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "layer_norm_epsilon", 1e-5, ""));
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", true, ""));
  LENSD_ASSIGN_OR_RETURN(
      c.residual_after_norm,
      json_fields::Bool(j, "apply_residual_connection_post_layernorm", false, ""));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, width, "n_head"));
  // ALiBi has no position table; max_positions only bounds generation's defaults.
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "seq_length", 2048, ""));
  c.d_mlp = 4 * c.d_model;
  c.activation = "gelu_new";  // BLOOM's tanh approximation (0.79788456 for sqrt(2 / pi))
  c.alibi = true;
  c.qkv_bias = true;
  c.attn_out_bias = true;
  c.mlp_bias = true;
  c.norm = NormKind::kLayerNorm;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model;
  LENSD_ASSIGN_OR_RETURN(at::Tensor embed, w->Get("word_embeddings.weight", {c.vocab_size, d}));
  LENSD_ASSIGN_OR_RETURN(NormWeights embed_norm, LoadLayerNorm(w, "word_embeddings_layernorm", d));
  std::vector<PreNormLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("h.", i, ".");
    PreNormLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, LoadLayerNorm(w, p + "input_layernorm", d));
    LENSD_ASSIGN_OR_RETURN(l.ln2, LoadLayerNorm(w, p + "post_attention_layernorm", d));
    const std::string attn = p + "self_attention.";
    LENSD_ASSIGN_OR_RETURN(l.qkv_w, w->Get(attn + "query_key_value.weight", {3 * d, d}));
    LENSD_ASSIGN_OR_RETURN(l.qkv_b, w->Get(attn + "query_key_value.bias", {3 * d}));
    LENSD_ASSIGN_OR_RETURN(l.o_w, w->Get(attn + "dense.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.o_b, w->Get(attn + "dense.bias", {d}));
    LENSD_ASSIGN_OR_RETURN(l.in_w, w->Get(p + "mlp.dense_h_to_4h.weight", {c.d_mlp, d}));
    LENSD_ASSIGN_OR_RETURN(l.in_b, w->Get(p + "mlp.dense_h_to_4h.bias", {c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_w, w->Get(p + "mlp.dense_4h_to_h.weight", {d, c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_b, w->Get(p + "mlp.dense_4h_to_h.bias", {d}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights ln_f, LoadLayerNorm(w, "ln_f", d));
  at::Tensor unembed = embed;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("lm_head.weight", {c.vocab_size, d}));
  }
  return std::unique_ptr<CausalLm>(std::make_unique<Bloom>(c, w->bytes_loaded(), std::move(embed),
                                                           std::move(embed_norm), std::move(layers),
                                                           std::move(ln_f), std::move(unembed)));
}

}  // namespace

Architecture BloomArchitecture() { return {"bloom", {"transformer.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
