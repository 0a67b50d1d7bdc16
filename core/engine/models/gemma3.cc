// Gemma 3's text model (model_type "gemma3_text"): Gemma 2's decoder (gemma2.h) with q and k
// normalized per head by Gemma's RMSNorm before the rotary, no soft caps by default, five sliding
// layers to each global one (sliding_window_pattern 6, or layer_types), and two rotaries: the
// global layers' (rope_theta 1e6, with any scaling) and the sliding layers' own
// (rope_local_base_freq 1e4, unscaled), as transformers 5.x reads them from rope_parameters keyed
// by layer type or from the 4.x fields.
#include <string>

#include "absl/status/status.h"
#include "core/engine/models/architectures.h"
#include "core/engine/models/gemma2.h"
#include "core/engine/models/llama.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

constexpr const char* kLayerKinds[] = {"full_attention", "sliding_attention"};

// Each layer kind's rotary: rope_parameters.{full_attention, sliding_attention} (5.x), else
// rope_theta with rope_scaling for the global layers and rope_local_base_freq for the sliding ones.
absl::Status ParseGemma3Rope(const nlohmann::json& j, ModelConfig* c) {
  nlohmann::json global = j;
  global.erase("rope_parameters");
  nlohmann::json local = nlohmann::json::object();
  local["max_position_embeddings"] = c->max_positions;
  LENSD_ASSIGN_OR_RETURN(local["rope_theta"],
                         json_fields::Double(j, "rope_local_base_freq", 10000.0, ""));
  if (json_fields::Has(j, "rope_parameters")) {
    const nlohmann::json& params = j.at("rope_parameters");
    if (!params.is_object()) {
      return absl::InvalidArgumentError(
          "rope_parameters must be an object keyed by full_attention and sliding_attention");
    }
    for (const auto& [key, value] : params.items()) {
      if (key != kLayerKinds[0] && key != kLayerKinds[1]) {
        return absl::InvalidArgumentError(
            "rope_parameters." + key +
            ": Gemma 3 keys its rotary settings by layer type, full_attention and "
            "sliding_attention");
      }
      (key == kLayerKinds[0] ? global : local)["rope_parameters"] = value;
    }
  }
  LENSD_ASSIGN_OR_RETURN(c->rope, ParseRope(global, {.theta = 1e6}, c->head_dim));
  LENSD_ASSIGN_OR_RETURN(c->local_rope, ParseRope(local, {.theta = 1e4}, c->head_dim));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseGemma3(const nlohmann::json& j) {
  // The rotary is read below, by layer type; the shared parser must not read it as one.
  nlohmann::json rest = j;
  rest.erase("rope_parameters");
  rest.erase("rope_scaling");
  LENSD_ASSIGN_OR_RETURN(
      ModelConfig c,
      ParseGemmaStyle(rest, "gemma3_text", {.sliding_pattern = 6, .pattern_in_config = true}));
  c.qk_norm = QkNorm::kPerHead;
  LENSD_RETURN_IF_ERROR(ParseGemma3Rope(j, &c));
  return c;
}

}  // namespace

Architecture Gemma3Architecture() {
  return {"gemma3_text", {"model.", ""}, ParseGemma3, LoadLlamaStyle};
}

}  // namespace lensd::engine
