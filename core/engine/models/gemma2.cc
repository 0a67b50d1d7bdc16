// Gemma 2 (model_type "gemma2"): Gemma 1's decoder (RMSNorm times (1 + w) in float32, embeddings
// scaled by sqrt(hidden_size), tanh GELU, tied unembedding) with a norm after attention and after
// the MLP besides the pre-norms (ln1_post, ln2_post), attention scores soft-capped before the mask
// (attn_logit_softcapping) and scaled by query_pre_attn_scalar^-1/2, the final logits soft-capped
// (final_logit_softcapping), and sliding-window layers alternating with global ones (layer_types;
// by default the even layers slide). ParseGemmaStyle is shared with Gemma 3 (gemma3.cc).
#include "core/engine/models/gemma2.h"

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

// A soft cap: absent or null means none; otherwise a positive number.
absl::StatusOr<double> ParseSoftCap(const nlohmann::json& j, const char* key, double fallback) {
  if (json_fields::IsNull(j, key)) return 0.0;
  if (!json_fields::Has(j, key)) return fallback;
  LENSD_ASSIGN_OR_RETURN(const double cap, json_fields::Double(j, key, ""));
  if (!(cap > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, " must be a positive number or null (no soft-capping), not ", cap));
  }
  return cap;
}

// The sliding layers from layer_types, or every layer but each pattern-th; the window from
// sliding_window (null: no window, while the layers keep their kind for Gemma 3's rotary).
absl::Status ParseWindows(const nlohmann::json& j, const GemmaStyleDefaults& defaults,
                          ModelConfig* c) {
  if (json_fields::IsNull(j, "sliding_window")) {
    c->sliding_window = 0;
  } else {
    LENSD_ASSIGN_OR_RETURN(c->sliding_window, json_fields::Int(j, "sliding_window", 4096, ""));
  }
  if (json_fields::Has(j, "layer_types")) {
    LENSD_ASSIGN_OR_RETURN(c->sliding_layers, ParseLayerTypes(j, c->num_layers));
    return absl::OkStatus();
  }
  int64_t pattern = defaults.sliding_pattern;
  if (defaults.pattern_in_config) {
    LENSD_ASSIGN_OR_RETURN(pattern, json_fields::Int(j, "sliding_window_pattern", pattern, ""));
  }
  if (pattern <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sliding_window_pattern must be positive, not ", pattern));
  }
  for (int64_t i = 0; i < c->num_layers; ++i) c->sliding_layers.push_back((i + 1) % pattern != 0);
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseGemma2(const nlohmann::json& j) {
  return ParseGemmaStyle(j, "gemma2", {.attn_softcap = 50.0, .final_softcap = 30.0});
}

}  // namespace

absl::StatusOr<ModelConfig> ParseGemmaStyle(const nlohmann::json& j, absl::string_view model_type,
                                            const GemmaStyleDefaults& defaults) {
  nlohmann::json with_defaults = j;
  if (!json_fields::Has(j, "head_dim")) with_defaults["head_dim"] = 256;
  LENSD_ASSIGN_OR_RETURN(ModelConfig c,
                         ParseLlamaStyleConfig(with_defaults, model_type, true, 1e-6));
  LENSD_ASSIGN_OR_RETURN(const auto act, json_fields::OptionalString(j, "hidden_activation", ""));
  c.activation = act.value_or("gelu_pytorch_tanh");
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  LENSD_ASSIGN_OR_RETURN(const bool bidirectional,
                         json_fields::Bool(j, "use_bidirectional_attention", false, ""));
  if (bidirectional) {
    return absl::InvalidArgumentError(
        "use_bidirectional_attention: lensd serves causal language models only");
  }
  LENSD_ASSIGN_OR_RETURN(const double scalar,
                         json_fields::Double(j, "query_pre_attn_scalar", 256.0, ""));
  if (!(scalar > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("query_pre_attn_scalar must be positive, not ", scalar));
  }
  c.attention_scale = 1.0 / std::sqrt(scalar);
  LENSD_ASSIGN_OR_RETURN(c.attn_softcap,
                         ParseSoftCap(j, "attn_logit_softcapping", defaults.attn_softcap));
  LENSD_ASSIGN_OR_RETURN(c.final_softcap,
                         ParseSoftCap(j, "final_logit_softcapping", defaults.final_softcap));
  LENSD_RETURN_IF_ERROR(ParseWindows(j, defaults, &c));
  c.norm = NormKind::kGemmaRmsNorm;
  c.post_norms = true;
  c.embedding_scale = std::sqrt(static_cast<double>(c.d_model));
  return c;
}

Architecture Gemma2Architecture() {
  return {"gemma2", {"model.", ""}, ParseGemma2, LoadLlamaStyle};
}

}  // namespace lensd::engine
