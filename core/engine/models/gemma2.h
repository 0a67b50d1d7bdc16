// Gemma 2's config fields, which Gemma 3 keeps with other defaults: the tanh GELU, biases,
// query_pre_attn_scalar, soft caps (null means none), sliding windows and their layers, Gemma's
// RMSNorm, the norms after attention and the MLP, embeddings times sqrt(hidden_size).
#ifndef LENSD_CORE_ENGINE_MODELS_GEMMA2_H_
#define LENSD_CORE_ENGINE_MODELS_GEMMA2_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/engine/model/model_config.h"
#include "nlohmann/json_fwd.hpp"

namespace lensd::engine {

struct GemmaStyleDefaults {
  double attn_softcap = 0.0;   // 0: none
  double final_softcap = 0.0;  // 0: none
  // Without layer_types, layer i slides unless (i + 1) is a multiple of this; Gemma 3 reads it
  // from config.json's sliding_window_pattern where present.
  int64_t sliding_pattern = 2;
  bool pattern_in_config = false;
};

absl::StatusOr<ModelConfig> ParseGemmaStyle(const nlohmann::json& config,
                                            absl::string_view model_type,
                                            const GemmaStyleDefaults& defaults);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_GEMMA2_H_
