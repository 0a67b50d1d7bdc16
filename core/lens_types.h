// Torch-free requests and results of the lens work (decode, generate, activations): what the
// server hands the scheduler and the engine hands back. Plain value types.
//
// Units: entropies, divergences and cross-entropies are in nats; probabilities in [0, 1]; ranks
// 1-based. Layer L (the model's layer count) names the model's own output row.
#ifndef LENSD_CORE_LENS_TYPES_H_
#define LENSD_CORE_LENS_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/attribution_types.h"
#include "core/host_tensor.h"
#include "core/intervention_types.h"

namespace lensd {

// Statistics Decode computes (bit flags).
enum Statistic : uint32_t {
  kEntropy = 1u << 0,         // -sum_v q log q
  kForwardKl = 1u << 1,       // KL(p_model || q_row) = sum_v p_model (log p_model - log q_row)
  kCrossEntropy = 1u << 2,    // -log q_row(target)
  kTargetRank = 1u << 3,      // 1 + #{v : q_row(v) > q_row(target)}
  kMaxProbability = 1u << 4,  // max_v q_row(v)
  kLogProbDiff = 1u << 5,     // log q_row(target) - log q_row(anti_target); needs anti_targets
};
inline constexpr uint32_t kDefaultStatistics =
    kEntropy | kForwardKl | kCrossEntropy | kTargetRank | kMaxProbability;

// The factor that turns nats per token into bits per byte for a text of `bytes` UTF-8 bytes that
// encodes to `tokens` tokens: (tokens / bytes) / ln 2; 0 without bytes.
inline double NatsToBitsPerByte(int64_t tokens, int64_t bytes) {
  return bytes > 0 ? static_cast<double>(tokens) / static_cast<double>(bytes) / 0.6931471805599453
                   : 0.0;
}

enum class Readout {
  kResidPre,  // the stream entering block l (tuned-lens's hidden_states[l])
  kResidMid,  // after block l's attention, before its MLP (tuned-lens #104); not for parallel
              // residual models
};

// One sequence to decode with a lens.
struct DecodeSpec {
  std::vector<int64_t> tokens;
  std::string lens = "logit";
  std::vector<int64_t> layers;  // empty: every layer 0..L-1
  bool include_output = true;
  std::vector<int64_t> positions;  // empty: every position
  Readout readout = Readout::kResidPre;
  int64_t top_k = 5;
  uint32_t statistics = kDefaultStatistics;
  std::vector<int64_t> targets;       // empty: the next token (EOS at the end); else one per token
  std::vector<int64_t> anti_targets;  // one per token, for kLogProbDiff
  bool mask_input = false;
  std::string compare_lens;     // empty: no comparison
  bool full_log_probs = false;  // stream every row's [positions, vocab] log-probabilities
  // Edits applied while the model runs, in order. A request with interventions shares its
  // forward pass with no other.
  std::vector<InterventionSpec> interventions;

  // Requests with equal keys can share one forward pass (everything but the tokens and targets;
  // explicit positions are part of the key, the default "all" is not).
  std::string BatchKey() const;
};

// Decode results for one sequence. Per-cell vectors are [rows, positions] row-major (top-k ones
// [rows, positions, top_k]); a vector is empty when its statistic was not requested.
struct DecodeOutput {
  std::vector<int64_t> rows;  // the layer of each row; L marks the output row
  std::vector<int64_t> positions;
  int64_t top_k = 0;
  std::vector<int64_t> top_ids;
  std::vector<float> top_probs;
  std::vector<int64_t> targets;  // the target scored at each position (-1 none)
  std::vector<float> entropy;
  std::vector<float> forward_kl;
  std::vector<float> cross_entropy;
  std::vector<int64_t> target_rank;
  std::vector<float> max_probability;
  std::vector<float> log_prob_diff;
  std::vector<float> kl_to_other;
  std::vector<float> symmetric_kl;
  std::vector<float> max_abs_prob_diff;
  int batch_size = 1;  // requests that shared the forward pass
};

// One prompt to continue by sampling from a lens at one layer.
struct GenerateSpec {
  std::vector<int64_t> tokens;
  std::string lens = "logit";
  int64_t layer = -1;  // 0..L-1, or L (-1 also means L) for the model's own output
  int64_t max_new_tokens = 32;
  bool greedy = false;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int64_t> stop_tokens;
  bool stop_at_eos = true;
  bool early_exit = false;
  std::vector<InterventionSpec> interventions;  // applied at every step
  bool also_unedited = false;  // also generate without the interventions (same seed)
};

struct GenerateOutput {
  std::vector<int64_t> tokens;  // new tokens (a stop token included)
  std::string finish_reason;    // "stop" or "length"
  // With GenerateSpec::also_unedited: the continuation without the interventions.
  std::vector<int64_t> unedited_tokens;
  std::string unedited_finish_reason;
};

// Values at named hook points for one sequence.
struct ActivationsSpec {
  std::vector<int64_t> tokens;
  std::vector<std::string> hook_points;  // TransformerLens names
  bool native_dtype = false;             // false: float32
  // Also d metric / d value at each point ("<name>.grad", float32), from one forward and
  // backward (attribution.md §1.2).
  bool gradients = false;
  MetricSpec metric;
  std::vector<InterventionSpec> interventions;  // applied before the values are read
};

}  // namespace lensd

#endif  // LENSD_CORE_LENS_TYPES_H_
