// OLMo 2 (model_type "olmo2"): the Llama-style decoder without pre-norms. Each block normalizes the
// attention output and the MLP output before adding them to the residual (ln1_post, ln2_post,
// named post_attention_layernorm and post_feedforward_layernorm), and q and k are normalized over
// all heads' projection at once (q_norm [heads * head_dim], k_norm [kv_heads * head_dim]) before
// the rotary. Its RMSNorm multiplies by the weight in float32 before casting back.
#include "core/engine/models/architectures.h"
#include "core/engine/models/llama.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<ModelConfig> ParseOlmo2(const nlohmann::json& j) {
  LENSD_ASSIGN_OR_RETURN(ModelConfig c, ParseLlamaStyleConfig(j, "olmo2", false, 1e-5));
  LENSD_ASSIGN_OR_RETURN(c.qkv_bias, json_fields::Bool(j, "attention_bias", false, ""));
  c.attn_out_bias = c.qkv_bias;
  c.norm = NormKind::kOlmoRmsNorm;
  c.qk_norm = QkNorm::kAcrossHeads;
  c.pre_norms = false;
  c.post_norms = true;
  return c;
}

}  // namespace

Architecture Olmo2Architecture() { return {"olmo2", {"model.", ""}, ParseOlmo2, LoadLlamaStyle}; }

}  // namespace lensd::engine
