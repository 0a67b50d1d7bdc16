#include "core/engine/lens/lens.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/engine/formats/mapped_file.h"
#include "core/engine/formats/safetensors_file.h"
#include "core/engine/formats/torch_state_dict.h"
#include "core/engine/model/torch_errors.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace lensd::engine {
namespace {

at::ScalarType ToTorch(FileDtype dtype) {
  switch (dtype) {
    case FileDtype::kF64:
      return at::kDouble;
    case FileDtype::kF16:
      return at::kHalf;
    case FileDtype::kBF16:
      return at::kBFloat16;
    default:
      return at::kFloat;
  }
}

bool IsFloating(FileDtype dtype) {
  return dtype == FileDtype::kF32 || dtype == FileDtype::kF16 || dtype == FileDtype::kBF16 ||
         dtype == FileDtype::kF64;
}

// A CPU copy of a tensor stored in a torch.save archive.
at::Tensor Materialize(const StoredTensor& stored) {
  const size_t element = ElementSize(stored.dtype);
  const auto numel = static_cast<int64_t>(stored.storage.size() / element);
  at::Tensor storage = at::empty({numel}, at::TensorOptions().dtype(ToTorch(stored.dtype)));
  std::memcpy(storage.data_ptr(), stored.storage.data(), stored.storage.size());
  return storage.as_strided(stored.shape, stored.strides, stored.storage_offset).clone();
}

absl::StatusOr<std::map<std::string, at::Tensor>> ReadParams(const std::string& dir,
                                                             std::string* file) {
  namespace fs = std::filesystem;
  std::map<std::string, at::Tensor> params;
  const std::string pt = (fs::path(dir) / "params.pt").string();
  const std::string st = (fs::path(dir) / "params.safetensors").string();
  if (fs::exists(pt)) {
    *file = pt;
    LENSD_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(pt));
    auto tensors = ReadTorchStateDict(mapped->bytes());
    if (!tensors.ok())
      return absl::InvalidArgumentError(absl::StrCat(pt, ": ", tensors.status().message()));
    for (const auto& [key, stored] : *tensors) {
      if (!IsFloating(stored.dtype)) {
        return absl::InvalidArgumentError(absl::StrCat(pt, ": \"", key, "\" has dtype ",
                                                       DtypeName(stored.dtype), "; want floats"));
      }
      const StoredTensor& tensor = stored;  // (lambdas cannot capture structured bindings in C++17)
      LENSD_ASSIGN_OR_RETURN(params[key], CatchTorch(pt, [&]() -> absl::StatusOr<at::Tensor> {
                               return Materialize(tensor);
                             }));
    }
    return params;
  }
  if (fs::exists(st)) {
    *file = st;
    LENSD_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> safetensors, SafetensorsFile::Open(st));
    for (const auto& [key, entry] : safetensors->header().tensors) {
      if (!IsFloating(entry.dtype)) {
        return absl::InvalidArgumentError(absl::StrCat(st, ": \"", key, "\" has dtype ",
                                                       DtypeName(entry.dtype), "; want floats"));
      }
      const absl::string_view bytes = safetensors->Bytes(entry);
      const std::vector<int64_t>& shape = entry.shape;
      const at::ScalarType dtype = ToTorch(entry.dtype);
      LENSD_ASSIGN_OR_RETURN(params[key], CatchTorch(st, [&]() -> absl::StatusOr<at::Tensor> {
                               at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
                               std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
                               return t;
                             }));
    }
    return params;
  }
  return absl::NotFoundError(absl::StrCat(dir, ": no params.pt or params.safetensors"));
}

absl::StatusOr<TunedLensConfig> ReadConfig(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open (is this a lens folder?)"));
  std::stringstream text;
  text << in.rdbuf();
  const auto in_file = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  };
  auto json = json_fields::Parse(text.str());
  if (!json.ok()) return in_file(json.status());
  TunedLensConfig config;
  auto base = json_fields::OptionalString(*json, "base_model_name_or_path", "");
  auto d_model = json_fields::Int(*json, "d_model", "");
  auto layers = json_fields::Int(*json, "num_hidden_layers", "");
  auto bias = json_fields::Bool(*json, "bias", true, "");
  auto hash = json_fields::OptionalString(*json, "unembed_hash", "");
  for (const absl::Status& s :
       {base.status(), d_model.status(), layers.status(), bias.status(), hash.status()}) {
    if (!s.ok()) return in_file(s);
  }
  auto lens_type = json_fields::OptionalString(*json, "lens_type", "");
  if (lens_type.ok() && lens_type->has_value() && **lens_type != "linear_tuned_lens") {
    return in_file(absl::InvalidArgumentError(absl::StrCat(
        "lens_type \"", **lens_type, "\" is not supported; lensd reads linear_tuned_lens")));
  }
  config.base_model = base->value_or("");
  config.d_model = *d_model;
  config.num_layers = *layers;
  config.bias = *bias;
  config.unembed_hash = *hash;
  return config;
}

}  // namespace

absl::StatusOr<at::Tensor> Lens::Logits(const CausalLm& model, const at::Tensor& h,
                                        int64_t layer) const {
  const ModelConfig& c = model.config();
  if (layer < 0 || layer >= c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " out of range: model ",
                                                   c.model_type, " has layers 0..",
                                                   c.num_layers - 1));
  }
  if (!h.defined() || h.dim() < 1 || h.size(-1) != c.d_model) {
    return absl::InvalidArgumentError(
        absl::StrCat("residual vectors must have d_model = ", c.d_model, " entries"));
  }
  LENSD_ASSIGN_OR_RETURN(
      const at::Tensor translated,
      CatchTorch(absl::StrCat("lens ", name()), [&]() -> absl::StatusOr<at::Tensor> {
        return TransformHidden(h.to(model.device(), model.dtype()), layer);
      }));
  return model.FinalNormAndUnembed(translated);
}

absl::StatusOr<std::unique_ptr<TunedLens>> TunedLens::FromTranslators(std::string name,
                                                                      TunedLensConfig config,
                                                                      at::Tensor weights,
                                                                      at::Tensor biases) {
  const int64_t l = config.num_layers, d = config.d_model;
  if (!weights.defined() || weights.sizes() != at::IntArrayRef({l, d, d}) || !biases.defined() ||
      biases.sizes() != at::IntArrayRef({l, d})) {
    return absl::InvalidArgumentError(absl::StrCat("translators must be weights [", l, ", ", d,
                                                   ", ", d, "] and biases [", l, ", ", d, "]"));
  }
  return std::unique_ptr<TunedLens>(
      new TunedLens(std::move(name), std::move(config), std::move(weights), std::move(biases)));
}

absl::StatusOr<std::unique_ptr<TunedLens>> TunedLens::Load(const std::string& dir,
                                                           const CausalLm& model,
                                                           std::string name) {
  LENSD_ASSIGN_OR_RETURN(TunedLensConfig config, ReadConfig(dir));
  const ModelConfig& m = model.config();
  if (config.d_model != m.d_model || config.num_layers != m.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, "/config.json: the lens has d_model ", config.d_model, " and ", config.num_layers,
        " layers but the model has d_model ", m.d_model, " and ", m.num_layers, " layers"));
  }
  std::string file;
  LENSD_ASSIGN_OR_RETURN(auto params, ReadParams(dir, &file));
  const int64_t d = m.d_model;
  std::vector<std::string> unexpected;
  unexpected.reserve(params.size());
  for (const auto& [key, value] : params) unexpected.push_back(key);
  return CatchTorch(file, [&]() -> absl::StatusOr<std::unique_ptr<TunedLens>> {
    const auto options = at::TensorOptions().dtype(model.dtype()).device(model.device());
    at::Tensor weights = at::empty({m.num_layers, d, d}, options);
    at::Tensor biases = at::zeros({m.num_layers, d}, options);
    for (int64_t i = 0; i < m.num_layers; ++i) {
      for (const bool is_bias : {false, true}) {
        if (is_bias && !config.bias) continue;
        const std::string key = absl::StrCat(i, is_bias ? ".bias" : ".weight");
        const auto it = params.find(key);
        if (it == params.end()) {
          return absl::InvalidArgumentError(absl::StrCat(file, ": key \"", key, "\" is missing"));
        }
        const std::vector<int64_t> want =
            is_bias ? std::vector<int64_t>{d} : std::vector<int64_t>{d, d};
        if (it->second.sizes().vec() != want) {
          return absl::InvalidArgumentError(absl::StrCat(
              file, ": \"", key, "\" has shape [", absl::StrJoin(it->second.sizes(), ", "),
              "], the model implies [", absl::StrJoin(want, ", "), "]"));
        }
        (is_bias ? biases[i] : weights[i]).copy_(it->second);
        unexpected.erase(std::find(unexpected.begin(), unexpected.end(), key));
      }
    }
    if (!unexpected.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": unexpected key \"", unexpected.front(),
                       "\" (a tuned lens has {i}.weight and {i}.bias for i "
                       "in 0..",
                       m.num_layers - 1, ")"));
    }
    return FromTranslators(std::move(name), std::move(config), std::move(weights),
                           std::move(biases));
  });
}

at::Tensor TunedLens::TransformHidden(const at::Tensor& h, int64_t layer) const {
  return h + at::linear(h, weights_[layer], biases_[layer]);
}

}  // namespace lensd::engine
