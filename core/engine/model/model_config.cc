#include "core/engine/model/model_config.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::StatusOr<std::vector<double>> ParseFactors(const nlohmann::json& scaling, const char* key,
                                                 int64_t count, const std::string& where) {
  const auto it = scaling.find(key);
  const auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " must be a list of ", count,
                                                   " numbers (rotary dimensions / 2)"));
  };
  if (it == scaling.end() || !it->is_array() || static_cast<int64_t>(it->size()) != count) {
    return invalid();
  }
  std::vector<double> out;
  for (const nlohmann::json& v : *it) {
    if (!v.is_number()) return invalid();
    out.push_back(v.get<double>());
  }
  return out;
}

// longrope (Phi-3; "su" and "yarn" are its old names there): the factor lists, the original
// context (in the scaling object or, as Phi-3 keeps it, at the top level), factor (by default
// max_position_embeddings / original) and attention_factor (by default
// sqrt(1 + ln factor / ln original), 1 when factor <= 1), as transformers 5.x computes them.
absl::Status ParseLongRope(const nlohmann::json& config, const nlohmann::json& scaling,
                           const std::string& where, RopeConfig* rope) {
  LENSD_ASSIGN_OR_RETURN(rope->short_factor,
                         ParseFactors(scaling, "short_factor", rope->rotary_dim / 2, where));
  LENSD_ASSIGN_OR_RETURN(rope->long_factor,
                         ParseFactors(scaling, "long_factor", rope->rotary_dim / 2, where));
  LENSD_ASSIGN_OR_RETURN(const int64_t top_level_original,
                         json_fields::Int(config, "original_max_position_embeddings", 0, ""));
  LENSD_ASSIGN_OR_RETURN(
      rope->original_max_positions,
      json_fields::Int(scaling, "original_max_position_embeddings", top_level_original, where));
  if (rope->original_max_positions <= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".original_max_position_embeddings (or the top-level field) must be above 1"));
  }
  LENSD_ASSIGN_OR_RETURN(const int64_t max_positions,
                         json_fields::Int(config, "max_position_embeddings", ""));
  LENSD_ASSIGN_OR_RETURN(rope->factor,
                         json_fields::Double(scaling, "factor",
                                             static_cast<double>(max_positions) /
                                                 static_cast<double>(rope->original_max_positions),
                                             where));
  const double fallback =
      rope->factor <= 1.0
          ? 1.0
          : std::sqrt(1.0 + std::log(rope->factor) /
                                std::log(static_cast<double>(rope->original_max_positions)));
  if (json_fields::IsNull(scaling, "attention_factor")) {
    rope->attention_factor = fallback;
    return absl::OkStatus();
  }
  LENSD_ASSIGN_OR_RETURN(rope->attention_factor,
                         json_fields::Double(scaling, "attention_factor", fallback, where));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RopeConfig> ParseRope(const nlohmann::json& config, const RopeDefaults& defaults,
                                     int64_t head_dim) {
  RopeConfig rope;
  // As transformers 5.x's standardize_rope_params: a legacy rope_scaling replaces rope_parameters;
  // rope_theta and partial_rotary_factor inside it win over the top-level fields of those names.
  const nlohmann::json* scaling = nullptr;
  std::string where;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (scaling == nullptr && json_fields::Has(config, key)) {
      scaling = &config.at(key);
      where = key;
    }
  }
  if (scaling != nullptr && !scaling->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
  }
  LENSD_ASSIGN_OR_RETURN(rope.theta,
                         json_fields::Double(config, defaults.theta_key, defaults.theta, ""));
  LENSD_ASSIGN_OR_RETURN(double fraction,
                         json_fields::Double(config, defaults.fraction_key, defaults.fraction, ""));
  if (scaling != nullptr) {
    LENSD_ASSIGN_OR_RETURN(rope.theta,
                           json_fields::Double(*scaling, "rope_theta", rope.theta, where));
    LENSD_ASSIGN_OR_RETURN(fraction,
                           json_fields::Double(*scaling, "partial_rotary_factor", fraction, where));
  }
  if (!(fraction > 0.0 && fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("partial_rotary_factor (", defaults.fraction_key,
                                                   ") must be in (0, 1], got ", fraction));
  }
  rope.rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * fraction);
  if (scaling == nullptr) return rope;
  LENSD_ASSIGN_OR_RETURN(auto type, json_fields::OptionalString(*scaling, "rope_type", where));
  if (!type) {
    LENSD_ASSIGN_OR_RETURN(type, json_fields::OptionalString(*scaling, "type", where));
  }
  rope.type = type.value_or("default");
  if (rope.type == "default") return rope;
  if (rope.type == "longrope" ||
      (defaults.longrope_aliases && (rope.type == "su" || rope.type == "yarn"))) {
    rope.type = "longrope";
    LENSD_RETURN_IF_ERROR(ParseLongRope(config, *scaling, where, &rope));
    return rope;
  }
  if (rope.type != "linear" && rope.type != "dynamic" && rope.type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ".rope_type \"", rope.type,
        "\" is not supported; lensd implements default, linear, dynamic, llama3 and longrope"));
  }
  LENSD_ASSIGN_OR_RETURN(rope.factor, json_fields::Double(*scaling, "factor", where));
  if (rope.factor < 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".factor must be >= 1, got ", rope.factor));
  }
  if (rope.type == "llama3") {
    LENSD_ASSIGN_OR_RETURN(rope.low_freq_factor,
                           json_fields::Double(*scaling, "low_freq_factor", where));
    LENSD_ASSIGN_OR_RETURN(rope.high_freq_factor,
                           json_fields::Double(*scaling, "high_freq_factor", where));
    LENSD_ASSIGN_OR_RETURN(rope.original_max_positions,
                           json_fields::Int(*scaling, "original_max_position_embeddings", where));
    if (rope.high_freq_factor <= rope.low_freq_factor) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".high_freq_factor must exceed low_freq_factor"));
    }
  }
  return rope;
}

absl::StatusOr<std::vector<bool>> ParseLayerTypes(const nlohmann::json& config,
                                                  int64_t num_layers) {
  const nlohmann::json& types = config.at("layer_types");
  if (!types.is_array() || static_cast<int64_t>(types.size()) != num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_types must be a list of ", num_layers, " entries (num_hidden_layers)"));
  }
  std::vector<bool> sliding;
  for (const nlohmann::json& type : types) {
    if (type == "sliding_attention") {
      sliding.push_back(true);
    } else if (type == "full_attention") {
      sliding.push_back(false);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("layer_types[", sliding.size(), "] is ", type.dump(),
                       "; lensd knows \"full_attention\" and \"sliding_attention\""));
    }
  }
  return sliding;
}

absl::Status SplitFullHeads(ModelConfig* config, absl::string_view width_field,
                            absl::string_view heads_field) {
  ModelConfig& c = *config;
  if (c.num_heads <= 0 || c.d_model % c.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(width_field, " (", c.d_model,
                                                   ") must be a multiple of ", heads_field, " (",
                                                   c.num_heads, ")"));
  }
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.d_model / c.num_heads;
  c.attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  return absl::OkStatus();
}

absl::Status ParseSpecialTokenIds(const nlohmann::json& config, ModelConfig* out) {
  if (json_fields::Has(config, "bos_token_id")) {
    LENSD_ASSIGN_OR_RETURN(out->bos_token_id, json_fields::Int(config, "bos_token_id", ""));
  }
  if (!json_fields::Has(config, "eos_token_id")) return absl::OkStatus();
  const nlohmann::json& eos = config.at("eos_token_id");
  if (eos.is_array()) {
    for (const auto& id : eos) {
      if (!id.is_number_integer()) {
        return absl::InvalidArgumentError("eos_token_id must be an integer or a list of integers");
      }
      out->eos_token_ids.push_back(id.get<int64_t>());
    }
    return absl::OkStatus();
  }
  LENSD_ASSIGN_OR_RETURN(const int64_t id, json_fields::Int(config, "eos_token_id", ""));
  out->eos_token_ids.push_back(id);
  return absl::OkStatus();
}

absl::Status ValidateSizes(const ModelConfig& c) {
  const std::pair<const char*, int64_t> positive[] = {{"num_hidden_layers", c.num_layers},
                                                      {"hidden_size", c.d_model},
                                                      {"num_attention_heads", c.num_heads},
                                                      {"num_key_value_heads", c.num_kv_heads},
                                                      {"head_dim", c.head_dim},
                                                      {"intermediate_size", c.d_mlp},
                                                      {"vocab_size", c.vocab_size}};
  for (const auto& [name, value] : positive) {
    if (value <= 0 || value > (int64_t{1} << 31)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be a positive size, got ", value));
    }
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_attention_heads (", c.num_heads,
                                                   ") must be a multiple of num_key_value_heads (",
                                                   c.num_kv_heads, ")"));
  }
  if (c.rotary &&
      (c.rope.rotary_dim <= 0 || c.rope.rotary_dim > c.head_dim || c.rope.rotary_dim % 2 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("rotary dimensions (", c.rope.rotary_dim,
                                                   ") must be even and within head_dim (",
                                                   c.head_dim, ")"));
  }
  if (c.norm_eps <= 0) return absl::InvalidArgumentError("the norm epsilon must be positive");
  return absl::OkStatus();
}

}  // namespace lensd::engine
