// cfg.json of an SAE folder: SAELens (flat pre-6.0 keys and nested 6.x "metadata") and sparsify.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/engine/sae/sae.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

namespace fs = std::filesystem;

// SAELens 6 keeps model-side keys under "metadata"; older files keep them at the top level.
const nlohmann::json* Lookup(const nlohmann::json& cfg, const std::string& key) {
  const auto top = cfg.find(key);
  if (top != cfg.end() && !top->is_null()) return &*top;
  const auto metadata = cfg.find("metadata");
  if (metadata != cfg.end() && metadata->is_object()) {
    const auto nested = metadata->find(key);
    if (nested != metadata->end() && !nested->is_null()) return &*nested;
  }
  return nullptr;
}

std::string StringOr(const nlohmann::json& cfg, const std::string& key, const std::string& dflt) {
  const nlohmann::json* v = Lookup(cfg, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : dflt;
}

absl::StatusOr<bool> BoolOr(const nlohmann::json& cfg, const std::string& key, bool dflt,
                            const std::string& file) {
  const nlohmann::json* v = Lookup(cfg, key);
  if (v == nullptr) return dflt;
  if (!v->is_boolean())
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", key, " must be true or false"));
  return v->get<bool>();
}

absl::StatusOr<int64_t> PositiveInt(const nlohmann::json& cfg, const std::string& key,
                                    const std::string& file) {
  const nlohmann::json* v = Lookup(cfg, key);
  if (v == nullptr || !v->is_number_integer() || v->get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", key, " must be a positive integer"));
  }
  return v->get<int64_t>();
}

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open (is this an SAE folder?)"));
  std::stringstream text;
  text << in.rdbuf();
  auto json = json_fields::Parse(text.str());
  if (!json.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", json.status().message()));
  if (!json->is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, ": want a JSON object"));
  return *std::move(json);
}

absl::Status ReadSaeLens(const nlohmann::json& cfg, const std::string& file, SaeConfig& c) {
  // Pre-6.0 names: activation_fn_str, hook_point; architecture defaults to standard.
  std::string activation =
      StringOr(cfg, "activation_fn", StringOr(cfg, "activation_fn_str", "relu"));
  std::string architecture = StringOr(cfg, "architecture", "standard");
  const nlohmann::json* kwargs = Lookup(cfg, "activation_fn_kwargs");
  if (activation == "topk" && architecture == "standard") architecture = "topk";
  if (architecture == "standard" && activation != "relu") {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": activation_fn \"", activation, "\" is not supported (lensd reads relu and topk)"));
  }
  if (architecture == "standard") {
    c.architecture = SaeArchitecture::kStandard;
  } else if (architecture == "gated") {
    c.architecture = SaeArchitecture::kGated;
  } else if (architecture == "jumprelu") {
    c.architecture = SaeArchitecture::kJumpRelu;
  } else if (architecture == "topk") {
    c.architecture = SaeArchitecture::kTopK;
    if (Lookup(cfg, "k") == nullptr && kwargs != nullptr && kwargs->is_object() &&
        kwargs->contains("k") && (*kwargs)["k"].is_number_integer()) {
      c.k = (*kwargs)["k"].get<int64_t>();
    } else {
      LENSD_ASSIGN_OR_RETURN(c.k, PositiveInt(cfg, "k", file));
    }
    LENSD_ASSIGN_OR_RETURN(c.rescale_acts_by_decoder_norm,
                           BoolOr(cfg, "rescale_acts_by_decoder_norm", false, file));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": architecture \"", architecture,
                     "\" is not one of standard, gated, jumprelu, topk (transcoders and "
                     "training-only architectures are not served)"));
  }
  c.hook_name = StringOr(cfg, "hook_name", StringOr(cfg, "hook_point", ""));
  LENSD_ASSIGN_OR_RETURN(c.apply_b_dec_to_input, BoolOr(cfg, "apply_b_dec_to_input", true, file));
  const nlohmann::json* norm = Lookup(cfg, "normalize_activations");
  std::string norm_name = "none";
  if (norm != nullptr && norm->is_boolean()) {
    norm_name = norm->get<bool>() ? "expected_average_only_in" : "none";
  } else if (norm != nullptr && norm->is_string()) {
    norm_name = norm->get<std::string>();
  }
  if (norm_name == "constant_norm_rescale") {
    c.normalization = SaeNormalization::kConstantNormRescale;
  } else if (norm_name == "layer_norm") {
    c.normalization = SaeNormalization::kLayerNorm;
  } else if (norm_name == "expected_average_only_in") {
    // A scalar from training; folded into the weights at load when the folder gives it.
    const nlohmann::json* s = Lookup(cfg, "norm_scaling_factor");
    if (s != nullptr && s->is_number()) c.norm_scaling_factor = s->get<double>();
  } else if (norm_name != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": normalize_activations \"", norm_name,
                     "\" is not one of none, expected_average_only_in, constant_norm_rescale, "
                     "layer_norm"));
  }
  const std::string reshape = StringOr(
      cfg, "reshape_activations", absl::StrContains(c.hook_name, "hook_z") ? "hook_z" : "none");
  c.hook_z = reshape == "hook_z";
  LENSD_ASSIGN_OR_RETURN(c.prepend_bos, BoolOr(cfg, "prepend_bos", true, file));
  LENSD_ASSIGN_OR_RETURN(c.exclude_special_tokens,
                         BoolOr(cfg, "exclude_special_tokens", false, file));
  const std::string dtype_text = StringOr(cfg, "dtype", "float32");
  absl::string_view dtype = dtype_text;
  absl::ConsumePrefix(&dtype, "torch.");
  c.dtype = std::string(dtype);
  c.model_name = StringOr(cfg, "model_name", "");
  c.neuronpedia_id = StringOr(cfg, "neuronpedia_id", "");
  return absl::OkStatus();
}

absl::Status ReadSparsify(const nlohmann::json& cfg, const std::string& file, SaeConfig& c) {
  LENSD_ASSIGN_OR_RETURN(const bool transcode, BoolOr(cfg, "transcode", false, file));
  if (transcode) {
    return absl::InvalidArgumentError(
        absl::StrCat(file,
                     ": transcode is true; transcoders are not served (an SAE reconstructs "
                     "its own input)"));
  }
  LENSD_ASSIGN_OR_RETURN(const bool is_signed, BoolOr(cfg, "signed", false, file));
  if (is_signed)
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": signed sparse coders are not supported"));
  c.architecture = SaeArchitecture::kTopK;
  const std::string activation = StringOr(cfg, "activation", "topk");
  if (activation == "groupmax") {
    c.group_max = true;
  } else if (activation != "topk") {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": activation \"", activation, "\" is not one of topk, groupmax"));
  }
  LENSD_ASSIGN_OR_RETURN(c.k, PositiveInt(cfg, "k", file));
  const nlohmann::json* latents = Lookup(cfg, "num_latents");
  if (latents != nullptr && latents->is_number_integer() && latents->get<int64_t>() > 0) {
    c.d_sae = latents->get<int64_t>();
  } else {
    LENSD_ASSIGN_OR_RETURN(const int64_t factor, PositiveInt(cfg, "expansion_factor", file));
    c.d_sae = c.d_in * factor;
  }
  if (c.group_max && c.d_sae % c.k != 0) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": groupmax needs num_latents (", c.d_sae,
                                                   ") divisible by k (", c.k, ")"));
  }
  LENSD_ASSIGN_OR_RETURN(c.skip_connection, BoolOr(cfg, "skip_connection", false, file));
  c.apply_b_dec_to_input = true;
  c.prepend_bos = true;
  c.hook_name = fs::path(file).parent_path().filename().string();  // the folder is the hookpoint
  c.dtype = "";  // the stored dtype: the weights file decides
  return absl::OkStatus();
}

}  // namespace

const char* ArchitectureName(SaeArchitecture architecture) {
  switch (architecture) {
    case SaeArchitecture::kGated:
      return "gated";
    case SaeArchitecture::kJumpRelu:
      return "jumprelu";
    case SaeArchitecture::kTopK:
      return "topk";
    default:
      return "standard";
  }
}

const char* NormalizationName(SaeNormalization normalization) {
  switch (normalization) {
    case SaeNormalization::kConstantNormRescale:
      return "constant_norm_rescale";
    case SaeNormalization::kLayerNorm:
      return "layer_norm";
    default:
      return "none";
  }
}

absl::StatusOr<SaeConfig> ReadSaeConfig(const std::string& dir) {
  const std::string file = (fs::path(dir) / "cfg.json").string();
  SaeConfig c;
  if (fs::exists(fs::path(dir) / "sae_weights.safetensors")) {
    c.format = "saelens";
  } else if (fs::exists(fs::path(dir) / "sae.safetensors")) {
    c.format = "sparsify";
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no sae_weights.safetensors (SAELens) or sae.safetensors (sparsify)"));
  }
  LENSD_ASSIGN_OR_RETURN(const nlohmann::json cfg, ReadJson(file));
  LENSD_ASSIGN_OR_RETURN(c.d_in, PositiveInt(cfg, "d_in", file));
  if (c.format == "sparsify") {
    LENSD_RETURN_IF_ERROR(ReadSparsify(cfg, file, c));
  } else {
    LENSD_ASSIGN_OR_RETURN(c.d_sae, PositiveInt(cfg, "d_sae", file));
    LENSD_RETURN_IF_ERROR(ReadSaeLens(cfg, file, c));
  }
  if (c.architecture == SaeArchitecture::kTopK && c.k > c.d_sae) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": k = ", c.k, " exceeds d_sae = ", c.d_sae));
  }
  // SAELens training writes the expected-average scale beside the weights.
  const fs::path scaler = fs::path(dir) / "activation_scaler.json";
  if (c.format == "saelens" && c.norm_scaling_factor == 0 && fs::exists(scaler)) {
    LENSD_ASSIGN_OR_RETURN(const nlohmann::json s, ReadJson(scaler.string()));
    const auto it = s.find("scaling_factor");
    if (it != s.end() && it->is_number()) c.norm_scaling_factor = it->get<double>();
  }
  return c;
}

}  // namespace lensd::engine
