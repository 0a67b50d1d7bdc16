// GPT-Neo (model_type "gpt_neo"): GPT-2's learned positions and pre-LayerNorm blocks
// (pre_norm_block.h) with separate bias-free q, k, v projections, unscaled attention computed in
// float32, and layers that alternate global and local attention (attention_types; a local layer
// sees the window_size latest positions, itself included).
#include <ATen/ATen.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/ops.h"
#include "core/engine/models/architectures.h"
#include "core/engine/models/pre_norm_block.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

// Unscaled attention in float32; local layers see the latest sliding_window positions.
AttentionOptions GptNeoAttention(const ModelConfig& c, int64_t i) {
  return {1.0, c.SlidingAt(i) ? c.sliding_window : 0, true};
}

// attention_types, e.g. [[["global", "local"], 12]], as whether each layer is local.
absl::StatusOr<std::vector<bool>> LocalLayers(const nlohmann::json& j, int64_t num_layers) {
  std::vector<bool> local;
  const nlohmann::json types = j.value("attention_types", nlohmann::json::array());
  if (!types.is_array()) return absl::InvalidArgumentError("attention_types: must be a list");
  for (size_t n = 0; n < types.size(); ++n) {
    const nlohmann::json& item = types[n];
    if (!item.is_array() || item.size() != 2 || !item[0].is_array() ||
        !item[1].is_number_integer() || item[1].get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention_types[", n, "]: give [[\"global\" or \"local\", ...], repeats]"));
    }
    for (int64_t r = 0; r < item[1].get<int64_t>(); ++r) {
      for (const nlohmann::json& kind : item[0]) {
        if (kind != "global" && kind != "local") {
          return absl::InvalidArgumentError(absl::StrCat("attention_types[", n, "]: ", kind.dump(),
                                                         " is neither \"global\" nor \"local\""));
        }
        local.push_back(kind == "local");
      }
    }
  }
  if (static_cast<int64_t>(local.size()) != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("attention_types: ", local.size(),
                                                   " layers where num_layers is ", num_layers));
  }
  return local;
}

absl::StatusOr<ModelConfig> ParseConfig(const nlohmann::json& j) {
  ModelConfig c;
  c.model_type = "gpt_neo";
  LENSD_ASSIGN_OR_RETURN(c.vocab_size, json_fields::Int(j, "vocab_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.d_model, json_fields::Int(j, "hidden_size", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_layers, json_fields::Int(j, "num_layers", ""));
  LENSD_ASSIGN_OR_RETURN(c.num_heads, json_fields::Int(j, "num_heads", ""));
  LENSD_ASSIGN_OR_RETURN(c.max_positions, json_fields::Int(j, "max_position_embeddings", 2048, ""));
  LENSD_ASSIGN_OR_RETURN(c.norm_eps, json_fields::Double(j, "layer_norm_epsilon", 1e-5, ""));
  LENSD_ASSIGN_OR_RETURN(c.sliding_window, json_fields::Int(j, "window_size", 256, ""));
  LENSD_ASSIGN_OR_RETURN(const auto activation,
                         json_fields::OptionalString(j, "activation_function", ""));
  c.activation = activation.value_or("gelu_new");
  LENSD_ASSIGN_OR_RETURN(c.tied_embeddings, json_fields::Bool(j, "tie_word_embeddings", true, ""));
  LENSD_RETURN_IF_ERROR(ParseSpecialTokenIds(j, &c));
  // intermediate_size null means 4 x hidden_size.
  c.d_mlp = 4 * c.d_model;
  if (j.contains("intermediate_size") && !j["intermediate_size"].is_null()) {
    LENSD_ASSIGN_OR_RETURN(c.d_mlp, json_fields::Int(j, "intermediate_size", ""));
  }
  LENSD_RETURN_IF_ERROR(SplitFullHeads(&c, "hidden_size", "num_heads"));
  LENSD_ASSIGN_OR_RETURN(c.sliding_layers, LocalLayers(j, c.num_layers));
  c.attention_scale = 1.0;  // GPT-Neo does not scale q.k
  c.norm = NormKind::kLayerNorm;
  c.absolute_positions = true;
  c.attn_out_bias = c.mlp_bias = true;
  return c;
}

absl::StatusOr<std::unique_ptr<CausalLm>> Load(const ModelConfig& c, WeightLoader* w) {
  const int64_t d = c.d_model;
  const auto norm = [&](const std::string& name) { return LoadLayerNorm(w, name, d); };
  LENSD_ASSIGN_OR_RETURN(at::Tensor wte, w->Get("wte.weight", {c.vocab_size, d}));
  LENSD_ASSIGN_OR_RETURN(at::Tensor wpe, w->Get("wpe.weight", {c.max_positions, d}));
  std::vector<PreNormLayer> layers(static_cast<size_t>(c.num_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("h.", i, ".");
    const std::string a = p + "attn.attention.";
    PreNormLayer& l = layers[static_cast<size_t>(i)];
    LENSD_ASSIGN_OR_RETURN(l.ln1, norm(p + "ln_1"));
    LENSD_ASSIGN_OR_RETURN(
        l.qkv_w, w->GetStacked({a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"},
                               {{d, d}, {d, d}, {d, d}}));
    LENSD_ASSIGN_OR_RETURN(l.o_w, w->Get(a + "out_proj.weight", {d, d}));
    LENSD_ASSIGN_OR_RETURN(l.o_b, w->Get(a + "out_proj.bias", {d}));
    LENSD_ASSIGN_OR_RETURN(l.ln2, norm(p + "ln_2"));
    LENSD_ASSIGN_OR_RETURN(l.in_w, w->Get(p + "mlp.c_fc.weight", {c.d_mlp, d}));
    LENSD_ASSIGN_OR_RETURN(l.in_b, w->Get(p + "mlp.c_fc.bias", {c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_w, w->Get(p + "mlp.c_proj.weight", {d, c.d_mlp}));
    LENSD_ASSIGN_OR_RETURN(l.out_b, w->Get(p + "mlp.c_proj.bias", {d}));
  }
  LENSD_ASSIGN_OR_RETURN(NormWeights ln_f, norm("ln_f"));
  at::Tensor unembed = wte;
  if (!c.tied_embeddings) {
    LENSD_ASSIGN_OR_RETURN(unembed, w->Get("lm_head.weight", {c.vocab_size, d}));
  }
  return std::unique_ptr<CausalLm>(std::make_unique<LearnedPositionLm>(
      c, w->bytes_loaded(), std::move(wte), std::move(wpe), std::move(layers), std::move(ln_f),
      std::move(unembed), &GptNeoAttention));
}

}  // namespace

Architecture GptNeoArchitecture() { return {"gpt_neo", {"transformer.", ""}, ParseConfig, Load}; }

}  // namespace lensd::engine
