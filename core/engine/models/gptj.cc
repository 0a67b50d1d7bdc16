// GPT-J (model_type "gptj"): one LayerNorm feeding attention and MLP in parallel
// (x + attn(ln_1(x)) + mlp(ln_1(x))), bias-free q, k, v and output projections, the interleaved
// rotary on the first rotary_dim dimensions of each head (2i pairs with 2i + 1), softmax in
// float32, and an untied lm_head with a bias. TransformerLens gives the block ln2 hook points
// computing the same norm; they run (from the block's input, as TransformerLens computes them)
// only when someone hooks ln1 or ln2.
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

struct GptjLayer {
  NormWeights ln1;
  at::Tensor q_w, k_w, v_w, o_w;
  at::Tensor in_w, in_b, out_w, out_b;
};

class Gptj : public CausalLm {
 public:
  Gptj(const ModelConfig& config, int64_t bytes, at::Tensor wte, std::vector<GptjLayer> layers,
       NormWeights ln_f, at::Tensor lm_head, at::Tensor lm_head_bias)
      : CausalLm(config, bytes, std::move(ln_f), std::move(lm_head), std::move(lm_head_bias)),
        wte_(std::move(wte)),
        layers_(std::move(layers)) {}

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override {
    return ctx.Hook(HookKind::kEmbed, -1, at::embedding(wte_, tokens));
  }

  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override {
    const ModelConfig& c = config();
    const GptjLayer& l = layers_[static_cast<size_t>(i)];
    const int64_t b = x.size(0), t = x.size(1);
    const at::Tensor h = Norm(x, l.ln1, HookKind::kLn1Scale, HookKind::kLn1Normalized, i, ctx);
    const auto heads = [&](const at::Tensor& y) { return y.view({b, t, c.num_heads, c.head_dim}); };
    const at::Tensor q = ctx.Hook(HookKind::kAttnQ, i, heads(at::linear(h, l.q_w)));
    const at::Tensor k = ctx.Hook(HookKind::kAttnK, i, heads(at::linear(h, l.k_w)));
    const at::Tensor v = ctx.Hook(HookKind::kAttnV, i, heads(at::linear(h, l.v_w)));
    const auto& rotary = ctx.Rotary();
    const int64_t dim = c.rope.rotary_dim;
    const at::Tensor rq = ctx.Hook(HookKind::kAttnRotQ, i, ApplyInterleavedRotary(q, rotary, dim));
    const at::Tensor rk = ctx.Hook(HookKind::kAttnRotK, i, ApplyInterleavedRotary(k, rotary, dim));
    const at::Tensor z = Attend(rq, rk, v, i, {c.attention_scale, 0, true}, ctx);
    const at::Tensor attn_out =
        ctx.Hook(HookKind::kAttnOut, i, at::linear(z.reshape({b, t, c.d_model}), l.o_w));
    const bool norms_hooked =
        ctx.Wants(HookKind::kLn1Scale, i) || ctx.Wants(HookKind::kLn1Normalized, i) ||
        ctx.Wants(HookKind::kLn2Scale, i) || ctx.Wants(HookKind::kLn2Normalized, i);
    const at::Tensor h2 =
        norms_hooked ? Norm(x, l.ln1, HookKind::kLn2Scale, HookKind::kLn2Normalized, i, ctx) : h;
    const at::Tensor pre = ctx.Hook(HookKind::kMlpPre, i, Linear(h2, l.in_w, l.in_b));
    const at::Tensor post = ctx.Hook(HookKind::kMlpPost, i, Activation(c.activation, pre));
    const at::Tensor mlp_out = ctx.Hook(HookKind::kMlpOut, i, Linear(post, l.out_w, l.out_b));
    return attn_out + mlp_out + x;
  }

 private:
  at::Tensor wte_;
  std::vector<GptjLayer> layers_;
};

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "gptj";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", 50400, ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "n_embd", 4096, ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "n_layer", 28, ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "n_head", 16, ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "n_positions", 2048, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "layer_norm_epsilon", 1e-5, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation,
                         json_fields::OptionalString(j, "activation_function", ""));
  c.activation = activation.value_or("gelu_new");
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", false, ""));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, "n_embd", "n_head"));
  const auto inner = j.find("n_inner");
  if (inner == j.end() || inner->is_null()) {
    c.d_mlp = 4 * c.d_model;
  } else {
    LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "n_inner", ""));
  }
  const auto rotary_dim = j.find("rotary_dim");
  if (rotary_dim != j.end() && rotary_dim->is_null()) {
    return absl::InvalidArgumentError(
        "rotary_dim: null (rotating a hidden_size-wide table over each head) is not supported; "
        "give the rotated dimensions of each head, an even number <= n_embd / n_head");
  }
  LENSD_ASSIGN_OR_RETURN(c.rope.rotary_dim, json_fields::Int(j, "rotary_dim", 64, ""));
  if (c.rope.rotary_dim <= 0 || c.rope.rotary_dim % 2 != 0 || c.rope.rotary_dim > c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("rotary_dim: ", c.rope.rotary_dim,
                                                   " must be even and in 2..", c.head_dim,
                                                   " (n_embd / n_head)"));
  }
  c.rope.interleaved = true;
  c.rotary = true;
  c.parallel_residual = true;
  c.mlp_bias = true;
  c.norm = NormKind::kLayerNorm;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model;
  LENSD_ASSIGN_OR_RETURN(at::Tensor wte, w->Get("wte.weight", {c.vocab_size, d}));
  std::vector<GptjLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("h.", i, ".");
    GptjLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, LoadLayerNorm(w, p + "ln_1", d));
    LENSD_ASSIGN_OR_RETURN(l.q_w, w->Get(p + "attn.q_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.k_w, w->Get(p + "attn.k_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.v_w, w->Get(p + "attn.v_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.o_w, w->Get(p + "attn.out_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.in_w, w->Get(p + "mlp.fc_in.weight", {c.d_mlp, d}));
    LENSD_ASSIGN_OR_RETURN(l.in_b, w->Get(p + "mlp.fc_in.bias", {c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_w, w->Get(p + "mlp.fc_out.weight", {d, c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_b, w->Get(p + "mlp.fc_out.bias", {d}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights ln_f, LoadLayerNorm(w, "ln_f", d));
  at::Tensor lm_head = wte;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(lm_head, w->Get("lm_head.weight", {c.vocab_size, d}));
  }
  LENSD_ASSIGN_OR_RETURN(at::Tensor lm_head_bias, w->Get("lm_head.bias", {c.vocab_size}));
  return std::unique_ptr<CausalLm>(
      std::make_unique<Gptj>(c, w->bytes_loaded(), std::move(wte), std::move(layers),
                             std::move(ln_f), std::move(lm_head), std::move(lm_head_bias)));
}

}  // namespace

Architecture GptjArchitecture() { return {"gptj", {"transformer.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
