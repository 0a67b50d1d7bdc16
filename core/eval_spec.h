// What a lens-evaluation job is asked to do, with tuned-lens's eval defaults (tuned-lens.md §3.1),
// as the job store keeps it (JSON) and as the engine runs it; the metrics it produces, laid out as
// tuned-lens's aggregate_metrics.json. Torch-free.
#ifndef LENSD_CORE_EVAL_SPEC_H_
#define LENSD_CORE_EVAL_SPEC_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/training_spec.h"

namespace lensd {

struct EvalLensSpec {
  // Lenses of the model to evaluate: "logit" and loaded tuned lenses, each at most once.
  std::vector<std::string> lenses = {"logit"};
  int64_t seq_len = 2048;
  int64_t batch = 1;              // sequences per forward pass (tuned-lens's per_gpu_batch_size)
  std::optional<int64_t> tokens;  // evaluate tokens / (batch x seq_len) batches (default: all)
  int64_t token_shift = 1;        // labels of the cross-entropy against the input
  uint64_t seed = 42;             // data shuffling
  DataSpec data;

  // Batches evaluated out of `sequences` chunks: all of them (the last may be short), or at most
  // tokens / (batch x seq_len) as tuned-lens's --tokens limit.
  int64_t num_batches(int64_t sequences) const;

  std::string ToJson() const;
  // INVALID_ARGUMENT naming the field for a value out of range or of the wrong type.
  static absl::StatusOr<EvalLensSpec> FromJson(const std::string& json);
  absl::Status Validate() const;
};

// Mean metrics in nats: per batch the mean over tokens, then the mean over batches.
struct LensMetrics {
  // lens name -> "ce" | "entropy" | "kl" -> per layer.
  std::map<std::string, std::map<std::string, std::vector<double>>> lenses;
  double baseline_ce = 0;
  double baseline_entropy = 0;
  int64_t batches = 0;
};

// {"<lens>": {"ce": {"layer_0": ...}, "entropy": {...}, "kl": {...}}, ...,
//  "baseline": {"ce": {"final": ...}, "entropy": {"final": ...}}}, each value x `scale` (the
// nats-to-bits-per-byte ratio gives tuned-lens's file; 1 gives nats).
std::string AggregateMetricsJson(const LensMetrics& metrics, double scale);

// An evaluation as the engine executes it (ServedModel::EvaluateLenses).
struct EvalLensRun {
  EvalLensSpec spec;
  int64_t seq_len = 0;                           // chunk length of `tokens`
  const std::vector<int32_t>* tokens = nullptr;  // chunks, row-major
  std::vector<int64_t> order;                    // chunk indices in evaluation order
  std::function<absl::Status()> keep_going;
  std::function<void(int64_t done, int64_t total)> on_batch;
};

}  // namespace lensd

#endif  // LENSD_CORE_EVAL_SPEC_H_
