// Mixtral (model_type "mixtral"): Mistral's decoder (grouped-query attention, optional sliding
// window) with a mixture of experts for each MLP: num_local_experts gated MLPs (w1 gate, w3 up,
// w2 down under block_sparse_moe.experts.{e}), num_experts_per_tok chosen per position by the
// router block_sparse_moe.gate, their probabilities rescaled to sum to 1 (moe.h).
#include "core/engine/models/architectures.h"
#include "core/engine/models/llama.h"
#include "core/engine/models/moe.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<ModelConfig> ParseMixtral(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c,
                         ParseLlamaStyleConfig(j, "mixtral", false, 1e-5, {.theta = 1e6}));
  LENSD_ASSIGN_OR_RETURN(c.sliding_window, json_fields::Int(j, "sliding_window", 0, ""));
  LENSD_RETURN_IF_ERROR(ParseMoe(j, "num_local_experts", "num_experts_per_tok", nullptr, true, &c));
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadMixtral(const ModelConfig& c, WeightLoader* w) {
  return LoadLlamaStyleWith(c, w, {.experts = {"block_sparse_moe.", "w1", "w3", "w2"}});
}

}  // namespace

Architecture MixtralArchitecture() {
  return {"mixtral", {"model.", ""}, ParseMixtral, LoadMixtral};
}

}  // namespace lensd::engine
