#include "core/engine/models/model_loader.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/engine/model/checkpoint.h"
#include "core/engine/model/device.h"
#include "core/engine/model/ops.h"
#include "core/engine/model/torch_errors.h"
#include "core/engine/models/architectures.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace lensd::engine {
namespace {

absl::Status InFile(const std::string& file, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(file, ": ", status.message()));
}

struct ParsedConfig {
  const Architecture* architecture;
  ModelConfig config;
};

absl::StatusOr<ParsedConfig> Parse(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open (is this a model folder?)"));
  std::stringstream text;
  text << in.rdbuf();
  auto json = json_fields::Parse(text.str());
  if (!json.ok()) return InFile(path, json.status());
  auto model_type = json_fields::String(*json, "model_type", "");
  if (!model_type.ok()) return InFile(path, model_type.status());
  const Architecture* architecture = FindArchitecture(*model_type);
  if (architecture == nullptr) {
    return InFile(path, absl::InvalidArgumentError(absl::StrCat(
                            "model_type \"", *model_type, "\" is not supported; lensd serves ",
                            SupportedModelTypes())));
  }
  // Options that change what the weights mean, which no family implements.
  for (const char* option : {"quantization_config", "compression_config"}) {
    const auto it = json->find(option);
    if (it != json->end() && !it->is_null()) {
      return InFile(path, absl::InvalidArgumentError(absl::StrCat(
                              option,
                              ": quantized or compressed checkpoints are not supported; "
                              "give lensd the unquantized float16, bfloat16 or float32 "
                              "weights")));
    }
  }
  auto config = architecture->parse_config(*json);
  if (!config.ok()) return InFile(path, config.status());
  auto dtype = json_fields::OptionalString(*json, "torch_dtype", "");
  if (!dtype.ok()) return InFile(path, dtype.status());
  config->torch_dtype = dtype->value_or("");
  if (!IsSupportedActivation(config->activation)) {
    return InFile(path, absl::InvalidArgumentError(absl::StrCat("activation \"", config->activation,
                                                                "\" is not supported")));
  }
  if (absl::Status sizes = ValidateSizes(*config); !sizes.ok()) return InFile(path, sizes);
  return ParsedConfig{architecture, *std::move(config)};
}

}  // namespace

absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir) {
  LENSD_ASSIGN_OR_RETURN(ParsedConfig parsed, Parse(model_dir));
  return std::move(parsed.config);
}

absl::StatusOr<std::unique_ptr<CausalLm>> LoadModel(const std::string& model_dir,
                                                    const LoadOptions& options) {
  LENSD_ASSIGN_OR_RETURN(ParsedConfig parsed, Parse(model_dir));
  std::string dtype_name = options.dtype;
  if (dtype_name == "auto") {
    dtype_name = parsed.config.torch_dtype.empty() ? "float32" : parsed.config.torch_dtype;
  }
  LENSD_ASSIGN_OR_RETURN(c10::ScalarType dtype, ParseDtype(dtype_name));
  LENSD_ASSIGN_OR_RETURN(const c10::Device device, ParseDevice(options.device));
  if (options.dtype == "auto" && !CheckComputeSupport(dtype, device).ok()) dtype = c10::kFloat;
  LENSD_RETURN_IF_ERROR(CheckComputeSupport(dtype, device));
  LENSD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  WeightLoader weights(checkpoint.get(), dtype, device, parsed.architecture->weight_prefixes);
  return CatchTorch(model_dir, [&]() -> absl::StatusOr<std::unique_ptr<CausalLm>> {
    c10::NoGradGuard no_grad;
    return parsed.architecture->load(parsed.config, &weights);
  });
}

}  // namespace lensd::engine
