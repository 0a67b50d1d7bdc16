// Loads a Hugging Face model folder (config.json + safetensors weights) into a CausalLm.
#ifndef LENSD_CORE_ENGINE_MODELS_MODEL_LOADER_H_
#define LENSD_CORE_ENGINE_MODELS_MODEL_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/engine/model/causal_lm.h"
#include "core/engine/model/model_config.h"

namespace lensd::engine {

struct LoadOptions {
  // float32 | bfloat16 | float16 | auto: the config's torch_dtype, or float32 where that dtype
  // cannot run on the device (float16 on CPU with libtorch < 2.1).
  std::string dtype = "float32";
  std::string device = "cpu";  // cpu | cuda | cuda:<index>
};

// Reads <dir>/config.json only: NOT_FOUND without it; INVALID_ARGUMENT naming the file and field
// for a malformed config or an unsupported model_type (listing the supported ones).
absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir);

// Loads the weights straight into the requested dtype and device. Errors name the file and the
// tensor or field; RESOURCE_EXHAUSTED when memory runs out.
absl::StatusOr<std::unique_ptr<CausalLm>> LoadModel(const std::string& model_dir,
                                                    const LoadOptions& options);

}  // namespace lensd::engine

#endif  // LENSD_CORE_ENGINE_MODELS_MODEL_LOADER_H_
