// Phi-3 and Phi-4-mini (model_type "phi3"): the Llama-style decoder with q, k and v in one fused
// qkv_proj and gate and up in one gate_up_proj, no biases, a partial rotary (partial_rotary_factor)
// with longrope scaling (its old names "su" and "yarn" read as longrope, as transformers 5.x
// does), and one sliding window on every layer where sliding_window is set.
#include "core/engine/models/architectures.h"
#include "core/engine/models/llama.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<ModelConfig> ParsePhi3(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c,
                         ParseLlamaStyleConfig(j, "phi3", false, 1e-5, {.longrope_aliases = true}));
  if (!json_fields::IsNull(j, "sliding_window")) {
    LENSD_ASSIGN_OR_RETURN(c.sliding_window, json_fields::Int(j, "sliding_window", 0, ""));
  }
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadPhi3(const ModelConfig& c, WeightLoader* w) {
  return LoadLlamaStyleWith(c, w, {.fused = true});
}

}  // namespace

Architecture Phi3Architecture() { return {"phi3", {"model.", ""}, ParsePhi3, LoadPhi3}; }

}  // namespace lensd::engine
