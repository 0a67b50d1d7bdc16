// Per-layer decoding: one forward pass, then a lens applied to the residual stream at the
// requested layers and positions, with the statistics of tuned-lens's PredictionTrajectory
// computed on the device a layer at a time; only the requested results come back (on the CPU).
//
// Rows are the requested lens layers followed, optionally, by the model's own output row. Units:
// every divergence and entropy is in nats (natural log); probabilities are in [0, 1]; ranks are
// 1-based. Multiply nats per token by NatsToBitsPerByte() for bits per byte.
// Stateless; thread-safe for concurrent calls on a shared model and lens.
#ifndef LENSD_CORE_ENGINE_LENS_DECODE_H_
#define LENSD_CORE_ENGINE_LENS_DECODE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"
#include "core/lens_types.h"

namespace lensd::engine {

class Interventions;

// Statistic, kDefaultStatistics and Readout come from core/lens_types.h (namespace lensd).
using ::lensd::kCrossEntropy;
using ::lensd::kDefaultStatistics;
using ::lensd::kEntropy;
using ::lensd::kForwardKl;
using ::lensd::kLogProbDiff;
using ::lensd::kMaxProbability;
using ::lensd::kTargetRank;
using ::lensd::Readout;

struct DecodeRequest {
  at::Tensor tokens;               // [batch, t] token ids
  at::Tensor attention_mask;       // optional [batch, t]; nonzero marks real tokens
  std::vector<int64_t> layers;     // lens rows; empty means every layer 0..L-1
  bool include_output = true;      // append the model's own predictions as the last row
  std::vector<int64_t> positions;  // empty means every position 0..t-1
  Readout readout = Readout::kResidPre;
  int64_t top_k = 5;  // 0 for none
  uint32_t statistics = kDefaultStatistics;
  // [batch, t] ids the prediction at each position is scored against. Default: the next input
  // token, and at a row's last real token the model's first EOS id (tuned-lens's tutorial);
  // -1 marks "no target" (scores are NaN, ranks 0).
  at::Tensor targets;
  at::Tensor anti_targets;        // [batch, t]; required for kLogProbDiff
  bool mask_input = false;        // lens rows exclude every token id present in the row's input
  const Lens* compare = nullptr;  // a second lens compared row by row (see DecodeResult)
  const Interventions* interventions = nullptr;  // edits applied while the model runs
  // Called before the forward pass and after each row; a non-OK status (cancelled, past the
  // deadline) stops the work and is returned.
  std::function<absl::Status()> keep_going;
};

struct DecodeResult {
  std::vector<int64_t> rows;       // the layer of each row; L (num_layers) marks the output row
  std::vector<int64_t> positions;  // the positions of the columns
  // Shapes [batch, rows, positions] unless noted; undefined when not requested. CPU tensors.
  at::Tensor top_ids;          // [batch, rows, positions, k] int64, most likely first
  at::Tensor top_probs;        // [batch, rows, positions, k] float32 probabilities
  at::Tensor entropy;          // nats
  at::Tensor forward_kl;       // nats, KL(p_model || q_row); 0 on the output row
  at::Tensor cross_entropy;    // nats
  at::Tensor target_rank;      // int64, 1-based
  at::Tensor max_probability;  // probability
  at::Tensor log_prob_diff;    // nats
  // With DecodeRequest::compare (q = this lens, o = the other lens, on the same rows):
  at::Tensor kl_to_other;        // nats, KL(q || o) (tuned-lens kl_divergence)
  at::Tensor symmetric_kl;       // nats, 0.5 KL(q || o) + 0.5 KL(o || q) (tuned-lens calls it
                                 // js_divergence, but it is not the Jensen-Shannon divergence)
  at::Tensor max_abs_prob_diff;  // max_v |q(v) - o(v)| (tuned-lens calls it total_variation)
};

// Receives each row's full log-probabilities [batch, positions, vocab] (float32, on the model's
// device) as it is computed, so they can be streamed without holding every row at once.
using LogProbSink = std::function<absl::Status(int64_t row_layer, const at::Tensor& log_probs)>;

// INVALID_ARGUMENT naming the field for a layer, position, top_k or target out of range.
absl::StatusOr<DecodeResult> Decode(const CausalLm& model, const Lens& lens,
                                    const DecodeRequest& request,
                                    const LogProbSink& sink = nullptr);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_DECODE_H_
