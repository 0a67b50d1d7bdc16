// Gemma 1 (model_type "gemma"): the Llama-style decoder with RMSNorm times (1 + w) in float32,
// embeddings scaled by sqrt(hidden_size) in the model dtype, tanh GELU, head_dim 256 by default,
// and a tied unembedding.
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/models/architectures.h"
#include "core/engine/models/llama.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<ModelConfig> ParseGemma(const nlohmann::json& j) {
  nlohmann::json with_defaults = j;
  if (!json_fields::Has(j, "head_dim")) with_defaults["head_dim"] = 256;
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(with_defaults, "gemma", true, 1e-6));
  // As transformers 5.x: hidden_act, where the legacy "gelu" of the official Gemma 1 configs means
  // the tanh approximation (hidden_activation, which 4.38-4.47 read, no longer counts).
  LENSD_ASSIGN_OR_RETURN(const auto act, json_fields::OptionalString(j, "hidden_act", ""));
  c.activation = act.value_or("gelu_pytorch_tanh");
  if (c.activation == "gelu") c.activation = "gelu_pytorch_tanh";
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  c.norm = NormKind::kGemmaRmsNorm;
  c.embedding_scale = std::sqrt(static_cast<double>(c.d_model));
  return c;
}

}  // namespace

Architecture GemmaArchitecture() { return {"gemma", {"model.", ""}, ParseGemma, LoadLlamaStyle}; }

}  // namespace lensd::engine
