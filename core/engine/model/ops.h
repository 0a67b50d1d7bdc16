// Building blocks shared by the architectures: linear layers, activations, norms with their
// hook points, rotary embedding and the attention core with the KV cache. They may throw
// c10::Error; CausalLm::Forward catches. Pure functions of their arguments.
#ifndef LENSD_CORE_ENGINE_MODEL_OPS_H_
#define LENSD_CORE_ENGINE_MODEL_OPS_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "core/engine/model/forward_context.h"

namespace lensd::engine {

// x @ w^T + b, w as [out, in]; `b` may be undefined. Float32 on the CPU through oneDNN where it
// applies (onednn_linear.h), else at::linear.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// Hugging Face activation names (ACT2FN): gelu, gelu_new, gelu_pytorch_tanh, gelu_fast,
// quick_gelu, silu/swish, relu.
bool IsSupportedActivation(absl::string_view name);
at::Tensor Activation(absl::string_view name, const at::Tensor& x);

struct NormWeights {
  at::Tensor weight;
  at::Tensor bias;  // LayerNorm only
};

// The configured norm; `scale` and `normalized` are its TransformerLens hook points in `layer`
// (e.g. kLn1Scale, kLn1Normalized). Values match the hook-free path unless a hook edits them.
at::Tensor Norm(const at::Tensor& x, const NormWeights& w, HookKind scale, HookKind normalized,
                int64_t layer, ForwardContext& ctx);

// Weighs an RMS-normalized `normalized` (x * rsqrt(mean(x^2) + eps), in float32, or already cast
// back for kRmsNorm) as `kind` does: kRmsNorm casts back, then times w; kGemmaRmsNorm times 1 + w
// and kOlmoRmsNorm times w in float32, then cast to `dtype`.
at::Tensor WeighRms(const at::Tensor& normalized, const at::Tensor& weight, NormKind kind,
                    at::ScalarType dtype);

// Rotates the first rotary_dim dimensions of x [batch, t, heads, head_dim] ("rotate_half": i
// pairs with i + rotary_dim / 2), given cos and sin [batch, t, 1, rotary_dim].
at::Tensor ApplyRotary(const at::Tensor& x, const std::pair<at::Tensor, at::Tensor>& cos_sin,
                       int64_t rotary_dim);

// The same for RopeConfig::interleaved (GPT-J: 2i pairs with 2i + 1), given cos and sin laid
// out to match (ForwardContext::Rotary does).
at::Tensor ApplyInterleavedRotary(const at::Tensor& x,
                                  const std::pair<at::Tensor, at::Tensor>& cos_sin,
                                  int64_t rotary_dim);

struct AttentionOptions {
  double scale;             // multiplies q.k
  int64_t window = 0;       // sliding window in positions, 0 for full attention
  bool softmax_in_float32;  // Llama family upcasts; GPT-2 and NeoX stay in the model dtype
  bool alibi = false;       // add ForwardContext::Alibi() to the scores (BLOOM)
  double softcap = 0.0;     // > 0: scores become softcap * tanh(scores / softcap) before the mask
};

// Causal attention of this call's q [b, t, heads, d_head] over the cached and new k, v
// [b, t, kv_heads, d_head]; runs the attn.hook_attn_scores, hook_pattern and hook_z points and
// returns z [b, t, heads, d_head].
at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t layer,
                  const AttentionOptions& options, ForwardContext& ctx);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_OPS_H_
