#include "core/engine/model/ops.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>
#include <vector>

#include "core/engine/model/onednn_linear.h"

namespace lensd::engine {

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (OneDnnLinearApplies(x, w, b)) return OneDnnLinear(x, w, b);
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

bool IsSupportedActivation(absl::string_view name) {
  return name == "gelu" || name == "gelu_new" || name == "gelu_pytorch_tanh" ||
         name == "gelu_fast" || name == "quick_gelu" || name == "silu" || name == "swish" ||
         name == "relu";
}

at::Tensor Activation(absl::string_view name, const at::Tensor& x) {
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    return at::gelu(x, "tanh");
  }
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "relu") return at::relu(x);
  return at::silu(x);
}

at::Tensor Norm(const at::Tensor& x, const NormWeights& w, HookKind scale_kind,
                HookKind normalized_kind, int64_t layer, ForwardContext& ctx) {
  const ModelConfig& c = ctx.config();
  const bool hooked = ctx.Wants(scale_kind, layer) || ctx.Wants(normalized_kind, layer);
  if (c.norm == NormKind::kLayerNorm) {
    if (!hooked) return at::layer_norm(x, {x.size(-1)}, w.weight, w.bias, c.norm_eps);
    const at::Tensor centered = x - x.mean(-1, true);
    at::Tensor inv = at::rsqrt(centered.pow(2).mean(-1, true) + c.norm_eps);
    const at::Tensor scale = inv.reciprocal();
    const at::Tensor hooked_scale = ctx.Hook(scale_kind, layer, scale);
    if (!hooked_scale.is_same(scale)) inv = hooked_scale.reciprocal();
    const at::Tensor normalized = ctx.Hook(normalized_kind, layer, centered * inv);
    return w.bias.defined() ? normalized * w.weight + w.bias : normalized * w.weight;
  }
  // RMS norms compute in float32 whatever the model dtype.
  const at::Tensor xf = x.to(at::kFloat);
  at::Tensor inv = at::rsqrt(xf.pow(2).mean(-1, true) + c.norm_eps);
  if (hooked) {
    const at::Tensor scale = inv.reciprocal();
    const at::Tensor hooked_scale = ctx.Hook(scale_kind, layer, scale);
    if (!hooked_scale.is_same(scale)) inv = hooked_scale.reciprocal();
  }
  // Llama's hook sees the normalized stream cast back to the input dtype; Gemma's and OLMo's the
  // float32 one their weight multiplies.
  const at::Tensor normalized =
      ctx.Hook(normalized_kind, layer,
               c.norm == NormKind::kRmsNorm ? (xf * inv).to(x.scalar_type()) : xf * inv);
  return WeighRms(normalized, w.weight, c.norm, x.scalar_type());
}

at::Tensor WeighRms(const at::Tensor& normalized, const at::Tensor& weight, NormKind kind,
                    at::ScalarType dtype) {
  if (kind == NormKind::kRmsNorm) return weight * normalized.to(dtype);
  const at::Tensor w = weight.to(at::kFloat);
  return (normalized * (kind == NormKind::kGemmaRmsNorm ? 1.0 + w : w)).to(dtype);
}

at::Tensor ApplyRotary(const at::Tensor& x, const std::pair<at::Tensor, at::Tensor>& cos_sin,
                       int64_t rotary_dim) {
  const int64_t head_dim = x.size(-1);
  const at::Tensor rot = rotary_dim == head_dim ? x : x.narrow(-1, 0, rotary_dim);
  const int64_t half = rotary_dim / 2;
  const at::Tensor rotated_half =
      at::cat({-rot.narrow(-1, half, half), rot.narrow(-1, 0, half)}, -1);
  at::Tensor out = rot * cos_sin.first + rotated_half * cos_sin.second;
  if (rotary_dim == head_dim) return out;
  return at::cat({out, x.narrow(-1, rotary_dim, head_dim - rotary_dim)}, -1);
}

at::Tensor ApplyInterleavedRotary(const at::Tensor& x,
                                  const std::pair<at::Tensor, at::Tensor>& cos_sin,
                                  int64_t rotary_dim) {
  const int64_t head_dim = x.size(-1);
  const at::Tensor rot = rotary_dim == head_dim ? x : x.narrow(-1, 0, rotary_dim);
  std::vector<int64_t> pairs = rot.sizes().vec();
  pairs.back() = rotary_dim / 2;
  pairs.push_back(2);
  const at::Tensor split = rot.reshape(pairs);
  const at::Tensor rotated = at::stack({-split.select(-1, 1), split.select(-1, 0)}, -1).flatten(-2);
  at::Tensor out = rot * cos_sin.first + rotated * cos_sin.second;
  if (rotary_dim == head_dim) return out;
  return at::cat({out, x.narrow(-1, rotary_dim, head_dim - rotary_dim)}, -1);
}

at::Tensor Attend(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                  int64_t layer, const AttentionOptions& options, ForwardContext& ctx) {
  const at::Tensor q = q_in.transpose(1, 2);  // [b, heads, t, d_head]
  at::Tensor k = k_in.transpose(1, 2);
  at::Tensor v = v_in.transpose(1, 2);
  if (ctx.cache() != nullptr) std::tie(k, v) = ctx.cache()->Append(layer, k, v);
  const int64_t groups = q.size(1) / k.size(1);
  if (groups > 1) {  // grouped-query attention: query head j reads kv head j / groups
    k = k.repeat_interleave(groups, 1);
    v = v.repeat_interleave(groups, 1);
  }
  const at::Tensor& mask = options.alibi ? ctx.AlibiMask(options.window) : ctx.Mask(options.window);
  const bool observed =
      ctx.Wants(HookKind::kAttnScores, layer) || ctx.Wants(HookKind::kAttnPattern, layer);
  if (!observed && options.softcap <= 0.0) {
    const at::Tensor z = at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, options.scale);
    return ctx.Hook(HookKind::kAttnZ, layer, z.transpose(1, 2));
  }
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) * options.scale;
  if (options.softcap > 0.0) scores = at::tanh(scores / options.softcap) * options.softcap;
  scores = scores + mask;
  scores = ctx.Hook(HookKind::kAttnScores, layer, scores);
  at::Tensor pattern = options.softmax_in_float32
                           ? at::softmax(scores, -1, at::kFloat).to(q.scalar_type())
                           : at::softmax(scores, -1);
  pattern = ctx.Hook(HookKind::kAttnPattern, layer, pattern);
  return ctx.Hook(HookKind::kAttnZ, layer, at::matmul(pattern, v).transpose(1, 2));
}

}  // namespace lensd::engine
