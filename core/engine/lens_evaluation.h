// Evaluates lenses as tuned-lens's eval loop does (tuned-lens.md §3.1): per batch, one forward
// pass; for each lens and layer j the mean over tokens of the cross-entropy of the lens's
// prediction against the input shifted by `token_shift` (default 1), its entropy, and
// KL(p_final || q_lens) (unshifted); the model's own cross-entropy and entropy as the baseline.
// Batch means are averaged over batches; AggregateMetricsJson multiplies them by the
// nats-to-bits-per-byte ratio and lays them out as tuned-lens's aggregate_metrics.json.
#ifndef LENSD_CORE_ENGINE_LENS_EVALUATION_H_
#define LENSD_CORE_ENGINE_LENS_EVALUATION_H_

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/causal_lm.h"
#include "core/engine/lens.h"

namespace lensd::engine {

struct LensEvaluation {
  // lens name -> "ce" | "entropy" | "kl" -> per layer, nats (mean of batch means).
  std::map<std::string, std::map<std::string, std::vector<double>>> lenses;
  double baseline_ce = 0;
  double baseline_entropy = 0;
  int64_t batches = 0;
};

// `tokens` [sequences, seq_len] evaluated `batch` sequences at a time (a short last batch too).
// INVALID_ARGUMENT for seq_len <= |token_shift| or an empty lens list.
absl::StatusOr<LensEvaluation> EvaluateLenses(
    const CausalLm& model, const std::vector<std::pair<std::string, const Lens*>>& lenses,
    const at::Tensor& tokens, int64_t batch, int64_t token_shift,
    const std::function<absl::Status()>& keep_going);

// {"<lens>": {"ce": {"layer_0": ...}, "entropy": {...}, "kl": {...}}, ...,
//  "baseline": {"ce": {"final": ...}, "entropy": {"final": ...}}}, in bits per byte.
std::string AggregateMetricsJson(const LensEvaluation& evaluation, double nats_to_bits_per_byte);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_EVALUATION_H_
