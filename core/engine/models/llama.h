// The Llama-style decoder shared by llama, mistral, qwen2, qwen3 (llama.cc), gemma (gemma.cc),
// gemma2 and gemma3_text (gemma2.cc, gemma3.cc: norms after attention and the MLP, soft-capping,
// two rotaries), olmo2 (olmo2.cc: post-norms only), phi3 (phi3.cc: fused projections) and the
// mixtures of experts mixtral and olmoe (mixtral.cc, olmoe.cc: moe.h's MLP):
// RMS-norm pre-norm blocks, rotary q/k, grouped-query attention, gated MLP, weights named
// model.layers.{i}.{self_attn,mlp}.*_proj. What differs is read into ModelConfig by each
// architecture's config parser.
#ifndef LENSD_CORE_ENGINE_MODELS_LLAMA_H_
#define LENSD_CORE_ENGINE_MODELS_LLAMA_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/model_config.h"
#include "core/engine/models/moe.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::engine {

// Fields every Llama-style config.json shares (sizes, heads, head_dim, norm epsilon, activation,
// tying, rope); `default_tied`, `default_eps` and the rotary's defaults differ by family.
absl::StatusOr<ModelConfig> ParseLlamaStyleConfig(const nlohmann::json& config,
                                                  absl::string_view model_type, bool default_tied,
                                                  double default_eps,
                                                  const RopeDefaults& rope_defaults = {});

// How a family names its projections: q_proj, k_proj, v_proj and gate_proj, up_proj, or one fused
// qkv_proj and gate_up_proj (Phi-3); where a mixture-of-experts config keeps its experts.
struct LlamaLayout {
  bool fused = false;
  MoeNames experts;
};

absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlamaStyleWith(const ModelConfig& config,
                                                             WeightLoader* weights,
                                                             const LlamaLayout& layout);
absl::StatusOr<std::unique_ptr<CausalLm>> LoadLlamaStyle(const ModelConfig& config,
                                                         WeightLoader* weights);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_LLAMA_H_
