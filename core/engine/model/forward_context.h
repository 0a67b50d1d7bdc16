// State of one forward call shared by the layers of an architecture: hooks, the KV cache, token
// positions, attention masks and rotary tables (computed once per call, reused by every layer).
// Not thread-safe: lives on the stack of one forward call.
#ifndef LENSD_CORE_ENGINE_MODEL_FORWARD_CONTEXT_H_
#define LENSD_CORE_ENGINE_MODEL_FORWARD_CONTEXT_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <utility>

#include "core/engine/model/hooks.h"
#include "core/engine/model/kv_cache.h"
#include "core/engine/model/model_config.h"

namespace lensd::engine {

class ForwardContext {
 public:
  // `hooks` may be null (nothing captured); `cache` may be null (no incremental decoding).
  // valid: [batch, t] bool, positions: [batch, t] int64, for this call's tokens.
  ForwardContext(const ModelConfig& config, Hooks* hooks, KvCache* cache, at::Tensor valid,
                 at::Tensor positions, at::ScalarType compute_dtype);

  const ModelConfig& config() const { return config_; }
  KvCache* cache() const { return cache_; }
  const at::Tensor& positions() const { return positions_; }
  at::ScalarType dtype() const { return dtype_; }

  // Runs the hook point; the identity when nobody registered it.
  at::Tensor Hook(HookKind kind, int64_t layer, at::Tensor x) const {
    return hooks_ == nullptr ? x : hooks_->Run({kind, layer}, std::move(x));
  }
  bool Wants(HookKind kind, int64_t layer) const {
    return hooks_ != nullptr && hooks_->Wants({kind, layer});
  }

  // Additive attention mask [batch, 1, t, keys] in the compute dtype: 0 where a query may attend
  // (a real key, not after the query, within `window` positions if window > 0), else the dtype's
  // lowest value.
  const at::Tensor& Mask(int64_t window);
  // Mask(window) plus ALiBi's biases, [batch, heads, t, keys]: head h adds slope_h * the key's
  // position (BLOOM's form: a per-query constant away from -slope_h * distance, which softmax
  // ignores), the slopes as transformers' _get_alibi_slopes computes them in float32.
  const at::Tensor& AlibiMask(int64_t window);
  // cos and sin [batch, t, 1, rotary_dim] for this call's positions, in the compute dtype; with
  // `local`, of the sliding layers' rotary where the model has one of its own (Gemma 3).
  const std::pair<at::Tensor, at::Tensor>& Rotary(bool local = false);

 private:
  const ModelConfig& config_;
  Hooks* hooks_;
  KvCache* cache_;
  at::Tensor valid_;
  at::Tensor positions_;
  at::ScalarType dtype_;
  std::map<int64_t, at::Tensor> masks_;
  std::map<int64_t, at::Tensor> alibi_masks_;
  std::pair<at::Tensor, at::Tensor> rotary_, local_rotary_;
};

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODEL_FORWARD_CONTEXT_H_
