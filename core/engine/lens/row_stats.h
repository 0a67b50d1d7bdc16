// Statistics of many categorical distributions given by logits, fused: on the CPU each
// distribution is read twice (its maximum, then one pass computing the normaliser and every sum)
// instead of once per statistic, with no [rows x vocab] temporaries. Other devices use ATen ops.
// Pure function; thread-safe (parallel over rows with ATen's thread pool).
#ifndef LENSD_CORE_ENGINE_LENS_ROW_STATS_H_
#define LENSD_CORE_ENGINE_LENS_ROW_STATS_H_

#include <ATen/core/Tensor.h>

namespace lensd::engine {

// For logits z [n, V] (float32) and, per row, q = softmax(z):
struct RowStats {
  at::Tensor log_normalizer;  // [n] log sum_v exp(z_v) (so log q = z - this)
  at::Tensor entropy;         // [n] nats, -sum_v q log q
  at::Tensor cross_with;      // [n] sum_v w_v log q_v for the given weights w (undefined if none)
  at::Tensor target_logit;    // [n] z at the target (NaN where the target is -1)
  at::Tensor rank;            // [n] int64, 1 + #{v : z_v > z_target} (0 where the target is -1)
  at::Tensor max_logit;       // [n] max_v z_v
  at::Tensor top_logits;      // [n, k] float32, the k largest z, largest first (if k > 0)
  at::Tensor top_ids;         // [n, k] int64, their ids (on the CPU, lower id first on ties)
};

// `logits` [n, V] float32 or bfloat16 (read as it is on the CPU: the arithmetic is float32 with
// double sums; other dtypes are converted). `weights` [n, V] (optional, e.g. the model's
// probabilities) gives cross_with; `targets` [n] int64 (optional, -1 for none) gives target_logit
// and rank; `top_k` > 0 gives the top k (in the same pass on the CPU, for k up to 64).
RowStats ComputeRowStats(const at::Tensor& logits, const at::Tensor& weights,
                         const at::Tensor& targets, int64_t top_k = 0);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_ROW_STATS_H_
