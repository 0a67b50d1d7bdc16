// Evaluates lenses as tuned-lens's eval loop does (tuned-lens.md §3.1): per batch, one forward
// pass; for each lens and layer j the mean over tokens of the cross-entropy of the lens's
// prediction against the input shifted by `token_shift` (default 1), its entropy, and
// KL(p_final || q_lens) (unshifted); the model's own cross-entropy and entropy as the baseline.
// Batch means are averaged over batches; AggregateMetricsJson (core/eval_spec.h) multiplies them
// by the nats-to-bits-per-byte ratio and lays them out as tuned-lens's aggregate_metrics.json.
#ifndef LENSD_CORE_ENGINE_LENS_LENS_EVALUATION_H_
#define LENSD_CORE_ENGINE_LENS_LENS_EVALUATION_H_

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/eval_spec.h"

namespace lensd::engine {

// `tokens` [sequences, seq_len] evaluated `batch` sequences at a time (a short last batch too).
// INVALID_ARGUMENT for seq_len <= |token_shift| or an empty lens list.
// `on_batch(done, total)`, if set, is called after each batch.
absl::StatusOr<LensMetrics> EvaluateLenses(
    const CausalLm& model, const std::vector<std::pair<std::string, const Lens*>>& lenses,
    const at::Tensor& tokens, int64_t batch, int64_t token_shift,
    const std::function<absl::Status()>& keep_going,
    const std::function<void(int64_t, int64_t)>& on_batch = {});

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_LENS_EVALUATION_H_
