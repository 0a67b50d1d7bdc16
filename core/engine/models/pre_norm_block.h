// The pre-LayerNorm block that GPT-2, OPT and GPT-Neo share: mid = x + attn(ln_1(x)), then
// mid + mlp(ln_2(mid)), with fused q | k | v projections of full heads, an ungated MLP and
// TransformerLens's hook points (ln1/ln2 scale and normalized, q, k, v, attention, attn_out,
// resid_mid, mlp pre/post, mlp_out). The families differ in their attention options, their
// embeddings and their weight names.
#ifndef LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_
#define LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_

#include <ATen/core/Tensor.h>

#include <string>

#include "absl/status/statusor.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/forward_context.h"
#include "core/engine/model/ops.h"

namespace lensd::engine {

struct PreNormLayer {
  NormWeights ln1, ln2;
  at::Tensor qkv_w, qkv_b;  // q | k | v stacked: [3 d, d] ([out, in]); the bias may be undefined
  at::Tensor o_w, o_b;      // the attention's output projection
  at::Tensor in_w, in_b;    // MLP: d -> d_mlp
  at::Tensor out_w, out_b;  // MLP: d_mlp -> d
};

// Block `layer` of the stream x [b, t, d] under ctx's config (heads, activation).
at::Tensor PreNormBlock(int64_t layer, const at::Tensor& x, const PreNormLayer& weights,
                        const AttentionOptions& attention, ForwardContext& ctx);

// A LayerNorm's <name>.weight and <name>.bias, each [d].
absl::StatusOr<NormWeights> LoadLayerNorm(WeightLoader* weights, const std::string& name,
                                          int64_t d);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_
