#include "core/engine/lens/lens_writer.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/durable_file.h"
#include "core/engine/formats/torch_state_dict_writer.h"
#include "core/engine/model/torch_errors.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

std::string ConfigJson(const TunedLensConfig& c) {
  // nlohmann's ordered_json keeps insertion order: tuned-lens's TunedLensConfig field order.
  nlohmann::ordered_json j;
  j["base_model_name_or_path"] = c.base_model;
  j["d_model"] = c.d_model;
  j["num_hidden_layers"] = c.num_layers;
  j["bias"] = c.bias;
  j["base_model_revision"] = nullptr;
  j["unembed_hash"] = c.unembed_hash.has_value() ? nlohmann::ordered_json(*c.unembed_hash)
                                                 : nlohmann::ordered_json(nullptr);
  j["lens_type"] = "linear_tuned_lens";
  return j.dump();
}

absl::StatusOr<std::vector<TensorToWrite>> Translators(const TunedLens& lens) {
  return CatchTorch("lens save", [&]() -> absl::StatusOr<std::vector<TensorToWrite>> {
    std::vector<TensorToWrite> tensors;
    const at::Tensor weights = lens.weights().to(at::kCPU, at::kFloat).contiguous();
    const at::Tensor biases = lens.biases().to(at::kCPU, at::kFloat).contiguous();
    const auto bytes = [](const at::Tensor& t) {
      return std::string(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
    };
    for (int64_t l = 0; l < weights.size(0); ++l) {
      tensors.push_back({absl::StrCat(l, ".weight"),
                         FileDtype::kF32,
                         {weights.size(1), weights.size(2)},
                         bytes(weights[l].contiguous())});
      tensors.push_back({absl::StrCat(l, ".bias"),
                         FileDtype::kF32,
                         {biases.size(1)},
                         bytes(biases[l].contiguous())});
    }
    return tensors;
  });
}

}  // namespace

absl::Status SaveTunedLens(const TunedLens& lens, const std::string& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(dir)) return absl::AlreadyExistsError(absl::StrCat(dir, " already exists"));
  LENSD_ASSIGN_OR_RETURN(const std::vector<TensorToWrite> tensors, Translators(lens));
  LENSD_ASSIGN_OR_RETURN(const std::string params, WriteTorchStateDict(tensors, "params"));
  const std::string temp = absl::StrCat(dir, ".partial-", getpid());
  std::error_code ec;
  fs::remove_all(temp, ec);
  fs::create_directories(temp, ec);
  if (ec) return ErrnoStatus(ec.value(), "create", temp);
  absl::Status s = WriteFileAtomically(temp + "/params.pt", params);
  if (s.ok()) s = WriteFileAtomically(temp + "/config.json", ConfigJson(lens.config()));
  if (s.ok()) s = PublishFolder(temp, dir);
  if (!s.ok()) fs::remove_all(temp, ec);
  return s;
}

}  // namespace lensd::engine
