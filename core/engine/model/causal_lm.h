// A loaded causal language model: immutable weights on one device in one dtype, and a forward
// pass with TransformerLens capture points, a KV cache and early exit. Architectures derive from
// CausalLm and implement the embedding, one block, the final norm and the unembedding.
//
// Thread-safe: Forward is const and keeps all per-call state in its arguments, so any number of
// requests may run it at once on a shared_ptr<const CausalLm>.
#ifndef LENSD_CORE_ENGINE_MODEL_CAUSAL_LM_H_
#define LENSD_CORE_ENGINE_MODEL_CAUSAL_LM_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/model/forward_context.h"
#include "core/engine/model/hooks.h"
#include "core/engine/model/kv_cache.h"
#include "core/engine/model/model_config.h"
#include "core/engine/model/ops.h"

namespace lensd::engine {

class Interventions;

enum class LogitsMode {
  kAll,   // [batch, t, vocab]
  kLast,  // [batch, vocab] at each row's last real token
  kNone,
};

struct ForwardRequest {
  at::Tensor tokens;           // [batch, t] integer token ids
  at::Tensor attention_mask;   // optional [batch, t]; nonzero marks a real token (pad anywhere)
  at::Tensor positions;        // optional [batch, t]; default: real tokens before, plus the cache's
  int64_t stop_at_layer = -1;  // >= 0: run blocks [0, stop_at_layer) only and return no logits
  LogitsMode logits = LogitsMode::kAll;
  // > 0: start at block start_layer from `start_residual` [batch, t, d_model] (the stream
  // entering it, e.g. from an earlier pass) instead of embedding the tokens, which still give
  // the shape and positions. No KV cache.
  int64_t start_layer = 0;
  at::Tensor start_residual;
};

struct ForwardResult {
  at::Tensor logits;    // see LogitsMode; undefined for kNone or an early exit
  at::Tensor residual;  // [batch, t, d_model] after the last block run (before the final norm)
};

class CausalLm {
 public:
  virtual ~CausalLm() = default;
  CausalLm(const CausalLm&) = delete;
  CausalLm& operator=(const CausalLm&) = delete;

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return unembed_.scalar_type(); }
  at::Device device() const { return unembed_.device(); }
  int64_t parameter_bytes() const { return parameter_bytes_; }

  // One forward call. `hooks` (optional) captures, edits and takes gradients at named points;
  // `cache` (optional) holds earlier calls' keys and values and receives this call's.
  // INVALID_ARGUMENT for malformed input (token id out of range, shape mismatch, a cache of
  // another batch size); RESOURCE_EXHAUSTED when memory runs out.
  absl::StatusOr<ForwardResult> Forward(const ForwardRequest& request, Hooks* hooks = nullptr,
                                        KvCache* cache = nullptr) const;

  // The model's final norm and unembedding applied to residual vectors [..., d_model], giving
  // logits [..., vocab] in the model dtype, soft-capped where the model caps its logits (Gemma 2):
  // the logit lens.
  absl::StatusOr<at::Tensor> FinalNormAndUnembed(const at::Tensor& residual) const;
  // The same with `unembed` [vocab, d_model] standing in for the output embedding: a copy of
  // unembed() in another dtype, e.g. the bfloat16 copy a training job makes once where autocast
  // would cast the matrix again on every call.
  absl::StatusOr<at::Tensor> FinalNormAndUnembed(const at::Tensor& residual,
                                                 const at::Tensor& unembed) const;
  const at::Tensor& unembed() const { return unembed_; }
  // The final norm alone, as FinalNormAndUnembed applies it. Where plain_unembed() (no bias, no
  // soft cap) the rest is the product with unembed(), which lens training runs itself.
  absl::StatusOr<at::Tensor> FinalNormOnly(const at::Tensor& residual) const;
  bool plain_unembed() const { return !unembed_bias_.defined() && config_.final_softcap <= 0.0; }
  // The same with the final norm's scale (LayerNorm's sigma, RMSNorm's rho) fixed to
  // `frozen_scale` [..., 1] (ln_final.hook_scale of a real forward) instead of recomputed:
  // affine in `residual`, so per-component logits add up (attribution.md §4.2). Never soft-capped
  // (the cap is not affine): direct logit attribution splits the logit before the cap, as
  // TransformerLens's logit attributions do; SoftCap applies it.
  absl::StatusOr<at::Tensor> FrozenFinalNormAndUnembed(const at::Tensor& residual,
                                                       const at::Tensor& frozen_scale) const;
  // config().final_softcap * tanh(logits / final_softcap), or `logits` when the model has no cap.
  at::Tensor SoftCap(const at::Tensor& logits) const;

 protected:
  // `final_norm` and `unembed` ([vocab, d_model]) are the model's last norm and output
  // embedding, `unembed_bias` ([vocab], GPT-J's) its bias or undefined; the model's dtype and
  // device are the unembedding's.
  CausalLm(ModelConfig config, int64_t parameter_bytes, NormWeights final_norm, at::Tensor unembed,
           at::Tensor unembed_bias = at::Tensor());

  // The stream entering block 0 (embeddings, positions); runs hook_embed and hook_pos_embed.
  virtual at::Tensor Embed(const at::Tensor& tokens, ForwardContext& ctx) const = 0;
  // One block: the stream entering it to the stream leaving it (resid_pre/post hooks are run by
  // the caller).
  virtual at::Tensor Block(int64_t layer, const at::Tensor& x, ForwardContext& ctx) const = 0;

 private:
  absl::Status Validate(const ForwardRequest& request, const KvCache* cache) const;
  // INVALID_ARGUMENT unless `residual` is [..., d_model].
  absl::Status CheckResidual(const at::Tensor& residual) const;
  ForwardResult Run(const ForwardRequest& request, Hooks* hooks, KvCache* cache) const;
  at::Tensor FinalNorm(const at::Tensor& x, ForwardContext& ctx) const;
  // Capped unless `capped` is false.
  at::Tensor Unembed(const at::Tensor& normed, bool capped = true) const {
    return Unembed(normed, unembed_, capped);
  }
  at::Tensor Unembed(const at::Tensor& normed, const at::Tensor& unembed, bool capped) const {
    const at::Tensor logits = Linear(normed, unembed, unembed_bias_);
    return capped ? SoftCap(logits) : logits;
  }

  ModelConfig config_;
  int64_t parameter_bytes_;
  NormWeights final_norm_;
  at::Tensor unembed_;
  at::Tensor unembed_bias_;
};

// The values at `points` of one forward of `tokens` [batch, t] under inference mode, in the order
// given, after `interventions` (optional); the pass stops after the last block a point needs.
// Errors as Forward.
absl::StatusOr<std::vector<at::Tensor>> CaptureHookPoints(
    const CausalLm& model, const std::vector<HookPoint>& points, const at::Tensor& tokens,
    const Interventions* interventions = nullptr);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_CAUSAL_LM_H_
