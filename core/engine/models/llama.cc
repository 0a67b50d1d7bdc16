// Llama 2 and 3 (model_type "llama", including "llama3" rope scaling and grouped-query
// attention), with Mistral (sliding window), Qwen2 (q/k/v biases, windowed upper layers) and Qwen3
// (per-head q/k RMSNorm after hook_q/hook_k and before the rotary, as TransformerLens places it;
// no biases by default) as variants of the same decoder.
#include "core/engine/models/llama.h"

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

struct LlamaLayer {
  NormWeights ln1, ln2;
  NormWeights ln1_post, ln2_post;  // with config.post_norms (Gemma 2 and 3, OLMo 2)
  at::Tensor q_norm, k_norm;       // [head_dim], or [heads * head_dim] across heads
  at::Tensor qkv_w, qkv_b;         // q | k | v stacked: [(heads + 2 kv_heads) * head_dim, d]
  at::Tensor o_w, o_b;
  at::Tensor gate_up_w, gate_up_b;  // gate | up stacked: [2 d_mlp, d]
  at::Tensor down_w, down_b;
  MoeWeights experts;  // with config.moe(), in place of the gated MLP
};

// The q/k norm of Qwen3, Gemma 3 (over each head's dimensions) or OLMo 2 (over all heads at once),
// in float32 with the model's kind of RMSNorm; `x` is [b, t, heads, head_dim].
at::Tensor QkNormalize(const at::Tensor& x, const at::Tensor& weight, const ModelConfig& c) {
  if (!weight.defined()) return x;
  const at::Tensor xf = (c.qk_norm == QkNorm::kAcrossHeads ? x.flatten(-2) : x).to(at::kFloat);
  const at::Tensor normalized = xf * at::rsqrt(xf.pow(2).mean(-1, true) + c.norm_eps);
  return WeighRms(normalized, weight, c.norm, x.scalar_type()).view(x.sizes());
}

// OLMoE's clip_qkv.
at::Tensor Clip(const at::Tensor& x, const ModelConfig& c) {
  return c.clip_qkv > 0 ? x.clamp(-c.clip_qkv, c.clip_qkv) : x;
}

class LlamaStyle : public CausalLm {
 public:
  LlamaStyle(const ModelConfig& config, int64_t bytes, at::Tensor embed,
             std::vector<LlamaLayer> layers, NormWeights norm, at::Tensor unembed)
      : CausalLm(config, bytes, std::move(norm), std::move(unembed)),
        embed_(std::move(embed)),
        layers_(std::move(layers)) {}

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override {
    at::Tensor x = at::embedding(embed_, tokens);
    if (config().embedding_scale != 1.0) {  // Gemma: sqrt(d) rounded to the model dtype
      x = x * at::scalar_tensor(config().embedding_scale, x.options());
    }
    return ctx.Hook(HookKind::kEmbed, -1, x);
  }

  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override {
    const ModelConfig& c = config();
    const LlamaLayer& l = layers_[static_cast<size_t>(i)];
    const int64_t b = x.size(0), t = x.size(1);
    const at::Tensor h =
        c.pre_norms ? Norm(x, l.ln1, HookKind::kLn1Scale, HookKind::kLn1Normalized, i, ctx) : x;
    const std::vector<at::Tensor> qkv =
        Linear(h, l.qkv_w, l.qkv_b)
            .split_with_sizes({c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim,
                               c.num_kv_heads * c.head_dim},
                              -1);
    const at::Tensor q =
        ctx.Hook(HookKind::kAttnQ, i, qkv[0].view({b, t, c.num_heads, c.head_dim}));
    const at::Tensor k =
        ctx.Hook(HookKind::kAttnK, i, qkv[1].view({b, t, c.num_kv_heads, c.head_dim}));
    const at::Tensor v =
        ctx.Hook(HookKind::kAttnV, i, Clip(qkv[2].view({b, t, c.num_kv_heads, c.head_dim}), c));
    const auto& rotary = ctx.Rotary(c.LocalRotaryAt(i));
    const at::Tensor rq =
        ctx.Hook(HookKind::kAttnRotQ, i,
                 ApplyRotary(Clip(QkNormalize(q, l.q_norm, c), c), rotary, c.rope.rotary_dim));
    const at::Tensor rk =
        ctx.Hook(HookKind::kAttnRotK, i,
                 ApplyRotary(Clip(QkNormalize(k, l.k_norm, c), c), rotary, c.rope.rotary_dim));
    const int64_t window = c.SlidingAt(i) ? c.sliding_window : 0;
    const at::Tensor z =
        Attend(rq, rk, v, i, {c.attention_scale, window, true, false, c.attn_softcap}, ctx);
    at::Tensor attn = Linear(z.reshape({b, t, c.num_heads * c.head_dim}), l.o_w, l.o_b);
    if (c.post_norms) {
      attn = Norm(attn, l.ln1_post, HookKind::kLn1PostScale, HookKind::kLn1PostNormalized, i, ctx);
    }
    const at::Tensor attn_out = ctx.Hook(HookKind::kAttnOut, i, attn);
    const at::Tensor mid = ctx.Hook(HookKind::kResidMid, i, x + attn_out);
    const at::Tensor h2 =
        c.pre_norms ? Norm(mid, l.ln2, HookKind::kLn2Scale, HookKind::kLn2Normalized, i, ctx) : mid;
    at::Tensor mlp = c.moe() ? MoeMlp(i, h2, l.experts, ctx) : GatedMlp(i, h2, l, ctx);
    if (c.post_norms) {
      mlp = Norm(mlp, l.ln2_post, HookKind::kLn2PostScale, HookKind::kLn2PostNormalized, i, ctx);
    }
    return mid + ctx.Hook(HookKind::kMlpOut, i, mlp);
  }

 private:
  static at::Tensor GatedMlp(int64_t i, const at::Tensor& h, const LlamaLayer& l,
                             ForwardContext& ctx) {
    const ModelConfig& c = ctx.config();
    const std::vector<at::Tensor> gate_up = Linear(h, l.gate_up_w, l.gate_up_b).split(c.d_mlp, -1);
    const at::Tensor pre = ctx.Hook(HookKind::kMlpPre, i, gate_up[0]);
    const at::Tensor pre_linear = ctx.Hook(HookKind::kMlpPreLinear, i, gate_up[1]);
    const at::Tensor post =
        ctx.Hook(HookKind::kMlpPost, i, Activation(c.activation, pre) * pre_linear);
    return Linear(post, l.down_w, l.down_b);
  }

  at::Tensor embed_;
  std::vector<LlamaLayer> layers_;
};

absl::StatusOr<ModelConfig> ParseLlama(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "llama", false, 1e-6));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  LENSD_ASSIGN_OR_RETURN(c.mlp_bias, json_fields::Bool(j, "mlp_bias", false, ""));
  return c;
}

absl::StatusOr<ModelConfig> ParseMistral(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "mistral", false, 1e-6));
  LENSD_ASSIGN_OR_RETURN(c.sliding_window, json_fields::Int(j, "sliding_window", 0, ""));
  return c;
}

// Qwen2's and Qwen3's windows, as transformers 5.x: no window unless use_sliding_window; then
// the layers that layer_types names "sliding_attention", or without that list, the layers from
// max_window_layers on.
absl::Status ParseQwenWindows(const nlohmann::json& j, ModelConfig* c) {
  LENSD_ASSIGN_OR_RETURN(const bool windowed,
                         json_fields::Bool(j, "use_sliding_window", false, ""));
  if (!windowed) return absl::OkStatus();
  LENSD_ASSIGN_OR_RETURN(c->sliding_window, json_fields::Int(j, "sliding_window", 0, ""));
  if (json_fields::Has(j, "layer_types")) {
    LENSD_ASSIGN_OR_RETURN(c->sliding_layers, ParseLayerTypes(j, c->num_layers));
    return absl::OkStatus();
  }
  LENSD_ASSIGN_OR_RETURN(const int64_t first, json_fields::Int(j, "max_window_layers", 28, ""));
  for (int64_t i = 0; i < c->num_layers; ++i) c->sliding_layers.push_back(i >= first);
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseQwen2(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "qwen2", false, 1e-6));
  c.qkv_bias = true;
  LENSD_RETURN_IF_ERROR(ParseQwenWindows(j, &c));
  return c;
}

absl::StatusOr<ModelConfig> ParseQwen3(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "qwen3", false, 1e-6));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  c.qk_norm = QkNorm::kPerHead;
  LENSD_RETURN_IF_ERROR(ParseQwenWindows(j, &c));
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseLlamaStyleConfig(const nlohmann::json& j,
                                                  absl::string_view model_type, bool default_tied,
                                                  double default_eps,
                                                  const RopeDefaults& rope_defaults) {
  ModelConfig c;
  c.model_type = std::string(model_type);
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "hidden_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "num_hidden_layers", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "num_attention_heads", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_kv_heads,
                         json_fields::Int(j, "num_key_value_heads", c.num_heads, ""));
  LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "intermediate_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "max_position_embeddings", 2048, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "rms_norm_eps", default_eps, ""));
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings,
                         json_fields::Bool(j, "tie_word_embeddings", default_tied, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation, json_fields::OptionalString(j, "hidden_act", ""));
  c.activation = activation.value_or("silu");
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  if (c.num_heads <= 0) return absl::InvalidArgumentError("num_attention_heads must be positive");
  LENSD_ASSIGN_OR_RETURN(c.head_dim, json_fields::Int(j, "head_dim", c.d_model / c.num_heads, ""));
  c.attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  c.norm = NormKind::kRmsNorm;
  c.gated_mlp = true;
  c.rotary = true;
  LENSD_ASSIGN_OR_RETURN(c.rope, ParseRope(j, rope_defaults, c.head_dim));
  return c;
}

namespace {

// Block i's weights: q, k, v stacked from three tensors or one fused qkv_proj (Phi-3), likewise
// gate and up; the norms the config has; biases where it says so.
absl::StatusOr<LlamaLayer> LoadLlamaLayer(const ModelConfig& c, WeightLoader* w, int64_t i,
                                          const LlamaLayout& layout) {
  const int64_t d = c.d_model, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const auto optional_bias = [&](const std::vector<std::string>& names,
                                 const std::vector<int64_t>& sizes,
                                 bool present) -> absl::StatusOr<at::Tensor> {
    if (!present) return at::Tensor();
    std::vector<std::vector<int64_t>> shapes;
    shapes.reserve(sizes.size());
    for (int64_t n : sizes) shapes.push_back({n});
    return w->GetStacked(names, shapes);
  };
  const std::string p = absl::StrCat("layers.", i, ".");
  const std::string a = p + "self_attn.", m = p + "mlp.";
  LlamaLayer l;
  if (c.pre_norms) {
    LENSD_ASSIGN_OR_RETURN(l.ln1.weight, w->Get(p + "input_layernorm.weight", {d}));
  }
  if (c.post_norms) {  // Gemma 2 names the norm after attention post_attention_layernorm
    LENSD_ASSIGN_OR_RETURN(l.ln1_post.weight, w->Get(p + "post_attention_layernorm.weight", {d}));
    LENSD_ASSIGN_OR_RETURN(l.ln2_post.weight, w->Get(p + "post_feedforward_layernorm.weight", {d}));
    if (c.pre_norms) {
      LENSD_ASSIGN_OR_RETURN(l.ln2.weight, w->Get(p + "pre_feedforward_layernorm.weight", {d}));
    }
  } else {
    LENSD_ASSIGN_OR_RETURN(l.ln2.weight, w->Get(p + "post_attention_layernorm.weight", {d}));
  }
  if (layout.fused) {
    LENSD_ASSIGN_OR_RETURN(l.qkv_w, w->Get(a + "qkv_proj.weight", {q + 2 * kv, d}));
  } else {
    LENSD_ASSIGN_OR_RETURN(
        l.qkv_w, w->GetStacked({a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"},
                               {{q, d}, {kv, d}, {kv, d}}));
  }
  if (c.moe()) {
    LENSD_ASSIGN_OR_RETURN(l.experts, LoadMoe(c, w, i, layout.experts));
  } else if (layout.fused) {
    LENSD_ASSIGN_OR_RETURN(l.gate_up_w, w->Get(m + "gate_up_proj.weight", {2 * c.d_mlp, d}));
  } else {
    LENSD_ASSIGN_OR_RETURN(l.gate_up_w,
                           w->GetStacked({m + "gate_proj.weight", m + "up_proj.weight"},
                                         {{c.d_mlp, d}, {c.d_mlp, d}}));
  }
  LENSD_ASSIGN_OR_RETURN(
      l.qkv_b, optional_bias({a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"}, {q, kv, kv},
                             c.qkv_bias));
  if (c.qk_norm != QkNorm::kNone) {
    const bool across = c.qk_norm == QkNorm::kAcrossHeads;
    LENSD_ASSIGN_OR_RETURN(l.q_norm, w->Get(a + "q_norm.weight", {across ? q : c.head_dim}));
    LENSD_ASSIGN_OR_RETURN(l.k_norm, w->Get(a + "k_norm.weight", {across ? kv : c.head_dim}));
  }
  LENSD_ASSIGN_OR_RETURN(l.o_w, w->Get(a + "o_proj.weight", {d, q}));
  LENSD_ASSIGN_OR_RETURN(l.o_b, optional_bias({a + "o_proj.bias"}, {d}, c.attn_out_bias));
  if (c.moe()) return l;
  LENSD_ASSIGN_OR_RETURN(l.gate_up_b, optional_bias({m + "gate_proj.bias", m + "up_proj.bias"},
                                                    {c.d_mlp, c.d_mlp}, c.mlp_bias));
  LENSD_ASSIGN_OR_RETURN(l.down_w, w->Get(m + "down_proj.weight", {d, c.d_mlp}));
  LENSD_ASSIGN_OR_RETURN(l.down_b, optional_bias({m + "down_proj.bias"}, {d}, c.mlp_bias));
  return l;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlamaStyleWith(const ModelConfig& c, WeightLoader* w,
                                                             const LlamaLayout& layout) {
  const int64_t d = c.d_model;
  LENSD_ASSIGN_OR_RETURN(at::Tensor embed, w->Get("embed_tokens.weight", {c.vocab_size, d}));
  std::vector<LlamaLayer> layers;
  layers.reserve(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LENSD_ASSIGN_OR_RETURN(LlamaLayer layer, LoadLlamaLayer(c, w, i, layout));
    layers.push_back(std::move(layer));
  }
  NormWeights norm;
  LENSD_ASSIGN_OR_RETURN(norm.weight, w->Get("norm.weight", {d}));
  at::Tensor unembed = embed;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("lm_head.weight", {c.vocab_size, d}));
  }
  return std::unique_ptr<CausalLm>(
      std::make_unique<LlamaStyle>(c, w->bytes_loaded(), std::move(embed), std::move(layers),
                                   std::move(norm), std::move(unembed)));
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlamaStyle(const ModelConfig& c, WeightLoader* w) {
  return LoadLlamaStyleWith(c, w, LlamaLayout{});
}

Architecture LlamaArchitecture() { return {"llama", {"model.", ""}, ParseLlama, LoadLlamaStyle}; }
Architecture MistralArchitecture() {
  return {"mistral", {"model.", ""}, ParseMistral, LoadLlamaStyle};
}
Architecture Qwen2Architecture() { return {"qwen2", {"model.", ""}, ParseQwen2, LoadLlamaStyle}; }
Architecture Qwen3Architecture() { return {"qwen3", {"model.", ""}, ParseQwen3, LoadLlamaStyle}; }

}  // namespace lensd::engine
