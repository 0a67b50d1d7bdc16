#include "core/engine/models/pre_norm_block.h"

#include <ATen/ATen.h>

#include <vector>

#include "core/status_macros.h"

namespace lensd::engine {

at::Tensor PreNormBlock(int64_t i, const at::Tensor& x, const PreNormLayer& l,
                        const AttentionOptions& attention, ForwardContext& ctx) {
  const ModelConfig& c = ctx.config();
  const int64_t b = x.size(0), t = x.size(1);
  const at::Tensor h = Norm(x, l.ln1, HookKind::kLn1Scale, HookKind::kLn1Normalized, i, ctx);
  const std::vector<at::Tensor> qkv = Linear(h, l.qkv_w, l.qkv_b).split(c.d_model, -1);
  const auto heads = [&](const at::Tensor& y) { return y.view({b, t, c.num_heads, c.head_dim}); };
  const at::Tensor q = ctx.Hook(HookKind::kAttnQ, i, heads(qkv[0]));
  const at::Tensor k = ctx.Hook(HookKind::kAttnK, i, heads(qkv[1]));
  const at::Tensor v = ctx.Hook(HookKind::kAttnV, i, heads(qkv[2]));
  const at::Tensor z = Attend(q, k, v, i, attention, ctx);
  const at::Tensor attn_out =
      ctx.Hook(HookKind::kAttnOut, i, Linear(z.reshape({b, t, c.d_model}), l.o_w, l.o_b));
  const at::Tensor mid = ctx.Hook(HookKind::kResidMid, i, x + attn_out);
  const at::Tensor h2 = Norm(mid, l.ln2, HookKind::kLn2Scale, HookKind::kLn2Normalized, i, ctx);
  const at::Tensor pre = ctx.Hook(HookKind::kMlpPre, i, Linear(h2, l.in_w, l.in_b));
  const at::Tensor post = ctx.Hook(HookKind::kMlpPost, i, Activation(c.activation, pre));
  return mid + ctx.Hook(HookKind::kMlpOut, i, Linear(post, l.out_w, l.out_b));
}

absl::StatusOr<NormWeights> LoadLayerNorm(WeightLoader* w, const std::string& name, int64_t d) {
  NormWeights n;
  LENSD_ASSIGN_OR_RETURN(n.weight, w->Get(name + ".weight", {d}));
  LENSD_ASSIGN_OR_RETURN(n.bias, w->Get(name + ".bias", {d}));
  return n;
}

LearnedPositionLm::LearnedPositionLm(const ModelConfig& config, int64_t bytes, at::Tensor wte,
                                     at::Tensor wpe, std::vector<PreNormLayer> layers,
                                     NormWeights ln_f, at::Tensor unembed, AttentionFor attention)
    : CausalLm(config, bytes, std::move(ln_f), std::move(unembed)),
      wte_(std::move(wte)),
      wpe_(std::move(wpe)),
      layers_(std::move(layers)),
      attention_(attention) {}

at::Tensor LearnedPositionLm::Embed(const at::Tensor& tokens, ForwardContext& ctx) const {
  const at::Tensor tok = ctx.Hook(HookKind::kEmbed, -1, at::embedding(wte_, tokens));
  const at::Tensor pos = ctx.Hook(HookKind::kPosEmbed, -1, at::embedding(wpe_, ctx.positions()));
  return tok + pos;
}

at::Tensor LearnedPositionLm::Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const {
  return PreNormBlock(i, x, layers_[static_cast<size_t>(i)], attention_(config(), i), ctx);
}

}  // namespace lensd::engine
