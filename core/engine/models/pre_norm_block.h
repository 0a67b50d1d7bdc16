// The pre-LayerNorm block that GPT-2, OPT and GPT-Neo share: mid = x + attn(ln_1(x)), then
// mid + mlp(ln_2(mid)), with fused q | k | v projections of full heads, an ungated MLP and
// TransformerLens's hook points (ln1/ln2 scale and normalized, q, k, v, attention, attn_out,
// resid_mid, mlp pre/post, mlp_out). The families differ in their attention options, their
// embeddings and their weight names; GPT-2 and GPT-Neo also share the model around the blocks
// (LearnedPositionLm).
#ifndef LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_
#define LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/model/causal_lm.h"
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

// Token plus learned absolute position embeddings (hook_embed, hook_pos_embed), then pre-norm
// blocks whose attention options a family function gives per layer (GPT-2: scaled, optionally by
// the inverse layer index; GPT-Neo: unscaled, local layers windowed).
class LearnedPositionLm : public CausalLm {
 public:
  using AttentionFor = AttentionOptions (*)(const ModelConfig& config, int64_t layer);

  LearnedPositionLm(const ModelConfig& config, int64_t bytes, at::Tensor wte, at::Tensor wpe,
                    std::vector<PreNormLayer> layers, NormWeights ln_f, at::Tensor unembed,
                    AttentionFor attention);

 protected:
  at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const override;
  at::Tensor Block(int64_t i, const at::Tensor& x, ForwardContext& ctx) const override;

 private:
  at::Tensor wte_, wpe_;
  std::vector<PreNormLayer> layers_;
  AttentionFor attention_;
};

// A LayerNorm's <name>.weight and <name>.bias, each [d].
absl::StatusOr<NormWeights> LoadLayerNorm(WeightLoader* weights, const std::string& name,
                                          int64_t d);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_PRE_NORM_BLOCK_H_
