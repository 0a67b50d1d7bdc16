// Generation from a lens: tokens are sampled from the lens's predictions at one layer, with a KV
// cache so each step feeds only the new token (tuned-lens's generate re-feeds the whole sequence
// with the cache and appends the wrong number of tokens for batches; this does neither).
// Stateless; thread-safe for concurrent calls on a shared model and lens.
#ifndef LENSD_CORE_ENGINE_LENS_GENERATE_H_
#define LENSD_CORE_ENGINE_LENS_GENERATE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine/lens/lens.h"
#include "core/engine/model/causal_lm.h"

namespace lensd::engine {

class Interventions;

struct GenerateRequest {
  at::Tensor tokens;          // [batch, t] prompts (right-padded)
  at::Tensor attention_mask;  // optional [batch, t]; nonzero marks real tokens
  // Read-out layer: 0..L-1 samples from the lens at the stream entering that block; L samples
  // from the model's own output.
  int64_t layer = 0;
  int64_t max_new_tokens = 32;
  bool greedy = false;               // argmax; otherwise sample
  double temperature = 1.0;          // > 0; logits are divided by it before sampling
  int64_t top_k = 0;                 // keep the k most likely tokens; 0 keeps all
  double top_p = 1.0;                // keep the smallest set with this much probability (nucleus)
  uint64_t seed = 0;                 // sampling is reproducible for a given seed, on any device
  std::vector<int64_t> stop_tokens;  // a row stops after emitting one of these
  bool stop_at_eos = true;           // the model's EOS ids count as stop tokens
  bool early_exit = false;           // run only blocks 0..layer-1 (same tokens, less work)
  const Interventions* interventions = nullptr;  // edits applied at every step
};

struct GenerateResult {
  std::vector<std::vector<int64_t>> tokens;  // new tokens per row (a stop token included)
  std::vector<std::string> finish_reasons;   // per row: "stop" or "length"
};

// Called after every step with the token of each row (-1 for a row already finished); an error
// status stops generation and is returned (cancellation).
using StepSink = std::function<absl::Status(int64_t step, const std::vector<int64_t>& tokens)>;

// INVALID_ARGUMENT naming the field for a layer out of range or a bad sampling parameter.
absl::StatusOr<GenerateResult> Generate(const CausalLm& model, const Lens& lens,
                                        const GenerateRequest& request,
                                        const StepSink& on_step = nullptr);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_LENS_GENERATE_H_
